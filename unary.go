package grpctrace

import (
	"context"

	"google.golang.org/grpc"
)

// UnaryServerInterceptor returns an interceptor that traces unary RPCs on
// the server: it starts a server span, child of the span context the client
// sent, gives the handler a context carrying it, and finishes it with the
// handler's status when the handler returns, or panics.
//
// Put it first in the chain, so that its span covers the other interceptors
// and they can see it.
func UnaryServerInterceptor(opts ...Option) grpc.UnaryServerInterceptor {
	cfg := newConfig(serverSide, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, c := cfg.startServer(ctx, info.FullMethod)
		if c == nil {
			return handler(ctx, req)
		}
		c.message(received, 1, req)
		returned := false
		defer c.endIfPanicking(&returned, req)
		resp, err = handler(ctx, req)
		returned = true
		if err != nil {
			c.end(err, req, nil)
			return resp, err
		}
		c.message(sent, 1, resp)
		c.end(nil, req, resp)
		return resp, nil
	}
}

// targetOf returns the target a client calls; tests may call interceptors
// without a ClientConn.
func targetOf(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}

// UnaryClientInterceptor returns an interceptor that traces unary RPCs on
// the client: it starts a client span, child of the span in the call's
// context if any, sends the span context to the server in the outgoing
// metadata, and finishes the span with the RPC's status.
func UnaryClientInterceptor(opts ...Option) grpc.UnaryClientInterceptor {
	cfg := newConfig(clientSide, opts)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		ctx, c := cfg.startClient(ctx, method, targetOf(cc))
		if c == nil {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		c.message(sent, 1, req)
		returned := false
		defer c.endIfPanicking(&returned, req)
		err := invoker(ctx, method, req, reply, cc, callOpts...)
		returned = true
		var resp any
		if err == nil {
			resp = reply
			c.message(received, 1, reply)
		}
		c.end(err, req, resp)
		return err
	}
}
