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
		c, noopCtx := cfg.startServerInterceptor(ctx, info.FullMethod)
		if c == nil {
			if noopCtx != nil {
				ctx = noopCtx
			}
			return handler(ctx, req)
		}
		returned := false
		defer c.endIfPanicking(&returned, req)
		ctx = c.serverContext()
		c.message(received, 1, req, unknownSizes)
		resp, err = handler(ctx, req)
		var reply any
		if err == nil {
			reply = resp
			c.message(sent, 1, resp, unknownSizes)
		}
		returned = true
		c.end(err, req, reply)
		return resp, err
	}
}

// startServerInterceptor starts the span of an RPC reaching a server
// interceptor, unless the server's stats handler traces it already (see
// startServer).
func (cfg *config) startServerInterceptor(ctx context.Context, fullMethod string) (*call, context.Context) {
	if ctx.Value(handledKey{}) != nil {
		return nil, nil
	}
	return cfg.startServer(ctx, fullMethod, true)
}

// UnaryClientInterceptor returns an interceptor that traces unary RPCs on
// the client: it starts a client span, child of the span in the call's
// context if any, sends the span context to the server in the outgoing
// metadata, and finishes the span with the RPC's status.
func UnaryClientInterceptor(opts ...Option) grpc.UnaryClientInterceptor {
	cfg := newConfig(clientSide, opts)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		c := cfg.startClientInterceptor(ctx, method, cc)
		if c == nil {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		returned := false
		defer c.endIfPanicking(&returned, req)
		ctx = context.WithValue(c.clientContext(ctx), attemptsKey{}, c)
		c.message(sent, 1, req, unknownSizes)
		err := invoker(ctx, method, req, reply, cc, callOpts...)
		var resp any
		if err == nil {
			resp = reply
			c.message(received, 1, reply, unknownSizes)
		}
		returned = true
		c.end(err, req, resp)
		return err
	}
}

// startClientInterceptor starts the span of a call through a client
// interceptor. The context gRPC is then called with carries the call
// (attemptsKey), for the client stats handler to number its attempts.
func (cfg *config) startClientInterceptor(ctx context.Context, method string, cc *grpc.ClientConn) *call {
	var target any
	if cc != nil { // tests may call interceptors without a ClientConn
		// Keyed by the target as given, which costs nothing to read;
		// what names the server comes from gRPC's canonical form of it.
		var ok bool
		if target, ok = cfg.targets.lookup(cc.Target()); !ok {
			target = cfg.targets.add(cc.Target(), cfg.rec.forTarget(cc.CanonicalTarget()))
		}
	}
	return cfg.startClient(ctx, method, target)
}
