// Package extauth asks an external authorization service about each
// request before it goes upstream: an HTTP service in the style of
// Emissary's AuthService, or a gRPC service speaking Envoy's ext_authz v3
// API (envoy.service.auth.v3.Authorization/Check).
//
// Check always returns a Decision; failures are mapped inside, so the
// caller only looks at Decision.Allowed:
//
//   - allowed: apply Decision.Upstream to the upstream request headers
//     (ApplyUpstream) and proxy the request;
//   - denied (Reason ReasonDenied): send Status, Headers and Body to the
//     client as they are;
//   - the service could not be asked (connection failure, timeout, no
//     endpoint, a circuit breaker full, a gRPC transport error, an HTTP 5xx
//     answer or a gRPC error_response): with FailOpen the request is allowed
//     with Reason ReasonFailedOpen; otherwise it is refused with Reason
//     ReasonError, Status 503 and no body (the caller writes its usual local
//     reply) — unless the service sent its own answer (an HTTP 5xx, a gRPC
//     error_response), which is then returned as is. Err says what failed.
package extauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// Reasons a Decision gives, for the Edge-Agent-Reason header, logs and
// metrics.
const (
	// ReasonDenied: the service refused the request.
	ReasonDenied = "ext_auth_denied"
	// ReasonError: the service could not be asked and the route fails
	// closed.
	ReasonError = "ext_auth_error"
	// ReasonFailedOpen: the service could not be asked and the route fails
	// open: the request is allowed.
	ReasonFailedOpen = "ext_auth_failed_open"
)

// MaxBody bounds the body of a denial that is read from the service and
// returned to the client; a longer body is cut.
const MaxBody = 64 << 10

// ErrTimeout is wrapped by Decision.Err when the check ran out of time.
var ErrTimeout = errors.New("ext_auth: check timed out")

// Request is what the service is told about one client request. Byte
// slices are only read during Check and may reference the connection's
// buffers.
type Request struct {
	// Method, Target (origin-form path?query, as received) and Host (Host
	// or :authority) of the client request.
	Method, Target, Host []byte
	// Headers are the client request's headers as received (Host and the
	// framing headers excluded, as in message.Request). Hop-by-hop headers
	// and those the Connection header names are never forwarded.
	Headers message.Headers
	// Scheme is "http" or "https" (sent as X-Forwarded-Proto).
	Scheme string
	// Proto is the client's protocol: "HTTP/1.0", "HTTP/1.1" or "HTTP/2"
	// (gRPC only).
	Proto string
	// RequestID is sent as X-Request-Id (gRPC: attributes.request.http.id).
	RequestID []byte
	// ClientIP is the client address (gRPC: attributes.source.address).
	ClientIP []byte
	// ForwardedFor is the X-Forwarded-For value to send; empty: ClientIP.
	ForwardedFor []byte
	// ContentLength of the client's body, -1 if unknown (gRPC:
	// attributes.request.http.size). The body itself is never sent.
	ContentLength int64
}

// Action says how a HeaderOp changes the upstream request's headers.
type Action uint8

const (
	// Set replaces every header of that name (or adds it).
	Set Action = iota
	// Append adds one more header of that name.
	Append
	// AddIfAbsent adds the header only if there is none of that name.
	AddIfAbsent
	// OverwriteIfExists replaces the headers of that name, if any.
	OverwriteIfExists
	// Remove deletes every header of that name (Value unused).
	Remove
)

// HeaderOp is one change to the upstream request's headers.
type HeaderOp struct {
	Name, Value []byte
	Action      Action
}

// Decision is the outcome of a check. Its slices are owned by the
// Decision (they do not reference the service's connection).
type Decision struct {
	// Allowed says the request goes upstream.
	Allowed bool
	// Upstream changes the upstream request's headers, in order (allowed
	// decisions only). Names are valid tokens, values have no CR, LF or
	// NUL, and Host, hop-by-hop and framing headers are never touched.
	Upstream []HeaderOp
	// Status, Headers and Body are the response for the client when the
	// request is not allowed. Headers hold no hop-by-hop or framing
	// headers: the caller frames Body itself. With Reason ReasonError and
	// no Headers or Body, the caller may write its own error page.
	Status  int
	Headers message.Headers
	Body    []byte
	// Reason is "" when the service allowed the request, else one of
	// ReasonDenied, ReasonError, ReasonFailedOpen.
	Reason string
	// Err is why the service could not be asked (ReasonError,
	// ReasonFailedOpen); errors.Is(Err, ErrTimeout) for a timeout.
	Err error
}

// Authorizer checks requests against one authorization service. It is
// safe for concurrent use.
type Authorizer interface {
	// Check asks the service about r within the configured timeout (and
	// ctx: a cancelled ctx ends the check as a failure).
	Check(ctx context.Context, r *Request) Decision
	// Close releases the authorizer's connections once the checks in
	// progress are done. Checks after Close still work, and clean up
	// after themselves.
	Close()
}

// New builds the authorizer cfg describes (HTTP or gRPC) on its cluster.
func New(cfg config.ExtAuth, clusters map[string]*upstream.Cluster) (Authorizer, error) {
	switch {
	case cfg.HTTP != nil && cfg.GRPC != nil:
		return nil, errors.New("ext_auth: both http and grpc are set")
	case cfg.HTTP != nil:
		cl := clusters[cfg.HTTP.Cluster]
		if cl == nil {
			return nil, fmt.Errorf("ext_auth: unknown cluster %q", cfg.HTTP.Cluster)
		}
		return NewHTTP(cfg, cl), nil
	case cfg.GRPC != nil:
		cl := clusters[cfg.GRPC.Cluster]
		if cl == nil {
			return nil, fmt.Errorf("ext_auth: unknown cluster %q", cfg.GRPC.Cluster)
		}
		if cl.Protocol != config.UpstreamH2C {
			return nil, fmt.Errorf("ext_auth: grpc cluster %q must use protocol h2c", cfg.GRPC.Cluster)
		}
		return NewGRPC(cfg, cl), nil
	}
	return nil, errors.New("ext_auth: neither http nor grpc is set")
}

// ApplyUpstream applies d.Upstream to hs, the headers of the request going
// upstream, and returns the result. hs's backing array is reused: it must
// be the caller's own list, not the client request's.
func (d *Decision) ApplyUpstream(hs message.Headers) message.Headers {
	for _, op := range d.Upstream {
		name := string(op.Name)
		switch op.Action {
		case Set:
			hs = removeHeader(hs, name)
			hs = append(hs, message.Header{Name: op.Name, Value: op.Value})
		case Append:
			hs = append(hs, message.Header{Name: op.Name, Value: op.Value})
		case AddIfAbsent:
			if !hs.Has(name) {
				hs = append(hs, message.Header{Name: op.Name, Value: op.Value})
			}
		case OverwriteIfExists:
			if hs.Has(name) {
				hs = removeHeader(hs, name)
				hs = append(hs, message.Header{Name: op.Name, Value: op.Value})
			}
		case Remove:
			hs = removeHeader(hs, name)
		}
	}
	return hs
}

func removeHeader(hs message.Headers, name string) message.Headers {
	j := 0
	for _, h := range hs {
		if !message.EqualFold(h.Name, name) {
			hs[j] = h
			j++
		}
	}
	clear(hs[j:])
	return hs[:j]
}

// base holds what both authorizers share.
type base struct {
	timeout  time.Duration
	failOpen bool
}

func newBase(cfg config.ExtAuth) base {
	t := cfg.Timeout.D()
	if t <= 0 {
		t = config.DefaultExtAuthTimeout
	}
	return base{timeout: t, failOpen: cfg.FailOpen}
}

// fail is the decision when the service could not be asked.
func (b *base) fail(err error) Decision {
	if b.failOpen {
		return Decision{Allowed: true, Reason: ReasonFailedOpen, Err: err}
	}
	return Decision{Status: 503, Reason: ReasonError, Err: err}
}

// failWith is fail for a service that answered with an error of its own:
// failing closed, its answer goes to the client.
func (b *base) failWith(err error, status int, hs message.Headers, body []byte) Decision {
	if b.failOpen {
		return Decision{Allowed: true, Reason: ReasonFailedOpen, Err: err}
	}
	return Decision{Status: status, Headers: hs, Body: body, Reason: ReasonError, Err: err}
}

var (
	errTimeout     = fmt.Errorf("%w", ErrTimeout)
	errNoEndpoints = &upstream.Error{Kind: upstream.NoEndpoints, Err: errors.New("no endpoint in the authorization cluster")}
	errOverflow    = &upstream.Error{Kind: upstream.Overflow, Breaker: upstream.BreakerMaxRequests,
		Err: errors.New("authorization cluster's max_requests breaker is full")}
)

// withTimeout bounds a check; context.Cause tells its timeout (errTimeout)
// from the caller's cancellation.
func (b *base) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, b.timeout, errTimeout)
}

// timedOut wraps err as a timeout when ctx's own deadline fired.
func timedOut(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errTimeout) && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// validName reports whether b is an HTTP token (RFC 9110 §5.6.2).
func validName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validValue reports whether b can be written as a field value: no CR, LF,
// NUL or other control character but tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// reserved reports whether a header may not be sent to or set by the
// service: Host (the request's authority), framing and hop-by-hop headers.
func reserved(name []byte) bool {
	return wire.IsHopByHop(name) || message.EqualFold(name, "host") ||
		message.EqualFold(name, "content-length") || message.EqualFold(name, "expect")
}

// arena copies byte slices into one allocation.
type arena []byte

func (a *arena) copy(b []byte) []byte {
	start := len(*a)
	*a = append(*a, b...)
	return (*a)[start:len(*a):len(*a)]
}
