package proxy

import (
	"bytes"
	"net/url"
	"strconv"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// gRPC over HTTP/2 mostly needs nothing from the proxy: frames, trailers
// and cancellation (RST_STREAM) pass through the HTTP/2 front-end and the
// h2c upstream. What it does need: deadlines (grpc-timeout) capped by the
// route's timeout, and answers the proxy makes itself in gRPC's own terms,
// since a gRPC client cannot read an HTML or text error.

var (
	hdrGRPCStatus  = []byte("grpc-status")
	hdrGRPCMessage = []byte("grpc-message")
	valGRPC        = []byte("application/grpc")
)

// isGRPC: an HTTP/2 request whose content type is application/grpc or
// application/grpc+proto etc. (not gRPC-Web, which is HTTP/1.1-friendly).
func isGRPC(req *message.Request) bool {
	ct, _ := req.Headers.Get("content-type")
	return req.ProtoMajor == 2 && grpcType(ct)
}

func grpcType(ct []byte) bool {
	if !bytes.HasPrefix(ct, valGRPC) {
		return false
	}
	rest := ct[len(valGRPC):]
	return len(rest) == 0 || rest[0] == '+' || rest[0] == ';'
}

// parseGRPCTimeout reads a grpc-timeout value: up to 8 digits and a unit
// (H, M, S, m, u, n), per the gRPC over HTTP/2 spec.
func parseGRPCTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// formatGRPCTimeout writes d as a grpc-timeout value, rounded up (a
// deadline is never shortened to zero) in the finest unit that fits 8
// digits.
func formatGRPCTimeout(d time.Duration) []byte {
	for _, u := range []struct {
		d    time.Duration
		unit byte
	}{{time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}} {
		if n := (d + u.d - 1) / u.d; n < 100_000_000 {
			return append(strconv.AppendInt(nil, int64(n), 10), u.unit)
		}
	}
	return []byte("99999999H")
}

// grpcDeadline applies the route timeout to a gRPC call: the exchange's
// timeout becomes the smaller of the two, and a grpc-timeout the client
// sent is lowered to the route's, so the server gives up when the proxy
// does. Calls without grpc-timeout get none added: a long stream whose
// headers arrived in time must not be cut by the server.
//
// hasDeadline says the call carries a valid grpc-timeout: the whole call
// is then bounded by the result. A call without one (a long-lived stream,
// typically) is bounded by the route timeout only up to its response
// headers, as on a streaming route.
func grpcDeadline(hs message.Headers, routeTimeout time.Duration) (_ message.Headers, _ time.Duration, hasDeadline bool) {
	for i := range hs {
		if !message.EqualFold(hs[i].Name, "grpc-timeout") {
			continue
		}
		d, ok := parseGRPCTimeout(hs[i].Value)
		if !ok {
			// Unparsable: gRPC servers ignore it too; the route timeout holds.
			return hs, routeTimeout, false
		}
		if routeTimeout > 0 && d > routeTimeout {
			hs[i].Value = formatGRPCTimeout(routeTimeout)
			return hs, routeTimeout, true
		}
		return hs, d, true
	}
	return hs, routeTimeout, false
}

// grpcCode maps the proxy's own answers to gRPC status codes, after the
// HTTP-to-gRPC table of the gRPC spec, with the cases it cannot see
// (no route, a deadline) named precisely.
func grpcCode(status int, reason string) int {
	switch {
	case reason == "no_route" || reason == "connect_not_supported":
		return 12 // UNIMPLEMENTED
	case reason == "upstream_timeout":
		return 4 // DEADLINE_EXCEEDED
	case reason == "downstream_canceled":
		return 1 // CANCELLED
	}
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 413, 431:
		return 8 // RESOURCE_EXHAUSTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcLocalReply answers a gRPC call "Trailers-Only": HTTP 200 with the
// status in the headers and no body.
func grpcLocalReply(fe frontend, s *scratch, status int, reason string, rid []byte, st *State) int64 {
	ct := valGRPC
	if s.web {
		ct = valGRPCWeb
		if s.webText {
			ct = valGRPCWebText
		}
	}
	hs := append(s.resp[:0],
		message.Header{Name: hdrCType, Value: ct},
		message.Header{Name: hdrGRPCStatus, Value: strconv.AppendInt(nil, int64(grpcCode(status, reason)), 10)},
		message.Header{Name: hdrGRPCMessage, Value: []byte(url.PathEscape("edge-agent: " + reason))},
		message.Header{Name: hdrReason, Value: []byte(reason)})
	if len(rid) > 0 {
		hs = append(hs, message.Header{Name: st.server.requestIDHeader, Value: rid})
	}
	hs = append(hs, s.cors...)
	s.resp = hs
	n, _ := fe.respond(&message.Response{Status: 200, Headers: hs, ContentLength: -1, Body: eofBody{}})
	return n
}

var hdrGRPCTimeout = []byte("grpc-timeout")

// setGRPCTimeout sets the call's grpc-timeout to d, adding it if absent.
func setGRPCTimeout(hs message.Headers, d time.Duration) message.Headers {
	v := formatGRPCTimeout(d)
	for i := range hs {
		if message.EqualFold(hs[i].Name, "grpc-timeout") {
			hs[i].Value = v
			return hs
		}
	}
	return append(hs, message.Header{Name: hdrGRPCTimeout, Value: v})
}
