// Package message holds the protocol-neutral request and response heads the
// proxy core works on. HTTP/1.1 and HTTP/2 front-ends and upstreams convert
// to and from these, so routing and policy code exists once.
//
// Byte slices reference buffers owned by the connection that parsed them;
// they are valid until that connection reads its next request.
package message

import (
	"bytes"
	"io"
)

// Header is one field. Names keep the case they arrived in; HTTP/1.1 peers
// see it preserved, HTTP/2 lower-cases it on the wire.
type Header struct {
	Name, Value []byte
}

// Headers is an ordered header list; duplicates are kept as separate entries.
type Headers []Header

// Get returns the first value for name (case-insensitive) and whether found.
func (hs Headers) Get(name string) ([]byte, bool) {
	for i := range hs {
		if equalFold(hs[i].Name, name) {
			return hs[i].Value, true
		}
	}
	return nil, false
}

// Cookies yields the name and value of every pair in every Cookie header
// (RFC 6265 "name=value; ..."; a quoted value is unquoted).
func (hs Headers) Cookies(yield func(name, value []byte) bool) {
	for i := range hs {
		if !equalFold(hs[i].Name, "cookie") {
			continue
		}
		c := hs[i].Value
		for len(c) > 0 {
			var pair []byte
			if j := bytes.IndexByte(c, ';'); j >= 0 {
				pair, c = c[:j], c[j+1:]
			} else {
				pair, c = c, nil
			}
			k, v, _ := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
			if !yield(k, bytes.Trim(v, `"`)) {
				return
			}
		}
	}
}

// Has reports whether name is present.
func (hs Headers) Has(name string) bool {
	_, ok := hs.Get(name)
	return ok
}

// equalFold is bytes.EqualFold for ASCII without converting name to []byte.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || (x|0x20) < 'a' || (x|0x20) > 'z' {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals s ignoring ASCII case.
func EqualFold(b []byte, s string) bool { return equalFold(b, s) }

// Request is an incoming request as the core sees it.
type Request struct {
	Method []byte
	// Target is the origin-form path plus query, as received.
	Target []byte
	// Host is the authority (Host header or :authority), as received.
	Host []byte
	// Headers exclude Host and framing headers (Content-Length,
	// Transfer-Encoding); hop-by-hop ones are still present.
	Headers Headers
	// ContentLength is the body length, or -1 when unknown (chunked/streamed).
	ContentLength int64
	Body          io.Reader
	// Upgrade is the requested protocol (WebSocket) or nil.
	Upgrade []byte
	// ProtoMajor is 1 or 2.
	ProtoMajor int
	TLS        bool
	// ClientCert describes the verified client certificate (mTLS) in
	// X-Forwarded-Client-Cert form, or is nil.
	ClientCert []byte
}

// Path returns Target without the query.
func (r *Request) Path() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[:i]
	}
	return r.Target
}

// Query returns the raw query string without '?', or nil.
func (r *Request) Query() []byte {
	if i := bytes.IndexByte(r.Target, '?'); i >= 0 {
		return r.Target[i+1:]
	}
	return nil
}

// Response is an upstream (or locally generated) response.
type Response struct {
	Status  int
	Headers Headers
	// ContentLength is -1 when unknown; the front-end then streams.
	ContentLength int64
	Body          io.Reader
	// Trailers, if set, is called after Body hits EOF.
	Trailers func() Headers
}
