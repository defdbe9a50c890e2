package grpctrace

import (
	"context"
	"strings"
)

// The filters below are ready-made Filters for WithFilter, and ways to
// combine them. Like the filters of otelgrpc's filters package, the
// predicates (HealthCheck, Reflection, ServiceName, MethodName) return true
// for the RPCs they describe; WithFilter traces the RPCs its filter returns
// true for, so to leave health checks untraced write
//
//	grpctrace.WithFilter(grpctrace.Not(grpctrace.HealthCheck()))
//
// which is the expression an otelgrpc user already writes. Every filter
// here looks at the full method only, is safe for concurrent use, and can
// be given to servers and clients alike.

const (
	healthPrefix            = "/grpc.health.v1.Health/"
	reflectionV1Prefix      = "/grpc.reflection.v1.ServerReflection/"
	reflectionV1AlphaPrefix = "/grpc.reflection.v1alpha.ServerReflection/"
)

// HealthCheck returns a Filter that is true for the RPCs of the gRPC Health
// Checking Protocol (service grpc.health.v1.Health: Check, Watch, List) and
// false for every other RPC. It says whether an RPC is a health check, not
// whether to trace it, as otelgrpc's filters.HealthCheck does: to trace
// everything but health checks, use WithFilter(Not(HealthCheck())).
func HealthCheck() Filter {
	return func(_ context.Context, fullMethod string) bool {
		return strings.HasPrefix(fullMethod, healthPrefix)
	}
}

// Reflection returns a Filter that is true for the RPCs of gRPC server
// reflection (services grpc.reflection.v1.ServerReflection and
// grpc.reflection.v1alpha.ServerReflection) and false for every other RPC.
// Like HealthCheck it describes RPCs: to trace everything but reflection,
// use WithFilter(Not(Reflection())).
func Reflection() Filter {
	return func(_ context.Context, fullMethod string) bool {
		return strings.HasPrefix(fullMethod, reflectionV1Prefix) ||
			strings.HasPrefix(fullMethod, reflectionV1AlphaPrefix)
	}
}

// ServiceName returns a Filter that is true for the RPCs of the named
// services and false for every other RPC. A name is the fully qualified
// service, "package.Service", and matches the full methods
// "/package.Service/Method". Malformed full methods (without the leading
// slash, or without a method) match no service. With no names the filter
// is always false.
func ServiceName(names ...string) Filter {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		set[n] = struct{}{}
	}
	return func(_ context.Context, fullMethod string) bool {
		rest, ok := strings.CutPrefix(fullMethod, "/")
		if !ok {
			return false
		}
		service, method, ok := strings.Cut(rest, "/")
		if !ok || service == "" || method == "" || strings.Contains(method, "/") {
			return false
		}
		_, found := set[service]
		return found
	}
}

// MethodName returns a Filter that is true for the given full methods,
// "/package.Service/Method", compared exactly, and false for every other
// RPC. With no names the filter is always false.
//
// Unlike otelgrpc's filters.MethodName, which compares the bare method name
// ("Method") and so matches it in every service, MethodName takes full
// methods, like otelgrpc's filters.FullMethodName.
func MethodName(fullMethods ...string) Filter {
	set := make(map[string]struct{}, len(fullMethods))
	for _, m := range fullMethods {
		set[m] = struct{}{}
	}
	return func(_ context.Context, fullMethod string) bool {
		_, found := set[fullMethod]
		return found
	}
}

// Not returns a Filter that is true where f is false. Not(nil) is nil: a
// nil Filter is no condition at all (WithFilter, All and Any ignore it),
// and neither is its negation.
func Not(f Filter) Filter {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, fullMethod string) bool {
		return !f(ctx, fullMethod)
	}
}

// All returns a Filter that is true when every one of fs is true. The
// filters are called in order and the first false one ends the evaluation.
// Nil filters are ignored; with none left, the filter is always true.
func All(fs ...Filter) Filter {
	fs = nonNil(fs)
	return func(ctx context.Context, fullMethod string) bool {
		for _, f := range fs {
			if !f(ctx, fullMethod) {
				return false
			}
		}
		return true
	}
}

// Any returns a Filter that is true when at least one of fs is true. The
// filters are called in order and the first true one ends the evaluation.
// Nil filters are ignored; with none left, the filter is always false.
func Any(fs ...Filter) Filter {
	fs = nonNil(fs)
	return func(ctx context.Context, fullMethod string) bool {
		for _, f := range fs {
			if f(ctx, fullMethod) {
				return true
			}
		}
		return false
	}
}

// nonNil returns a copy of fs without its nil filters, so that a caller
// changing its slice afterwards does not change the combined filter.
func nonNil(fs []Filter) []Filter {
	out := make([]Filter, 0, len(fs))
	for _, f := range fs {
		if f != nil {
			out = append(out, f)
		}
	}
	return out
}
