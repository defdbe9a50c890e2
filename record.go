package grpctrace

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// The seam between the core and a tracing API. The core (call.go) decides
// what to record and when; a recorder turns that into one API's calls:
// record_opentracing.go for OpenTracing, record_opentelemetry.go for
// OpenTelemetry.

// recorder makes the recordings of a door's spans. It is built once per
// constructor, for one side.
type recorder interface {
	// newCall returns a zero call whose rec is the recording of one span,
	// not started yet, or nil when nothing would be recorded (a no-op
	// tracer). The recorder allocates the call and its span together: one
	// allocation per RPC and side. It is called once per RPC, so a
	// recorder that looks its tracer up (a global one) sees the tracer
	// registered at the time.
	newCall() *call
	// noopContext returns ctx as a server handler sees it when the tracer
	// records nothing: carrying the API's no-op span, unless ctx carries
	// a span already, so that handler code that uses its span unchecked
	// works before tracing is configured.
	noopContext(ctx context.Context) context.Context
	// forMethod derives, once per method, what the spans of that method
	// start with besides their name (the recorder's tags for the service
	// and the method: "/pkg.Service/Method" split).
	forMethod(fullMethod, service, method string) any
	// forTarget derives, once per client target (in gRPC's canonical
	// form, "dns:///svc.example:443"), what a client's spans start with to
	// name the server.
	forTarget(target string) any
	// defaultName is the span name of a method without WithOperationName,
	// as the API's conventions have it.
	defaultName(fullMethod string) string
}

// span is the recording of one span. Its methods are called by one
// goroutine at a time (the core orders them): localParent or extract first,
// then start, then the others, outcome and finish last.
type span interface {
	// localParent returns the parent a client span has in ctx, and whether
	// ctx carries a span at all.
	localParent(ctx context.Context) (parent any, ok bool)
	// extract reads the span context a client sent, in the incoming
	// metadata of ctx. A missing one is (nil, nil); an unreadable one is
	// (nil, err).
	extract(ctx context.Context) (parent any, err error)
	// start starts the span, named name, and returns ctx carrying it, as
	// the API's own function puts it there, for the handler, the rest of
	// the chain and the decorators to find.
	start(ctx context.Context, name string, from spanStart) context.Context
	// inject writes the span's context into md.
	inject(md metadata.MD) error
	// tag sets a tag of grpctrace's own (attempts, retries) on the started
	// span.
	tag(key string, value any)
	// peer names the address the RPC went to, once gRPC knows it (a client
	// attempt's).
	peer(addr net.Addr)
	// log logs the event name with fields, stamped now.
	log(name string, fields []field)
	// logUntrusted logs the identity of a remote parent the span was not
	// allowed to join, if the API has no better way (a link at start).
	logUntrusted(remote any)
	// outcome records how the RPC ended: its status, and whether that is
	// an error. The decorators run after it, then finish.
	outcome(e spanEnd)
	// finish finishes the span at the time given (zero: now).
	finish(at time.Time)
}

// spanStart is what a span starts with, besides its name.
type spanStart struct {
	parent any // from localParent or extract; nil: none
	// public: a server facing untrusted clients, whose span starts a new
	// trace whatever came; untrusted is the remote parent it does not join,
	// if any, for a recorder that links it at start.
	public    bool
	untrusted any
	method    any // the recorder's forMethod
	// the peer: a client's target (forTarget's), or the address a server's
	// client called from
	target any
	addr   net.Addr
	local  net.Addr // a server's own address the client called
}

// spanEnd is how a span ends.
type spanEnd struct {
	code    codes.Code
	isError bool
	message string // the status message, for an error
	// at is the end time gRPC reports, zero for now; an error event is
	// stamped with it.
	at time.Time
}

// tag is a span tag: a key and a value of a type tracers know (string,
// bool, integers).
type tag struct {
	key   string
	value any
}

// field is a field of a logged event: a string, or with numeric set an
// integer.
type field struct {
	key     string
	str     string
	num     int64
	numeric bool
}

func strField(key, val string) field { return field{key: key, str: val} }
func numField(key string, n int64) field {
	return field{key: key, num: n, numeric: true}
}
