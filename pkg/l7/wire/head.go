// Package wire is edge-agent's HTTP/1.1 codec: request and response heads
// parsed into reusable storage, strict message framing (RFC 9112 §6) and
// chunked bodies. It exists so the proxy's hot path allocates nothing.
package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// ParseError is a malformed message; Status is what to answer a client with.
type ParseError struct {
	Status int
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("http/1.1: %s", e.Reason) }

func perr(status int, format string, args ...any) error {
	return &ParseError{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// Limits on request heads beyond their size (server.maxHeaderBytes), as
// nginx (8 KiB targets) and Envoy (100 headers) keep them.
const (
	MaxTargetBytes = 8 << 10
	MaxHeaderCount = 100
)

// ErrHeadTooLarge reports a head over the configured limit.
var ErrHeadTooLarge = &ParseError{Status: 431, Reason: "request head too large"}

// ErrNotHTTP1: the request line does not end in an HTTP version, so the
// peer does not speak HTTP/1.x (an invalid HTTP/2 preface, another
// protocol): there is no one to send an HTTP/1.1 error to.
var ErrNotHTTP1 = &ParseError{Status: 400, Reason: "not an HTTP/1.x request"}

// framing is what both request and response heads say about their body.
type framing struct {
	ContentLength int64 // -1 when absent
	Chunked       bool
	Close         bool // Connection: close, or HTTP/1.0 without keep-alive
}

// RequestHead is a parsed request line and headers. Its slices point into
// storage reused by the next Read.
type RequestHead struct {
	raw     []byte
	offsets []int
	Method  []byte
	Target  []byte
	Host    []byte
	Minor   int
	// Headers excludes Host, Content-Length and Transfer-Encoding.
	Headers message.Headers
	framing
	Upgrade   []byte
	Expect100 bool
	bareLF    bool
}

// ResponseHead is a parsed status line and headers.
type ResponseHead struct {
	raw     []byte
	offsets []int
	Status  int
	Reason  []byte
	Minor   int
	// Headers excludes Content-Length and Transfer-Encoding.
	Headers message.Headers
	framing
	bareLF bool // tolerated in responses
}

// readHead reads lines up to the blank line into raw, recording where each
// line ends. bufio's buffer moves between reads, so lines are copied out.
func readHead(br *bufio.Reader, raw []byte, offsets []int, max int, bareLF *bool) ([]byte, []int, error) {
	raw, offsets = raw[:0], offsets[:0]
	*bareLF = false
	for {
		line, err := br.ReadSlice('\n')
		if len(raw)+len(line) > max {
			return raw, offsets, ErrHeadTooLarge
		}
		raw = append(raw, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(raw) > 0 {
				return raw, offsets, io.ErrUnexpectedEOF
			}
			return raw, offsets, err
		}
		// Store the line with a bare '\n' terminator; offsets[i] is the index
		// of line i's terminator.
		start := 0
		if len(offsets) > 0 {
			start = offsets[len(offsets)-1] + 1
		}
		end := len(raw) - 1
		if end > start && raw[end-1] == '\r' {
			end--
		} else if end > start || len(offsets) > 0 {
			*bareLF = true // recipients MAY accept it (RFC 9112 §2.2); requests may not use it here
		}
		if end == start {
			if len(offsets) == 0 {
				// RFC 9112 §2.2: ignore empty lines before the request line.
				raw = raw[:0]
				continue
			}
			return raw, offsets, nil
		}
		raw = append(raw[:end], '\n')
		offsets = append(offsets, end)
	}
}

// lines returns the head's lines without line endings.
func lines(raw []byte, offsets []int, i int) []byte {
	start := 0
	if i > 0 {
		start = offsets[i-1] + 1
	}
	return raw[start:offsets[i]]
}

var headEnd = []byte("\r\n\r\n")

// HeadBuffered reports whether br's buffer already holds a whole request
// head (after any empty lines, which are skipped), so reading it needs no
// more reads from the connection. A head ended with bare LFs is not
// recognised: the answer errs towards false.
func HeadBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	b = bytes.TrimLeft(b, "\r\n")
	return bytes.Contains(b, headEnd)
}

// ReadRequestHead reads the next request head from br into h.
func ReadRequestHead(br *bufio.Reader, h *RequestHead, max int) error {
	var err error
	h.raw, h.offsets, err = readHead(br, h.raw, h.offsets, max, &h.bareLF)
	if err != nil {
		return err
	}
	h.Headers = h.Headers[:0]
	h.Host, h.Upgrade, h.Expect100 = nil, nil, false
	line := lines(h.raw, h.offsets, 0)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return perr(400, "malformed request line")
	}
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp2 <= sp1 {
		return perr(400, "malformed request line")
	}
	h.Method, h.Target = line[:sp1], line[sp1+1:sp2]
	if !isToken(h.Method) {
		return perr(400, "invalid method")
	}
	switch string(line[sp2+1:]) {
	case "HTTP/1.1":
		h.Minor = 1
	case "HTTP/1.0":
		h.Minor = 0
	default:
		if bytes.HasPrefix(line[sp2+1:], []byte("HTTP/")) {
			return perr(505, "unsupported HTTP version")
		}
		return ErrNotHTTP1
	}
	if len(h.Target) == 0 || !validTarget(h.Target) {
		return perr(400, "invalid request target")
	}
	if len(h.Target) > MaxTargetBytes {
		return perr(414, "request target longer than %d bytes", MaxTargetBytes)
	}
	if len(h.offsets)-1 > MaxHeaderCount {
		return perr(431, "more than %d header fields", MaxHeaderCount)
	}
	if h.bareLF {
		return perr(400, "line ending without CR")
	}
	var hostSeen bool
	var upgradeConn bool
	if err := parseFields(h.raw, h.offsets, &h.Headers, &h.framing, func(name, value []byte) (bool, error) {
		switch {
		case message.EqualFold(name, "host"):
			if hostSeen {
				return true, perr(400, "more than one Host header")
			}
			hostSeen, h.Host = true, value
			return true, nil
		case message.EqualFold(name, "expect"):
			if message.EqualFold(value, "100-continue") {
				// RFC 9110 §10.1.1: ignored in HTTP/1.0 requests.
				h.Expect100 = h.Minor >= 1
				return true, nil
			}
			return true, perr(417, "unsupported Expect")
		case message.EqualFold(name, "upgrade"):
			h.Upgrade = value
		case message.EqualFold(name, "connection"):
			if HasToken(value, "upgrade") {
				upgradeConn = true
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	if !upgradeConn || h.Minor == 0 { // RFC 9110 §7.8: ignored in HTTP/1.0
		h.Upgrade = nil
	}
	if h.Minor == 0 {
		http10Close(&h.framing, h.Headers)
	}
	if h.Minor == 1 && !hostSeen {
		return perr(400, "missing Host header")
	}
	if !validHost(h.Host) { // RFC 9112 §3.2: an invalid Host is a 400
		return perr(400, "invalid Host header")
	}
	// absolute-form (RFC 9112 §3.2.2): the target's authority replaces Host.
	// asterisk-form (§3.2.4) is a lone "*".
	if h.Target[0] != '/' && !(len(h.Target) == 1 && h.Target[0] == '*') {
		rest, ok := cutScheme(h.Target)
		if !ok {
			return perr(400, "invalid request target")
		}
		end := bytes.IndexAny(rest, "/?#") // RFC 3986 §3.2: authority ends here
		authority := rest
		if end >= 0 {
			authority = rest[:end]
		}
		if len(authority) == 0 || !validHost(authority) {
			return perr(400, "invalid request target")
		}
		switch {
		case end < 0:
			h.Host, h.Target = rest, []byte("/")
		case rest[end] == '/':
			h.Host, h.Target = rest[:end], rest[end:]
		default:
			// "http://host?q": origin-form needs "/?q". Shift the authority
			// one byte left, over the scheme's second '/', to make room.
			at := len(h.Target) - len(rest)
			copy(h.Target[at-1:], rest[:end])
			h.Target[at-1+end] = '/'
			h.Host, h.Target = h.Target[at-1:at-1+end], h.Target[at-1+end:]
		}
	}
	if h.Chunked && h.Minor == 0 {
		return perr(400, "chunked transfer coding in HTTP/1.0")
	}
	return nil
}

// ReadResponseHead reads a status line and headers from an upstream.
func ReadResponseHead(br *bufio.Reader, h *ResponseHead, max int) error {
	var err error
	h.raw, h.offsets, err = readHead(br, h.raw, h.offsets, max, &h.bareLF)
	if err != nil {
		if pe, ok := err.(*ParseError); ok && pe == ErrHeadTooLarge {
			return perr(502, "upstream response head too large")
		}
		return err
	}
	h.Headers = h.Headers[:0]
	line := lines(h.raw, h.offsets, 0)
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return perr(502, "malformed status line")
	}
	switch line[7] {
	case '1':
		h.Minor = 1
	case '0':
		h.Minor = 0
	default:
		return perr(502, "unsupported HTTP version")
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return perr(502, "malformed status code")
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return perr(502, "malformed status code")
	}
	h.Status = code
	h.Reason = nil
	if len(line) > 12 {
		if line[12] != ' ' {
			return perr(502, "malformed status line")
		}
		h.Reason = line[13:]
	}
	if err := parseFields(h.raw, h.offsets, &h.Headers, &h.framing, nil); err != nil {
		// A malformed upstream response is a bad gateway, whatever the field.
		if pe, ok := err.(*ParseError); ok && pe.Status != 502 {
			return perr(502, "upstream response: %s", pe.Reason)
		}
		return err
	}
	if h.Minor == 0 {
		http10Close(&h.framing, h.Headers)
	}
	return nil
}

// http10Close applies HTTP/1.0's default: the connection closes after this
// message unless the peer asked for keep-alive.
func http10Close(f *framing, hs message.Headers) {
	for i := range hs {
		if message.EqualFold(hs[i].Name, "connection") && HasToken(hs[i].Value, "keep-alive") {
			return
		}
	}
	f.Close = true
}

// parseFields validates header fields and extracts framing. special, when
// set, sees each field first and may consume it.
func parseFields(raw []byte, offsets []int, hs *message.Headers, f *framing, special func(name, value []byte) (bool, error)) error {
	f.ContentLength, f.Chunked, f.Close = -1, false, false
	teSeen := false
	for i := 1; i < len(offsets); i++ {
		line := lines(raw, offsets, i)
		if line[0] == ' ' || line[0] == '\t' {
			return perr(400, "obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return perr(400, "malformed header line")
		}
		name := line[:colon]
		if !isToken(name) {
			return perr(400, "invalid header name %q", name)
		}
		value := trimOWS(line[colon+1:])
		if !validValue(value) {
			return perr(400, "invalid value for header %q", name)
		}
		switch {
		case message.EqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || (f.ContentLength >= 0 && f.ContentLength != n) {
				return perr(400, "invalid Content-Length")
			}
			f.ContentLength = n
			continue
		case message.EqualFold(name, "transfer-encoding"):
			// Only "chunked" is supported; anything else could desync framing
			// with the next hop, so it is refused.
			if teSeen || !message.EqualFold(value, "chunked") {
				return perr(501, "unsupported Transfer-Encoding")
			}
			teSeen, f.Chunked = true, true
			continue
		case message.EqualFold(name, "connection"):
			if HasToken(value, "close") {
				f.Close = true
			}
		}
		if special != nil {
			consumed, err := special(name, value)
			if err != nil {
				return err
			}
			if consumed {
				continue
			}
		}
		*hs = append(*hs, message.Header{Name: name, Value: value})
	}
	if f.Chunked && f.ContentLength >= 0 {
		// RFC 9112 §6.3: a classic request-smuggling vector; refuse it.
		return perr(400, "both Transfer-Encoding and Content-Length")
	}
	return nil
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func validValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// hostTable holds the bytes of uri-host [":" port] (RFC 3986 reg-name,
// IP-literal, IPv4 and pct-encoded), the same set net/http accepts.
var hostTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		t[c] = true
	}
	return t
}()

func validHost(h []byte) bool {
	for _, c := range h {
		if !hostTable[c] {
			return false
		}
	}
	return true
}

// ValidMethod reports whether m is a method token (RFC 9110 §9.1).
func ValidMethod(m []byte) bool { return isToken(m) }

// ValidHost reports whether h holds only bytes allowed in uri-host[:port].
func ValidHost(h []byte) bool { return validHost(h) }

// ValidOriginTarget reports whether t is an origin-form target ("/path?q")
// made of visible ASCII, or "*".
func ValidOriginTarget(t []byte) bool {
	return len(t) > 0 && (t[0] == '/' || len(t) == 1 && t[0] == '*') && validTarget(t)
}

func validTarget(t []byte) bool {
	for _, c := range t {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

func cutScheme(t []byte) ([]byte, bool) {
	if rest, ok := bytes.CutPrefix(t, []byte("http://")); ok {
		return rest, len(rest) > 0
	}
	if rest, ok := bytes.CutPrefix(t, []byte("https://")); ok {
		return rest, len(rest) > 0
	}
	return nil, false
}

// IsParseError reports whether err is a malformed-message error and returns it.
func IsParseError(err error) (*ParseError, bool) {
	var pe *ParseError
	ok := errors.As(err, &pe)
	return pe, ok
}
