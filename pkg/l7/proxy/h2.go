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

func (h *h2handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.srv.state.Load()
	ln, _ := r.Context().Value(listenerKey{}).(*listener)
	ls := st.listener(ln)
	if ls == nil {
		w.Header().Set(ReasonHeader, "listener_removed")
		http.Error(w, "listener_removed", http.StatusServiceUnavailable)
		return
	}
	// Pseudo-headers become the HTTP/1.1 request line and Host upstream:
	// hold them to the same rules as the HTTP/1.1 parser.
	if !wire.ValidMethod([]byte(r.Method)) || !wire.ValidOriginTarget([]byte(r.RequestURI)) || !wire.ValidHost([]byte(r.Host)) {
		w.Header().Set(ReasonHeader, "bad_request")
		http.Error(w, "bad_request", http.StatusBadRequest)
		return
	}
	tlsState := r.TLS
	if tlsState == nil {
		tlsState, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}
	method := []byte(r.Method)
	var upgrade []byte
	if r.Method == "CONNECT" {
		// RFC 8441: a WebSocket is an extended CONNECT with :protocol; it
		// goes upstream as an HTTP/1.1 Upgrade (core relays it).
		proto := r.Header.Get(":protocol")
		if !strings.EqualFold(proto, "websocket") {
			w.Header().Set(ReasonHeader, "connect_not_supported")
			http.Error(w, "connect_not_supported", http.StatusMethodNotAllowed)
			return
		}
		method, upgrade = []byte("GET"), []byte("websocket")
		r.Header.Del(":protocol")
		if r.Header.Get("Sec-WebSocket-Key") == "" {
			// HTTP/2 clients send no key (RFC 8441 §5); HTTP/1.1 needs one.
			var k [16]byte
			_, _ = rand.Read(k[:])
			r.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(k[:]))
		}
	}
	s := scratchPool.Get().(*scratch)
	req := message.Request{
		Method:        method,
		Upgrade:       upgrade,
		Target:        wire.NormalizeTarget([]byte(r.RequestURI), &s.norm),
		Host:          []byte(r.Host),
		ContentLength: r.ContentLength,
		Body:          r.Body,
		ProtoMajor:    r.ProtoMajor,
		TLS:           tlsState != nil,
		ClientCert:    clientCertInfo(tlsState),
	}
	if r.Body == nil || r.Body == http.NoBody || upgrade != nil {
		// An extended CONNECT's stream is the tunnel, not a request body:
		// upstream sees a bodiless Upgrade, and the relay reads r.Body.
		req.Body, req.ContentLength = nil, 0
	}
	for k, vs := range r.Header {
		// Framing and Host are the proxy's to write (from :authority and the
		// body it forwards); copying them would duplicate or contradict it.
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		name := []byte(k)
		for _, v := range vs {
			req.Headers = append(req.Headers, message.Header{Name: name, Value: []byte(v)})
		}
	}
	remoteIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	fe := &h2front{w: w, r: r}
	info := serve(r.Context(), st, ls, &req, []byte(remoteIP), fe, s)
	elapsed := time.Since(start)
	info.stats.Observe(info.status, elapsed)
	if st.server.accessLog {
		logRequest(h.srv.accessLog, ls, &req, r.RemoteAddr, info, info.rid, start, elapsed)
	}
	scratchPool.Put(s)
	if fe.aborted {
		// Reset the stream: ending it cleanly would pass a truncated body
		// off as complete.
		panic(http.ErrAbortHandler)
	}
}

// pending is a response body that knows whether its next Read waits.
type pending interface{ Pending() bool }

type h2front struct {
	w       http.ResponseWriter
	r       *http.Request
	aborted bool
}

func (f *h2front) respond(resp *message.Response) (int64, error) {
	hdr := f.w.Header()
	for _, h := range resp.Headers {
		if wire.IsHopByHop(h.Name) {
			continue
		}
		hdr.Add(string(h.Name), string(h.Value))
	}
	if resp.ContentLength >= 0 && resp.Status != 204 && resp.Status != 304 {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	f.w.WriteHeader(resp.Status)
	if f.r.Method == "HEAD" || resp.Body == nil {
		return 0, nil
	}
	rc := http.NewResponseController(f.w)
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	src, _ := resp.Body.(pending)
	var total int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			if _, werr := f.w.Write(buf[:n]); werr != nil {
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
		if src == nil || !src.Pending() {
			if err := rc.Flush(); err != nil {
				f.aborted = true
				return total, err
			}
		}
	}
	if resp.Trailers != nil {
		for _, t := range resp.Trailers() {
			hdr.Add(http.TrailerPrefix+string(t.Name), string(t.Value))
		}
	}
	return total, nil
}

// upgrade completes an RFC 8441 WebSocket: the upstream's 101 becomes a
// 200 on the stream (without the HTTP/1.1 handshake headers), then bytes
// are relayed between the stream and the upstream connection.
func (f *h2front) upgrade(resp *message.Response, x *upstream.Exchange, t tunnel) (int64, error) {
	hdr := f.w.Header()
	for _, h := range resp.Headers {
		if wire.IsHopByHop(h.Name) || message.EqualFold(h.Name, "sec-websocket-accept") {
			continue
		}
		hdr.Add(string(h.Name), string(h.Value))
	}
	f.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(f.w)
	if err := rc.Flush(); err != nil {
		x.Finish(false)
		f.aborted = true
		return 0, err
	}
	unc, ubr, done := x.Hijack()
	defer done()
	sc := &streamConn{body: f.r.Body, w: f.w, rc: rc}
	return t.relay(sc, bufio.NewReader(sc), unc, ubr)
}

// streamConn is an HTTP/2 stream as the client side of a relay: reads
// from the request body, writes (flushed) to the response.
type streamConn struct {
	net.Conn // not used: relay needs only Read, Write and Close
	body     io.ReadCloser
	w        http.ResponseWriter
	rc       *http.ResponseController
}

func (c *streamConn) Read(p []byte) (int, error) { return c.body.Read(p) }

func (c *streamConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

// Close ends the relay's reading; the stream ends when the handler returns.
func (c *streamConn) Close() error { return c.body.Close() }

// CloseWrite: the stream's END_STREAM goes out when the handler returns.
func (c *streamConn) CloseWrite() error { return nil }

func (f *h2front) abandonBody() {
	if f.r.Body != nil {
		_ = f.r.Body.Close()
	}
}

func (f *h2front) beforeLocalReply() {}

// continueBody: net/http's HTTP/2 server sends 100 Continue on the first
// read of the body.
func (f *h2front) continueBody() {}

func (f *h2front) abortFunc() func() { return f.abandonBody }
