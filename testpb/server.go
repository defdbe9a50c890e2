// Package testpb is the gRPC service grpctrace's tests, examples and
// benchmarks call: unary, server-streaming, client-streaming and bidi
// methods whose requests can ask the server to fail, wait or panic.
package testpb

import (
	"context"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// PanicValue is what a handler panics with when a request asks it to.
const PanicValue = "testpb: handler panic requested"

// Server implements TestServiceServer, following each request's
// instructions.
type Server struct {
	UnimplementedTestServiceServer
}

// NewServer returns a Server.
func NewServer() *Server { return &Server{} }

// obey carries out a request's instructions that apply before answering:
// panic, wait, and fail unless the failure is meant for later in a stream.
func obey(ctx context.Context, req *Request) error {
	if req.GetPanic() {
		panic(PanicValue)
	}
	if d := time.Duration(req.GetSleepMs()) * time.Millisecond; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	if req.GetFailCode() != 0 && req.GetFailAfter() == 0 {
		return failure(req)
	}
	return nil
}

func failure(req *Request) error {
	return status.Error(codes.Code(req.GetFailCode()), req.GetFailMessage())
}

// Unary echoes the request's value.
func (*Server) Unary(ctx context.Context, req *Request) (*Response, error) {
	if err := obey(ctx, req); err != nil {
		return nil, err
	}
	return &Response{Value: req.GetValue(), Seq: 1}, nil
}

// ServerStream sends response_count responses echoing the request's value,
// or fails after fail_after of them.
func (*Server) ServerStream(req *Request, stream TestService_ServerStreamServer) error {
	ctx := stream.Context()
	if err := obey(ctx, req); err != nil {
		return err
	}
	n := req.GetResponseCount()
	if n == 0 {
		n = 1
	}
	failsMidStream := req.GetFailCode() != 0 && req.GetFailAfter() > 0
	if failsMidStream {
		n = req.GetFailAfter()
	}
	for i := int32(1); i <= n; i++ {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		if err := stream.Send(&Response{Value: req.GetValue(), Seq: i}); err != nil {
			return err
		}
	}
	if failsMidStream {
		return failure(req)
	}
	return nil
}

// ClientStream receives requests until the client half-closes, obeying
// each as it arrives, and answers with their values joined by commas and
// their count.
func (*Server) ClientStream(stream TestService_ClientStreamServer) error {
	var values []string
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&Response{Value: strings.Join(values, ","), Seq: int32(len(values))})
		}
		if err != nil {
			return err
		}
		if err := obey(stream.Context(), req); err != nil {
			return err
		}
		values = append(values, req.GetValue())
	}
}

// Bidi answers each request, once obeyed, with its value and number.
func (*Server) Bidi(stream TestService_BidiServer) error {
	for n := int32(1); ; n++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := obey(stream.Context(), req); err != nil {
			return err
		}
		if err := stream.Send(&Response{Value: req.GetValue(), Seq: n}); err != nil {
			return err
		}
	}
}
