package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

const testMaxHead = 8 << 10

// reqSnap is a deep copy of a RequestHead, so results can be compared after
// the head's storage has been reused.
type reqSnap struct {
	Method, Target, Host string
	HostNil              bool
	Minor                int
	Headers              []string // "Name: Value", in order
	ContentLength        int64
	Chunked, Close       bool
	Upgrade              string
	UpgradeNil           bool
	Expect100            bool
}

func snapReq(h *RequestHead) reqSnap {
	s := reqSnap{
		Method: string(h.Method), Target: string(h.Target), Host: string(h.Host), HostNil: h.Host == nil,
		Minor: h.Minor, ContentLength: h.ContentLength, Chunked: h.Chunked, Close: h.Close,
		Upgrade: string(h.Upgrade), UpgradeNil: h.Upgrade == nil, Expect100: h.Expect100,
	}
	for _, f := range h.Headers {
		s.Headers = append(s.Headers, string(f.Name)+": "+string(f.Value))
	}
	return s
}

func readReq(s string) (*RequestHead, error) {
	h := new(RequestHead)
	err := ReadRequestHead(bufio.NewReader(strings.NewReader(s)), h, testMaxHead)
	return h, err
}

func statusOf(err error) int {
	if pe, ok := IsParseError(err); ok {
		return pe.Status
	}
	return 0
}

func TestReadRequestHeadValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want reqSnap
	}{
		{
			name: "simple GET",
			in:   "GET /index.html?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nAccept: */*\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/index.html?q=1&r=2", Host: "example.com", Minor: 1,
				Headers: []string{"User-Agent: t/1", "Accept: */*"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "POST with Content-Length",
			in:   "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/submit", Host: "a", Minor: 1,
				Headers: []string{"Content-Type: text/plain"}, ContentLength: 5, UpgradeNil: true},
		},
		{
			name: "extension method token",
			in:   "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqSnap{Method: "M-SEARCH", Target: "/x", Host: "a", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "method with tchar symbols",
			in:   "PURGE!#$%&'*+.^_`|~ / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqSnap{Method: "PURGE!#$%&'*+.^_`|~", Target: "/", Host: "a", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form replaces Host and Target",
			in:   "GET http://Example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other.example\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/a/b?c=d", Host: "Example.com:8080", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form https",
			in:   "DELETE https://api.example.com/v1/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			want: reqSnap{Method: "DELETE", Target: "/v1/x", Host: "api.example.com", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form without path",
			in:   "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "example.com", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form with query but empty path",
			in:   "GET http://example.com:81?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/?x=1&y=2", Host: "example.com:81", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form authority ends at fragment",
			in:   "GET http://h.example#frag HTTP/1.1\r\nHost: h.example\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/#frag", Host: "h.example", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "absolute-form HTTP/1.0 without Host header",
			in:   "GET http://example.com/p HTTP/1.0\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/p", Host: "example.com", Minor: 0, ContentLength: -1, Close: true, UpgradeNil: true},
		},
		{
			name: "asterisk-form",
			in:   "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqSnap{Method: "OPTIONS", Target: "*", Host: "a", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "leading empty lines ignored",
			in:   "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "HTTP/1.0 without Host closes by default",
			in:   "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", HostNil: true, Minor: 0, Headers: []string{"Accept: */*"}, ContentLength: -1, Close: true, UpgradeNil: true},
		},
		{
			name: "HTTP/1.0 keep-alive",
			in:   "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", HostNil: true, Minor: 0, Headers: []string{"Connection: Keep-Alive"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Connection: close",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a", Minor: 1, Headers: []string{"Connection: close"}, ContentLength: -1, Close: true, UpgradeNil: true},
		},
		{
			name: "Connection token list with close",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive , CLOSE\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a", Minor: 1, Headers: []string{"Connection: keep-alive , CLOSE"}, ContentLength: -1, Close: true, UpgradeNil: true},
		},
		{
			name: "Connection: closed is not close",
			in:   "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a", Minor: 1, Headers: []string{"Connection: closed"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Expect 100-continue is consumed",
			in:   "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n",
			want: reqSnap{Method: "PUT", Target: "/u", Host: "a", Minor: 1, ContentLength: 10, Expect100: true, UpgradeNil: true},
		},
		{
			name: "Expect 100-continue ignored on HTTP/1.0",
			in:   "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
			want: reqSnap{Method: "PUT", Target: "/u", HostNil: true, Minor: 0, ContentLength: 10, Close: true, UpgradeNil: true},
		},
		{
			name: "Upgrade honoured with Connection: upgrade",
			in:   "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/ws", Host: "a", Minor: 1,
				Headers: []string{"Upgrade: websocket", "Connection: keep-alive, Upgrade"}, ContentLength: -1, Upgrade: "websocket"},
		},
		{
			name: "Upgrade honoured when Connection comes first",
			in:   "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/ws", Host: "a", Minor: 1,
				Headers: []string{"Connection: upgrade", "Upgrade: websocket"}, ContentLength: -1, Upgrade: "websocket"},
		},
		{
			name: "Upgrade ignored without Connection: upgrade",
			in:   "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/ws", Host: "a", Minor: 1,
				Headers: []string{"Upgrade: websocket"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Upgrade ignored with Connection: upgrades",
			in:   "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrades\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/ws", Host: "a", Minor: 1,
				Headers: []string{"Upgrade: websocket", "Connection: upgrades"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Upgrade ignored on HTTP/1.0",
			in:   "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/ws", HostNil: true, Minor: 0,
				Headers: []string{"Upgrade: websocket", "Connection: upgrade"}, ContentLength: -1, Close: true, UpgradeNil: true},
		},
		{
			name: "identical duplicate Content-Length",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/", Host: "a", Minor: 1, ContentLength: 7, UpgradeNil: true},
		},
		{
			name: "Content-Length with OWS and leading zeros, 18 digits",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 000000000000000042 \t\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/", Host: "a", Minor: 1, ContentLength: 42, UpgradeNil: true},
		},
		{
			name: "largest accepted Content-Length",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/", Host: "a", Minor: 1, ContentLength: 999999999999999999, UpgradeNil: true},
		},
		{
			name: "Content-Length zero",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/", Host: "a", Minor: 1, ContentLength: 0, UpgradeNil: true},
		},
		{
			name: "chunked, case-insensitive",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nTrailer: X-Sum\r\n\r\n",
			want: reqSnap{Method: "POST", Target: "/", Host: "a", Minor: 1, Headers: []string{"Trailer: X-Sum"}, ContentLength: -1, Chunked: true, UpgradeNil: true},
		},
		{
			name: "field values: OWS trimmed, inner tabs/spaces kept, empty and obs-text allowed",
			in:   "GET / HTTP/1.1\r\nHost:   a.example:8080  \r\nX-Empty:\r\nX-Sp:  a \t b  \r\nX-Obs: caf\xc3\xa9\xff\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a.example:8080", Minor: 1,
				Headers: []string{"X-Empty: ", "X-Sp: a \t b", "X-Obs: caf\xc3\xa9\xff"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "names keep case, duplicates kept in order, hop-by-hop kept",
			in:   "GET / HTTP/1.1\r\nhOsT: a\r\nX-Dup: 1\r\nx-dup: 2\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a", Minor: 1,
				Headers: []string{"X-Dup: 1", "x-dup: 2", "Keep-Alive: timeout=5", "TE: trailers", "Proxy-Connection: x"}, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Host forms: IPv6 literal with port",
			in:   "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "[::1]:8080", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Host forms: empty",
			in:   "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "Host forms: pct-encoded and sub-delims reg-name",
			in:   "GET / HTTP/1.1\r\nHost: a%2Db.example_1~!$&'()*+,;=\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/", Host: "a%2Db.example_1~!$&'()*+,;=", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
		{
			name: "target with all visible ASCII",
			in:   "GET /a/b;c=d?e=f&g=%20h#i!$&'()*+,;=:@~ HTTP/1.1\r\nHost: a\r\n\r\n",
			want: reqSnap{Method: "GET", Target: "/a/b;c=d?e=f&g=%20h#i!$&'()*+,;=:@~", Host: "a", Minor: 1, ContentLength: -1, UpgradeNil: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both a roomy and a tiny bufio buffer (lines split across fills).
			for _, size := range []int{4096, 16} {
				h := new(RequestHead)
				err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(tt.in), size), h, testMaxHead)
				if err != nil {
					t.Fatalf("buf %d: unexpected error: %v", size, err)
				}
				if got := snapReq(h); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("buf %d:\n got %+v\nwant %+v", size, got, tt.want)
				}
			}
		})
	}
}

func TestReadRequestHeadTargetTooLong(t *testing.T) {
	in := "GET /" + strings.Repeat("a", MaxTargetBytes) + " HTTP/1.1\r\nHost: a\r\n\r\n"
	var h RequestHead
	err := ReadRequestHead(bufio.NewReader(strings.NewReader(in)), &h, 64<<10)
	if pe, ok := IsParseError(err); !ok || pe.Status != 414 {
		t.Fatalf("got %v, want 414", err)
	}
}

func TestReadRequestHeadInvalid(t *testing.T) {
	const ok = "GET / HTTP/1.1\r\nHost: a\r\n"
	tests := []struct {
		name   string
		in     string
		status int
	}{
		{"missing Host on 1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400},
		{"missing Host on 1.1 absolute-form", "GET http://a/ HTTP/1.1\r\n\r\n", 400},
		{"duplicate Host", ok + "Host: b\r\n\r\n", 400},
		{"duplicate Host same value other case", ok + "HOST: a\r\n\r\n", 400},
		{"obs-fold", ok + "X-A: one\r\n two\r\n\r\n", 400},
		{"obs-fold tab", ok + "X-A: one\r\n\ttwo\r\n\r\n", 400},
		{"obs-fold first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
		{"tab before colon", ok + "X-A\t: b\r\n\r\n", 400},
		{"space in name", ok + "X A: b\r\n\r\n", 400},
		{"separator in name", ok + "X@A: b\r\n\r\n", 400},
		{"non-ASCII name", ok + "X-\xc3\xa9: b\r\n\r\n", 400},
		{"empty name", ok + ": b\r\n\r\n", 400},
		{"no colon", ok + "X-A b\r\n\r\n", 400},
		{"NUL in value", ok + "X-A: a\x00b\r\n\r\n", 400},
		{"DEL in value", ok + "X-A: a\x7fb\r\n\r\n", 400},
		{"bare CR in value", ok + "X-A: a\rb\r\n\r\n", 400},
		{"control char in value", ok + "X-A: a\x01\r\n\r\n", 400},
		{"bare CR line end", ok + "X-A: a\r\r\n\r\n", 400},
		{"bare LF line endings", "GET /lf HTTP/1.1\nHost: a\nX-A: b\n\n", 400},
		{"mixed CRLF and LF", "GET /m HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400},
		{"bare LF ends the head", ok + "\n", 400},
		{"too many fields", ok + strings.Repeat("X-A: b\r\n", MaxHeaderCount) + "\r\n", 431},
		{"CR alone as a line", ok + "\r\r\n\r\n", 400},
		{"CL and TE", ok + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", ok + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400},
		{"TE gzip", ok + "Transfer-Encoding: gzip\r\n\r\n", 501},
		{"TE identity", ok + "Transfer-Encoding: identity\r\n\r\n", 501},
		{"TE gzip, chunked", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"TE chunked, chunked", ok + "Transfer-Encoding: chunked, chunked\r\n\r\n", 501},
		{"TE duplicated field", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"TE empty", ok + "Transfer-Encoding:\r\n\r\n", 501},
		{"chunked on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"conflicting Content-Length", ok + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
		{"Content-Length list", ok + "Content-Length: 5, 5\r\n\r\n", 400},
		{"Content-Length negative", ok + "Content-Length: -1\r\n\r\n", 400},
		{"Content-Length plus sign", ok + "Content-Length: +5\r\n\r\n", 400},
		{"Content-Length hex", ok + "Content-Length: 0x10\r\n\r\n", 400},
		{"Content-Length exponent", ok + "Content-Length: 1e3\r\n\r\n", 400},
		{"Content-Length inner space", ok + "Content-Length: 1 0\r\n\r\n", 400},
		{"Content-Length empty", ok + "Content-Length:\r\n\r\n", 400},
		{"Content-Length 19 digits", ok + "Content-Length: 9223372036854775807\r\n\r\n", 400},
		{"Content-Length huge", ok + "Content-Length: 123456789012345678901234567890\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
		{"HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
		{"HTTP/3", "GET / HTTP/3\r\nHost: a\r\n\r\n", 505},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTPS version", "GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/0.9 request line", "GET /\r\nHost: a\r\n\r\n", 400},
		{"only method", "GET\r\n\r\n", 400},
		{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"NUL in target", "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"invalid method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"non-ASCII method", "G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400},
		{"relative target", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"ftp scheme", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"scheme without authority", "GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute-form empty host", "GET http:///path HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute-form empty host with query", "GET http://?q HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk followed by junk", "OPTIONS *junk HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk path", "GET */x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"unsupported Expect", ok + "Expect: 200-ok\r\n\r\n", 417},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: a.example/evil\r\n\r\n", 400},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400},
		{"Host with fragment", "GET / HTTP/1.1\r\nHost: #a\r\n\r\n", 400},
		{"Host with obs-text", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400},
		{"Host on HTTP/1.0 invalid", "GET / HTTP/1.0\r\nHost: a\"b\r\n\r\n", 400},
		{"absolute-form userinfo", "GET http://user:pw@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute-form bad host byte", "GET http://a\"b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readReq(tt.in)
			if err == nil {
				t.Fatalf("want status %d, parsed %+v", tt.status, snapReq(h))
			}
			if got := statusOf(err); got != tt.status {
				t.Fatalf("status = %d (err %v), want %d", got, err, tt.status)
			}
		})
	}
}

// A request line not ending in an HTTP version is another protocol (an
// invalid HTTP/2 preface, TLS on a plaintext port): ErrNotHTTP1, which the
// proxy answers by closing.
func TestReadRequestHeadNotHTTP1(t *testing.T) {
	for _, in := range []string{"INVALID CONNECTION PREFACE\r\n\r\n", "GET / SPDY/3\r\nHost: a\r\n\r\n"} {
		if _, err := readReq(in); err != ErrNotHTTP1 {
			t.Errorf("%q: %v, want ErrNotHTTP1", in, err)
		}
	}
	if _, err := readReq("GET / HTTP/2.0\r\nHost: a\r\n\r\n"); statusOf(err) != 505 {
		t.Errorf("HTTP/2.0 request line: %v, want 505", err)
	}
}

func TestReadRequestHeadTooLarge(t *testing.T) {
	long := "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\nHost: a\r\n\r\n"
	many := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Filler: 0123456789\r\n", 20) + "\r\n"
	for _, in := range []string{long, many} {
		for _, size := range []int{16, 64, 4096} {
			h := new(RequestHead)
			err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(in), size), h, 256)
			if err != ErrHeadTooLarge {
				t.Errorf("len %d buf %d: err = %v, want ErrHeadTooLarge", len(in), size, err)
			}
			if statusOf(err) != 431 {
				t.Errorf("status = %d, want 431", statusOf(err))
			}
			// The same head fits when the limit is its own size.
			h = new(RequestHead)
			if err := ReadRequestHead(bufio.NewReaderSize(strings.NewReader(in), size), h, len(in)); err != nil {
				t.Errorf("len %d buf %d max=len: %v", len(in), size, err)
			}
		}
	}
	// A line that never ends must hit the limit rather than grow forever.
	endless := io.MultiReader(strings.NewReader("GET /"), &repeatReader{b: 'a'})
	h := new(RequestHead)
	if err := ReadRequestHead(bufio.NewReaderSize(endless, 64), h, 1024); err != ErrHeadTooLarge {
		t.Errorf("endless line: err = %v, want ErrHeadTooLarge", err)
	}
}

type repeatReader struct{ b byte }

func (r *repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b
	}
	return len(p), nil
}

func TestReadRequestHeadEOF(t *testing.T) {
	h := new(RequestHead)
	if err := ReadRequestHead(bufio.NewReader(strings.NewReader("")), h, testMaxHead); err != io.EOF {
		t.Errorf("empty input: err = %v, want io.EOF", err)
	}
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n",
		"GET / HTTP/1.1\r\nHost: a",
		"GET / HTT",
	} {
		err := ReadRequestHead(bufio.NewReader(strings.NewReader(in)), h, testMaxHead)
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%q: err = %v, want io.ErrUnexpectedEOF", in, err)
		}
		if _, ok := IsParseError(err); ok {
			t.Errorf("%q: truncated head must not be a ParseError", in)
		}
	}
}

func TestReadRequestHeadHeaderExclusion(t *testing.T) {
	in := "POST /x HTTP/1.1\r\nX-Before: 1\r\nHost: h.example\r\nContent-Length: 3\r\n" +
		"Expect: 100-continue\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\nX-After: 2\r\n\r\n"
	h, err := readReq(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Host", "Content-Length", "Expect"} {
		if h.Headers.Has(name) {
			t.Errorf("Headers must not contain %s", name)
		}
	}
	for _, name := range []string{"X-Before", "Connection", "Upgrade", "X-After"} {
		if !h.Headers.Has(name) {
			t.Errorf("Headers must contain %s", name)
		}
	}
	if string(h.Host) != "h.example" || h.ContentLength != 3 || !h.Expect100 || string(h.Upgrade) != "h2c" {
		t.Errorf("got %+v", snapReq(h))
	}

	in = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-After: 2\r\n\r\n"
	if h, err = readReq(in); err != nil {
		t.Fatal(err)
	}
	if h.Headers.Has("Transfer-Encoding") || !h.Headers.Has("X-After") || len(h.Headers) != 1 {
		t.Errorf("headers = %+v", snapReq(h).Headers)
	}
}

// TestReadRequestHeadPipelined parses several requests (with bodies) from one
// reader into one RequestHead and checks each result right after its parse:
// reused storage must not leak fields from the previous request.
func TestReadRequestHeadPipelined(t *testing.T) {
	stream := "" +
		"POST /first/a/rather/long/path?with=query HTTP/1.1\r\nHost: first.example.com\r\n" +
		"Content-Length: 5\r\nX-Long-Header-Name-One: " + strings.Repeat("v", 200) + "\r\nExpect: 100-continue\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello" +
		"PUT /2 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: t\r\n\r\n" +
		"\r\nGET /third HTTP/1.1\r\nHost: c\r\nConnection: close\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n" +
		"GET http://fourth.example/4?x HTTP/1.0\r\n\r\n"
	want := []reqSnap{
		{Method: "POST", Target: "/first/a/rather/long/path?with=query", Host: "first.example.com", Minor: 1,
			Headers:       []string{"X-Long-Header-Name-One: " + strings.Repeat("v", 200), "Upgrade: websocket", "Connection: Upgrade"},
			ContentLength: 5, Upgrade: "websocket", Expect100: true},
		{Method: "PUT", Target: "/2", Host: "b", Minor: 1, ContentLength: -1, Chunked: true, UpgradeNil: true},
		{Method: "GET", Target: "/third", Host: "c", Minor: 1, Headers: []string{"Connection: close", "X-Dup: 1", "X-Dup: 2"},
			ContentLength: -1, Close: true, UpgradeNil: true},
		{Method: "GET", Target: "/4?x", Host: "fourth.example", Minor: 0, ContentLength: -1, Close: true, UpgradeNil: true},
	}
	bodies := []string{"hello", "abc", "", ""}
	for _, size := range []int{16, 4096} {
		br := bufio.NewReaderSize(strings.NewReader(stream), size)
		var h RequestHead
		var cr ChunkedReader
		for i, w := range want {
			if err := ReadRequestHead(br, &h, testMaxHead); err != nil {
				t.Fatalf("buf %d req %d: %v", size, i, err)
			}
			if got := snapReq(&h); !reflect.DeepEqual(got, w) {
				t.Fatalf("buf %d req %d:\n got %+v\nwant %+v", size, i, got, w)
			}
			var body []byte
			var err error
			switch {
			case h.Chunked:
				cr.Reset(br, testMaxHead)
				body, err = io.ReadAll(&cr)
				if tr := cr.Trailers(); err == nil && (len(tr) != 1 || string(tr[0].Value) != "t") {
					t.Fatalf("buf %d req %d: trailers %q", size, i, tr)
				}
			case h.ContentLength > 0:
				body, err = io.ReadAll(&LengthReader{R: br, N: h.ContentLength})
			}
			if err != nil || string(body) != bodies[i] {
				t.Fatalf("buf %d req %d: body %q, %v; want %q", size, i, body, err, bodies[i])
			}
		}
		if err := ReadRequestHead(br, &h, testMaxHead); err != io.EOF {
			t.Fatalf("buf %d: after last request err = %v, want io.EOF", size, err)
		}
	}
}

// TestReadRequestHeadShorterAfterLonger checks that a short request parsed
// after a long one into the same head carries nothing over.
func TestReadRequestHeadShorterAfterLonger(t *testing.T) {
	var h RequestHead
	long := "GET /long/path HTTP/1.1\r\nHost: long.example\r\nUpgrade: x\r\nConnection: upgrade, close\r\nExpect: 100-continue\r\nContent-Length: 9\r\nA: 1\r\nB: 2\r\n\r\n"
	short := "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
	if err := ReadRequestHead(bufio.NewReader(strings.NewReader(long)), &h, testMaxHead); err != nil {
		t.Fatal(err)
	}
	if err := ReadRequestHead(bufio.NewReader(strings.NewReader(short)), &h, testMaxHead); err != nil {
		t.Fatal(err)
	}
	want := reqSnap{Method: "GET", Target: "/", HostNil: true, Minor: 0, Headers: []string{"Connection: keep-alive"},
		ContentLength: -1, UpgradeNil: true}
	if got := snapReq(&h); !reflect.DeepEqual(got, want) {
		t.Fatalf("\n got %+v\nwant %+v", got, want)
	}
}

func TestReadRequestHeadAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy in -short mode")
	}
	data := []byte("GET /api/v1/users/12345?expand=true&limit=10 HTTP/1.1\r\n" +
		"Host: api.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n" +
		"Accept: application/json\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc\r\n" +
		"Cookie: session=abc123; theme=dark\r\n" +
		"X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n" +
		"Connection: keep-alive\r\n\r\n")
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, 4096)
	var h RequestHead
	run := func() {
		rd.Reset(data) // neither Reset allocates once br has its buffer
		br.Reset(rd)
		if err := ReadRequestHead(br, &h, testMaxHead); err != nil {
			t.Fatal(err)
		}
	}
	run() // warm-up sizes h's storage
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("ReadRequestHead allocates %v times per request, want 0", n)
	}
	if string(h.Host) != "api.example.com" || len(h.Headers) != 8 {
		t.Errorf("unexpected parse result %+v", snapReq(&h))
	}
}

func BenchmarkReadRequestHead(b *testing.B) {
	data := []byte("GET /api/v1/users/12345?expand=true HTTP/1.1\r\n" +
		"Host: api.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n" +
		"Accept: application/json\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\n" +
		"Cookie: session=abc123; theme=dark\r\n" +
		"X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n" +
		"Connection: keep-alive\r\n\r\n")
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, 4096)
	var h RequestHead
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rd.Reset(data)
		br.Reset(rd)
		if err := ReadRequestHead(br, &h, testMaxHead); err != nil {
			b.Fatal(err)
		}
	}
}

type respSnap struct {
	Status        int
	Reason        string
	Minor         int
	Headers       []string
	ContentLength int64
	Chunked       bool
	Close         bool
}

func snapResp(h *ResponseHead) respSnap {
	s := respSnap{Status: h.Status, Reason: string(h.Reason), Minor: h.Minor,
		ContentLength: h.ContentLength, Chunked: h.Chunked, Close: h.Close}
	for _, f := range h.Headers {
		s.Headers = append(s.Headers, string(f.Name)+": "+string(f.Value))
	}
	return s
}

func TestReadResponseHeadValid(t *testing.T) {
	tests := []struct {
		in   string
		want respSnap
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\n",
			respSnap{Status: 200, Reason: "OK", Minor: 1, Headers: []string{"Content-Type: text/plain"}, ContentLength: 12}},
		{"HTTP/1.1 404 Not Found Here\r\n\r\n",
			respSnap{Status: 404, Reason: "Not Found Here", Minor: 1, ContentLength: -1}},
		{"HTTP/1.1 204\r\n\r\n",
			respSnap{Status: 204, Minor: 1, ContentLength: -1}},
		{"HTTP/1.1 204 \r\n\r\n",
			respSnap{Status: 204, Minor: 1, ContentLength: -1}},
		{"HTTP/1.1 500 Internal Server Error\nConnection: close\nTransfer-Encoding: chunked\n\n",
			respSnap{Status: 500, Reason: "Internal Server Error", Minor: 1, Headers: []string{"Connection: close"}, ContentLength: -1, Chunked: true, Close: true}},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
			respSnap{Status: 101, Reason: "Switching Protocols", Minor: 1, Headers: []string{"Upgrade: websocket", "Connection: Upgrade"}, ContentLength: -1}},
		{"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
			respSnap{Status: 103, Reason: "Early Hints", Minor: 1, Headers: []string{"Link: </s.css>; rel=preload"}, ContentLength: -1}},
		{"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
			respSnap{Status: 200, Reason: "OK", Minor: 0, ContentLength: 3, Close: true}},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
			respSnap{Status: 200, Reason: "OK", Minor: 0, Headers: []string{"Connection: keep-alive"}, ContentLength: 3}},
		{"HTTP/1.1 999 Whatever\r\n\r\n",
			respSnap{Status: 999, Reason: "Whatever", Minor: 1, ContentLength: -1}},
	}
	for _, tt := range tests {
		var h ResponseHead
		if err := ReadResponseHead(bufio.NewReader(strings.NewReader(tt.in)), &h, testMaxHead); err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := snapResp(&h); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestReadResponseHeadInterimThenFinal(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(
		"HTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
			"HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 2\r\n\r\nok"))
	var h ResponseHead
	for i, want := range []respSnap{
		{Status: 100, Reason: "Continue", Minor: 1, ContentLength: -1},
		{Status: 103, Reason: "Early Hints", Minor: 1, Headers: []string{"Link: </a>"}, ContentLength: -1},
		{Status: 201, Reason: "Created", Minor: 1, Headers: []string{"Location: /x"}, ContentLength: 2},
	} {
		if err := ReadResponseHead(br, &h, testMaxHead); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if got := snapResp(&h); !reflect.DeepEqual(got, want) {
			t.Fatalf("response %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	body, err := io.ReadAll(&LengthReader{R: br, N: h.ContentLength})
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q, %v", body, err)
	}
}

func TestReadResponseHeadInvalid(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 000\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1\t200 OK\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1\r\n\r\n",
		"\r\n\r\nHTTP/1.1 200 OK\r\nX: \x00\r\n\r\n",
		// Malformed fields are the upstream's fault too.
		"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: \x01\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
	} {
		var h ResponseHead
		err := ReadResponseHead(bufio.NewReader(strings.NewReader(in)), &h, testMaxHead)
		if got := statusOf(err); got != 502 {
			t.Errorf("%q: status %d (err %v), want ParseError 502", in, got, err)
		}
	}
	var h ResponseHead
	big := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 500) + "\r\n\r\n"
	if err := ReadResponseHead(bufio.NewReader(strings.NewReader(big)), &h, 256); statusOf(err) != 502 {
		t.Errorf("oversized response head: %v, want ParseError 502", err)
	}
	if err := ReadResponseHead(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n")), &h, 256); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated response head: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestParseErrorHelpers(t *testing.T) {
	_, err := readReq("GET / HTTP/1.1\r\n\r\n")
	wrapped := fmt.Errorf("conn 1: %w", err)
	pe, ok := IsParseError(wrapped)
	if !ok || pe.Status != 400 || pe.Reason == "" {
		t.Fatalf("IsParseError(wrapped) = %v, %v", pe, ok)
	}
	if !strings.HasPrefix(err.Error(), "http/1.1: ") {
		t.Errorf("Error() = %q", err.Error())
	}
	if _, ok := IsParseError(io.EOF); ok {
		t.Error("io.EOF is not a ParseError")
	}
	if !errors.Is(error(ErrHeadTooLarge), ErrHeadTooLarge) {
		t.Error("ErrHeadTooLarge identity")
	}
}

// FuzzReadRequestHead checks the parser never panics, that what it accepts is
// well-formed, and that the result does not depend on the bufio buffer size.
func FuzzReadRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"GET http://h.example:81/p?q HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET https://h.example?q HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\nGET / HTTP/1.0\n\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
		"",
		"\r",
		"GET /\x00 HTTP/1.1\r\n\r\n",
		"0 * HTTP/1.0\nHost:#0000000000000000\n\n", // found by the fuzzer: Host was not validated
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		type result struct {
			snap   reqSnap
			status int
			err    string
		}
		parseAll := func(size int) []result {
			br := bufio.NewReaderSize(bytes.NewReader(data), size)
			var h RequestHead
			var out []result
			for range 8 {
				err := ReadRequestHead(br, &h, 1024)
				if err != nil {
					r := result{err: err.Error(), status: statusOf(err)}
					if r.status == 0 {
						r.err = "non-parse: " + err.Error()
					}
					return append(out, r)
				}
				checkAccepted(t, &h)
				out = append(out, result{snap: snapReq(&h)})
			}
			return out
		}
		small, large := parseAll(16), parseAll(4096)
		if !reflect.DeepEqual(small, large) {
			t.Fatalf("result depends on buffer size:\n16:   %+v\n4096: %+v", small, large)
		}
	})
}

// checkAccepted asserts invariants of a successfully parsed head.
func checkAccepted(t *testing.T, h *RequestHead) {
	t.Helper()
	if !isToken(h.Method) {
		t.Fatalf("accepted non-token method %q", h.Method)
	}
	if len(h.Target) == 0 {
		t.Fatal("accepted empty target")
	}
	if h.Target[0] != '/' && string(h.Target) != "*" {
		t.Fatalf("target %q is neither origin-form nor asterisk-form", h.Target)
	}
	if !validTarget(h.Target) {
		t.Fatalf("target %q has invalid bytes", h.Target)
	}
	if !validValue(h.Host) || bytes.ContainsAny(h.Host, "/?#") {
		t.Fatalf("invalid host %q", h.Host)
	}
	if h.Minor != 0 && h.Minor != 1 {
		t.Fatalf("minor %d", h.Minor)
	}
	if h.Minor == 1 && h.Host == nil {
		t.Fatal("HTTP/1.1 request without host")
	}
	if h.Chunked && (h.ContentLength != -1 || h.Minor == 0) {
		t.Fatalf("chunked with Content-Length %d, minor %d", h.ContentLength, h.Minor)
	}
	if h.ContentLength < -1 {
		t.Fatalf("Content-Length %d", h.ContentLength)
	}
	for _, f := range h.Headers {
		if !isToken(f.Name) || !validValue(f.Value) {
			t.Fatalf("invalid field %q: %q", f.Name, f.Value)
		}
		if len(f.Value) > 0 && (f.Value[0] == ' ' || f.Value[0] == '\t' || f.Value[len(f.Value)-1] == ' ' || f.Value[len(f.Value)-1] == '\t') {
			t.Fatalf("untrimmed value %q", f.Value)
		}
		for _, n := range []string{"host", "content-length", "transfer-encoding"} {
			if strings.EqualFold(string(f.Name), n) {
				t.Fatalf("Headers contains %s", n)
			}
		}
	}
}

func TestHeadBuffered(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n", true},
		{"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n", false},
		{"\r\n\r\nGET / HTT", false},           // empty lines first are not the end of a head
		{"GET / HTTP/1.1\nHost: a\n\n", false}, // bare LF: unsure, so false
		{"", false},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 64)
		if tc.in != "" {
			if _, err := br.Peek(1); err != nil { // fill the buffer, as the server's Peek does
				t.Fatal(err)
			}
		}
		if got := HeadBuffered(br); got != tc.want {
			t.Errorf("HeadBuffered(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
