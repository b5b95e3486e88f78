package proxy

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/edge-agent/edge-agent/pkg/l7/h2server"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// h2handler serves HTTP/2 streams (TLS with ALPN h2, or h2c prior
// knowledge) through the same core as HTTP/1.1.
type h2handler struct {
	srv *Server
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// errStreamAborted: the response could not be completed; the stream must be
// reset rather than ended cleanly, once the exchange has been cleaned up.
var errStreamAborted = errors.New("response body incomplete")

// serveStream runs one HTTP/2 stream through the core.
func (h *h2handler) serveStream(hs *h2server.Stream, ln *listener, tlsState *tls.ConnectionState, remoteAddr string) {
	start := time.Now()
	st := h.srv.state.Load()
	ls := st.listener(ln)
	if ls == nil {
		h2LocalError(hs, http.StatusServiceUnavailable, "listener_removed")
		return
	}
	if hs.TooLarge {
		h2LocalError(hs, http.StatusRequestHeaderFieldsTooLarge, "request_header_fields_too_large")
		return
	}
	// Pseudo-headers become the HTTP/1.1 request line and Host upstream:
	// hold them to the same rules as the HTTP/1.1 parser.
	method, target, host := []byte(hs.Method), []byte(hs.Path), []byte(hs.Authority)
	if !wire.ValidMethod(method) || !wire.ValidOriginTarget(target) || !wire.ValidHost(host) {
		h2LocalError(hs, http.StatusBadRequest, "bad_request")
		return
	}
	var upgrade []byte
	headers := make(message.Headers, 0, len(hs.Header)+1)
	if hs.Method == "CONNECT" {
		// RFC 8441: a WebSocket is an extended CONNECT with :protocol; it
		// goes upstream as an HTTP/1.1 Upgrade (core relays it).
		if !strings.EqualFold(hs.Protocol, "websocket") {
			h2LocalError(hs, http.StatusMethodNotAllowed, "connect_not_supported")
			return
		}
		method, upgrade = []byte("GET"), []byte("websocket")
		if !hs.Header.Has("sec-websocket-key") {
			// HTTP/2 clients send no key (RFC 8441 §5); HTTP/1.1 needs one.
			var k [16]byte
			_, _ = rand.Read(k[:])
			headers = append(headers, message.Header{Name: []byte("sec-websocket-key"), Value: []byte(base64.StdEncoding.EncodeToString(k[:]))})
		}
	}
	s := scratchPool.Get().(*scratch)
	req := message.Request{
		Method:        method,
		Upgrade:       upgrade,
		Target:        wire.NormalizeTarget(target, &s.norm),
		Host:          host,
		ContentLength: hs.ContentLength,
		Body:          hs,
		ProtoMajor:    2,
		TLS:           tlsState != nil,
		ClientCert:    clientCertInfo(tlsState),
	}
	if hs.ContentLength == 0 || upgrade != nil {
		// An extended CONNECT's stream is the tunnel, not a request body:
		// upstream sees a bodiless Upgrade, and the relay reads the stream.
		req.Body, req.ContentLength = nil, 0
	}
	for _, f := range hs.Header {
		// Framing and Host are the proxy's to write (from :authority and the
		// body it forwards); copying them would duplicate or contradict it.
		if message.EqualFold(f.Name, "host") || message.EqualFold(f.Name, "content-length") {
			continue
		}
		headers = append(headers, f)
	}
	req.Headers = headers
	remoteIP, _, _ := net.SplitHostPort(remoteAddr)
	ex, _ := hs.Header.Get("expect")
	fe := &h2front{s: hs, head: hs.Method == "HEAD", expect: strings.EqualFold(string(ex), "100-continue")}
	info := serve(hs.Context(), st, ls, &req, []byte(remoteIP), fe, s)
	elapsed := time.Since(start)
	info.stats.Observe(info.status, elapsed)
	if st.server.accessLog {
		logRequest(h.srv.accessLog, ls, &req, remoteAddr, info, info.rid, start, elapsed)
	}
	scratchPool.Put(s)
	if fe.aborted {
		// Reset the stream: ending it cleanly would pass a truncated body
		// off as complete.
		hs.Reset(http2.ErrCodeInternal)
	}
}

// h2LocalError answers a stream the core never saw, as net/http's Error
// would.
func h2LocalError(hs *h2server.Stream, status int, reason string) {
	body := reason + "\n"
	_ = hs.WriteHead(status, message.Headers{
		{Name: []byte("content-type"), Value: []byte("text/plain; charset=utf-8")},
		{Name: []byte("x-content-type-options"), Value: []byte("nosniff")},
		{Name: []byte(ReasonHeader), Value: []byte(reason)},
		{Name: []byte("content-length"), Value: strconv.AppendInt(nil, int64(len(body)), 10)},
	}, false)
	_, _ = hs.Write([]byte(body))
	_ = hs.Finish(nil)
}

type h2front struct {
	s       *h2server.Stream
	head    bool // a HEAD request: no body goes out
	expect  bool // the client sent Expect (100-continue)
	aborted bool
	hdrs    message.Headers
}

// pending is a response body that knows whether its next Read waits.
type pending interface{ Pending() bool }

func (f *h2front) respond(resp *message.Response) (int64, error) {
	hdrs := f.hdrs[:0]
	for _, h := range resp.Headers {
		if !wire.IsHopByHop(h.Name) {
			hdrs = append(hdrs, h)
		}
	}
	if resp.ContentLength >= 0 && resp.Status != 204 && resp.Status != 304 {
		hdrs = append(hdrs, message.Header{Name: []byte("content-length"), Value: strconv.AppendInt(nil, resp.ContentLength, 10)})
	}
	f.hdrs = hdrs
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	src, _ := resp.Body.(pending)
	// A body whose end is already here is read before the head goes out:
	// an empty one then ends the stream on HEADERS, which gRPC needs for a
	// "Trailers-Only" answer (status in the head, no DATA).
	n, err := 0, error(nil)
	read := false
	if !f.head && src != nil && src.Pending() {
		n, err = resp.Body.Read(buf)
		read = true
	}
	noBody := f.head || resp.Body == nil || (read && n == 0 && errors.Is(err, io.EOF))
	var trailers message.Headers
	if noBody && resp.Trailers != nil && !f.head {
		trailers = resp.Trailers()
	}
	if werr := f.s.WriteHead(resp.Status, hdrs, noBody && len(trailers) == 0); werr != nil {
		f.aborted = true
		return 0, werr
	}
	if noBody {
		if len(trailers) > 0 {
			return 0, f.finish(trailers)
		}
		return 0, nil // WriteHead ended the stream and flushed
	}
	var total int64
	for {
		if !read {
			n, err = resp.Body.Read(buf)
		}
		read = false
		if n > 0 {
			total += int64(n)
			if _, werr := f.s.Write(buf[:n]); werr != nil {
				f.aborted = true
				return total, werr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.aborted = true
				return total, errStreamAborted
			}
			break
		}
		// Flush only when the upstream has nothing more ready: a unary
		// gRPC call's HEADERS, DATA and trailers then leave in one write.
		if src == nil || !src.Pending() {
			if err := f.s.Flush(); err != nil {
				f.aborted = true
				return total, err
			}
		}
	}
	if resp.Trailers != nil {
		trailers = resp.Trailers()
	}
	return total, f.finish(trailers)
}

// finish ends the response, with trailers if any.
func (f *h2front) finish(trailers message.Headers) error {
	if err := f.s.Finish(trailers); err != nil {
		f.aborted = true
		return err
	}
	return nil
}

// upgrade completes an RFC 8441 WebSocket: the upstream's 101 becomes a
// 200 on the stream (without the HTTP/1.1 handshake headers), then bytes
// are relayed between the stream and the upstream connection.
func (f *h2front) upgrade(resp *message.Response, x *upstream.Exchange, t tunnel) (int64, error) {
	hdrs := f.hdrs[:0]
	for _, h := range resp.Headers {
		if wire.IsHopByHop(h.Name) || message.EqualFold(h.Name, "sec-websocket-accept") {
			continue
		}
		hdrs = append(hdrs, h)
	}
	f.hdrs = hdrs
	err := f.s.WriteHead(http.StatusOK, hdrs, false)
	if err == nil {
		err = f.s.Flush()
	}
	if err != nil {
		x.Finish(false)
		f.aborted = true
		return 0, err
	}
	unc, ubr, done := x.Hijack()
	defer done()
	sc := &streamConn{s: f.s}
	return t.relay(sc, bufio.NewReader(sc), unc, ubr)
}

// streamConn is an HTTP/2 stream as the client side of a relay: reads
// from the request body, writes (flushed) to the response.
type streamConn struct {
	net.Conn // not used: relay needs only Read, Write and Close
	s        *h2server.Stream
}

func (c *streamConn) Read(p []byte) (int, error) { return c.s.Read(p) }

func (c *streamConn) Write(p []byte) (int, error) {
	n, err := c.s.Write(p)
	if err == nil {
		err = c.s.Flush()
	}
	return n, err
}

// Close ends the relay's reading; the stream ends when the handler returns.
func (c *streamConn) Close() error { return c.s.Close() }

// CloseWrite: the stream's END_STREAM goes out when the handler returns.
func (c *streamConn) CloseWrite() error { return nil }

func (f *h2front) abandonBody() { _ = f.s.Close() }

func (f *h2front) beforeLocalReply() {}

// continueBody sends 100 Continue when the client waits for it before
// sending its body.
func (f *h2front) continueBody() {
	if f.expect {
		_ = f.s.Continue()
	}
}

func (f *h2front) abortFunc() func() { return f.abandonBody }
