package grpctrace

import (
	"sort"
	"strings"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/log"
	"google.golang.org/grpc/metadata"
)

// logUntrustedParent records the identity of a trace that a public endpoint
// refused to join, so that the caller's trace and the server's new one can
// be correlated by hand, without letting anything the caller sent reach the
// server's trace.
//
// OpenTracing span contexts are opaque, so the identity is what the tracer
// itself writes for the remote context: it is injected into a scratch
// carrier and logged, less anything that carries baggage (the baggage items'
// own keys, and keys that name baggage, as the W3C, Jaeger and OpenTracing
// propagators do).
func logUntrustedParent(tracer opentracing.Tracer, span opentracing.Span, remote opentracing.SpanContext) {
	scratch := metadata.MD{}
	if err := tracer.Inject(remote, opentracing.TextMap, MetadataCarrier(scratch)); err != nil {
		span.LogFields(log.String("event", eventUntrustedParent), log.String("message", err.Error()))
		return
	}
	var baggageKeys []string
	remote.ForeachBaggageItem(func(k, _ string) bool {
		baggageKeys = append(baggageKeys, strings.ToLower(k))
		return true
	})
	keys := MetadataCarrier(scratch).Keys()
	sort.Strings(keys)
	fields := []log.Field{log.String("event", eventUntrustedParent)}
	for _, key := range keys {
		if carriesBaggage(key, baggageKeys) {
			continue
		}
		fields = append(fields, log.String(key, MetadataCarrier(scratch).Get(key)))
	}
	span.LogFields(fields...)
}

func carriesBaggage(key string, baggageKeys []string) bool {
	if strings.Contains(key, "baggage") || strings.HasPrefix(key, "uberctx-") {
		return true
	}
	for _, b := range baggageKeys {
		if strings.HasSuffix(key, b) {
			return true
		}
	}
	return false
}
