package upstream

import (
	"errors"
	"fmt"
)

// Kind classifies upstream failures; the proxy maps each to a status code and
// a reason the client sees in the Edge-Agent-Reason header.
type Kind int

const (
	ConnectFailure Kind = iota + 1
	Timeout
	Reset
	ProtocolError
	NoEndpoints
	// BadRequestBody: the client's request body was malformed or cut short.
	BadRequestBody
	// Canceled: the client went away before the response head arrived.
	Canceled
	// Overflow: a circuit breaker of the cluster is full (Error.Breaker).
	Overflow
)

// Error is an upstream failure before response headers were forwarded.
type Error struct {
	Kind Kind
	Err  error
	// Breaker names the full breaker of an Overflow.
	Breaker string
}

func (e *Error) Error() string {
	return fmt.Sprintf("upstream %s: %v", e.Kind.Reason(), e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Status is the HTTP status a client gets for this kind of failure
// (Envoy's conventions: connect failure and no endpoints are 503).
func (k Kind) Status() int {
	switch k {
	case ConnectFailure, NoEndpoints, Overflow:
		return 503
	case BadRequestBody:
		return 400
	case Canceled:
		return 499 // nginx's "client closed request"; the client never sees it
	case Timeout:
		return 504
	default:
		return 502
	}
}

// Reason is the stable, machine-readable reason string.
func (k Kind) Reason() string {
	switch k {
	case ConnectFailure:
		return "upstream_connect_failure"
	case Timeout:
		return "upstream_timeout"
	case Reset:
		return "upstream_reset"
	case ProtocolError:
		return "upstream_protocol_error"
	case NoEndpoints:
		return "no_healthy_upstream"
	case BadRequestBody:
		return "bad_request_body"
	case Canceled:
		return "downstream_canceled"
	case Overflow:
		return "upstream_overflow"
	}
	return "upstream_error"
}

// AsError extracts an *Error.
func AsError(err error) (*Error, bool) {
	var ue *Error
	ok := errors.As(err, &ue)
	return ue, ok
}
