package grpctrace

import "google.golang.org/grpc"

// ServerInterceptors returns the server options that install grpctrace's
// unary and stream server interceptors, both built with opts, so that a
// setting such as WithFilter cannot be given to one and forgotten on the
// other:
//
//	srv := grpc.NewServer(grpctrace.ServerInterceptors(opts...)...)
//
// The interceptors are added with grpc.ChainUnaryInterceptor and
// grpc.ChainStreamInterceptor, so they combine with other chained
// interceptors; they run before those given in later options.
func ServerInterceptors(opts ...Option) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(opts...)),
	}
}

// DialOptions returns the dial options that install grpctrace's unary and
// stream client interceptors, both built with opts, so that a setting such
// as WithFilter cannot be given to one and forgotten on the other:
//
//	conn, err := grpc.NewClient(target, append(grpctrace.DialOptions(opts...), creds)...)
//
// The interceptors are added with grpc.WithChainUnaryInterceptor and
// grpc.WithChainStreamInterceptor, so they combine with other chained
// interceptors; they run before those given in later options.
func DialOptions(opts ...Option) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor(opts...)),
		grpc.WithChainStreamInterceptor(StreamClientInterceptor(opts...)),
	}
}
