package grpctrace

import "google.golang.org/grpc/codes"

// Tag keys and values grpctrace sets. The rpc.* keys follow the
// OpenTelemetry RPC conventions, so spans read the same whether they reach
// the backend through an OpenTracing tracer or the OpenTelemetry bridge.
const (
	tagComponent     = "component"
	tagRPCSystem     = "rpc.system"
	tagRPCService    = "rpc.service"
	tagRPCMethod     = "rpc.method"
	tagRPCStatusCode = "rpc.grpc.status_code"

	componentName = "gRPC"
	rpcSystemGRPC = "grpc"
)

// side is the end of the RPC a span describes.
type side uint8

const (
	clientSide side = iota
	serverSide
)

// serverErrorCodes are the codes that mean the server failed, as opposed to
// the request being refused, following the OpenTelemetry RPC conventions.
var serverErrorCodes = [...]bool{
	codes.Unknown:          true,
	codes.DeadlineExceeded: true,
	codes.Unimplemented:    true,
	codes.Internal:         true,
	codes.Unavailable:      true,
	codes.DataLoss:         true,
}

func defaultIsError(s side) func(codes.Code) bool {
	if s == clientSide {
		return func(c codes.Code) bool { return c != codes.OK }
	}
	return func(c codes.Code) bool {
		return int(c) < len(serverErrorCodes) && serverErrorCodes[c]
	}
}
