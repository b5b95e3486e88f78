package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/deadline"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// h1conn serves one HTTP/1.1 client connection: one request at a time,
// synchronously on its own goroutine, with every buffer reused.
type h1conn struct {
	srv *Server
	ln  *listener
	tls bool
	// clientCert: the verified client certificate (mTLS), per connection.
	clientCert []byte
	nc         net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	head       wire.RequestHead
	req        message.Request
	lr         wire.LengthReader
	cr         wire.ChunkedReader
	s          scratch
	remoteIP   []byte
	remote     string
	track      *tracked

	closeAfter bool
	isHead     bool
	continued  bool // "100 Continue" sent for this request
	abort      func()
	cut        func()
	// dw is what bw writes through: each write must make progress within
	// the server's write timeout (a client that stops reading is cut).
	dw deadlineWriter
	// rd moves the read deadline (idle, header) only when it must.
	rd deadline.Read
}

var h1Pool = sync.Pool{New: func() any {
	c := &h1conn{bw: bufio.NewWriterSize(nil, 16<<10)}
	c.abort = c.unblockRead
	c.cut = c.s.x.Abort
	return c
}}

func (s *Server) serveH1(t *tracked, nc net.Conn, br *bufio.Reader, ln *listener, isTLS bool) {
	c := h1Pool.Get().(*h1conn)
	c.srv, c.ln, c.tls, c.nc, c.br, c.track = s, ln, isTLS, nc, br, t
	c.dw = deadlineWriter{nc: nc, timeout: s.state.Load().server.writeTimeout}
	c.bw.Reset(&c.dw)
	c.rd.Reset(nc)
	t.abort.Store(&c.cut)
	c.clientCert = nil
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.clientCert = clientCertInfo(&cs)
	}
	c.remote = nc.RemoteAddr().String()
	host, _, _ := net.SplitHostPort(c.remote)
	c.remoteIP = append(c.remoteIP[:0], host...)
	c.loop()
	_ = c.bw.Flush() // whatever the reason for leaving, send what was answered
	t.abort.Store(nil)
	c.bw.Reset(nil)
	c.dw = deadlineWriter{}
	c.rd.Reset(nil)
	c.srv, c.ln, c.nc, c.br, c.track = nil, nil, nil, nil, nil
	h1Pool.Put(c)
}

func (c *h1conn) loop() {
	srv := c.srv
	// A connection becomes idle (one a drain may close) only after its
	// first request: until then it is fresh (see freshGrace).
	for first := true; ; first = false {
		if !first {
			c.track.setIdle(true)
			if srv.draining.Load() {
				return
			}
			_ = c.rd.Within(time.Now(), srv.state.Load().server.idleTimeout)
		} else {
			_ = c.rd.Set(time.Now().Add(srv.state.Load().server.readHeaderTimeout))
		}
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		c.track.fresh.Store(false)
		c.track.setIdle(false)
		// Load the state only now: a reload while the connection was idle
		// applies to its next request.
		st := srv.state.Load()
		// The header timeout bounds the reads of a head still on its way;
		// a head already buffered needs none (the usual case, and the
		// idle deadline left in place saves a timer update per request).
		if !wire.HeadBuffered(c.br) {
			_ = c.rd.Set(time.Now().Add(st.server.readHeaderTimeout))
		}
		err := wire.ReadRequestHead(c.br, &c.head, st.server.maxHeaderBytes)
		start := time.Now()
		if err != nil {
			if pe, ok := wire.IsParseError(err); ok && pe != wire.ErrNotHTTP1 {
				c.closeAfter = true
				c.isHead = false
				info := localReply(c, &c.s, st.noRoute, pe.Status, "bad_request", nil, st)
				_ = c.bw.Flush()
				srv.logBad(c.remote, pe, info)
			}
			return
		}
		if c.head.ContentLength > 0 || c.head.Chunked || c.head.Upgrade != nil {
			// The body (or tunnel) is read after the head: no header or
			// idle deadline. Without one, the deadline in place stays; the
			// next request moves it.
			_ = c.rd.Set(time.Time{})
		}
		ls := st.listener(c.ln)
		if ls == nil {
			// The listener's address left the config: answer, then close.
			c.closeAfter, c.isHead = true, false
			localReply(c, &c.s, st.noRoute, 503, "listener_removed", nil, st)
			_ = c.bw.Flush()
			return
		}
		c.prepare()
		info := serve(context.Background(), st, ls, &c.req, c.remoteIP, c, &c.s)
		if !c.bodyConsumed() {
			c.closeAfter = true
		}
		// Always flush: bytes already buffered may be a partial next request
		// (or a stray CRLF), and the next read could block with this
		// response unsent. Pipelined responses cost a write each.
		if c.bw.Flush() != nil {
			c.closeAfter = true
		}
		elapsed := time.Since(start)
		info.stats.Observe(info.status, elapsed)
		if st.server.accessLog {
			logRequest(srv.accessLog, ls, &c.req, c.remote, info, info.rid, start, elapsed)
		}
		if c.closeAfter {
			return
		}
	}
}

// prepare turns the parsed head into the core's Request.
func (c *h1conn) prepare() {
	h := &c.head
	r := &c.req
	c.continued = false
	*r = message.Request{Method: h.Method, Target: wire.NormalizeTarget(h.Target, &c.s.norm), Host: h.Host, Headers: h.Headers,
		Upgrade: h.Upgrade, ProtoMajor: 1, TLS: c.tls, ClientCert: c.clientCert}
	switch {
	case h.Chunked:
		c.cr.Reset(c.br, c.srv.state.Load().server.maxHeaderBytes)
		r.Body, r.ContentLength = &c.cr, -1
	case h.ContentLength > 0:
		c.lr = wire.LengthReader{R: c.br, N: h.ContentLength}
		r.Body, r.ContentLength = &c.lr, h.ContentLength
	default:
		r.Body, r.ContentLength = nil, 0
	}
	c.isHead = string(h.Method) == "HEAD"
	c.closeAfter = h.Close || (h.Minor == 0 && !keepAlive(h.Headers)) || c.srv.draining.Load()
	// Only WebSocket upgrades are tunnelled. Others (h2c in particular, a
	// known smuggling vector) are dropped as hop-by-hop and the request is
	// proxied as a normal one.
	if r.Upgrade != nil && !message.EqualFold(r.Upgrade, "websocket") {
		r.Upgrade = nil
	}
}

func keepAlive(hs message.Headers) bool {
	v, ok := hs.Get("connection")
	return ok && wire.HasToken(v, "keep-alive")
}

// bodyConsumed reports whether the request body was read to its end, so
// the next request starts at a known place in the stream.
//
// It asks the connection's own readers, by the head's framing: the core
// may have wrapped req.Body (a WAF replaying what it inspected).
func (c *h1conn) bodyConsumed() bool {
	switch {
	case c.head.Chunked:
		return c.cr.Done()
	case c.head.ContentLength > 0:
		return c.lr.N == 0
	default:
		return true
	}
}

func (c *h1conn) abandonBody() { c.unblockBody() }

// continueBody answers "Expect: 100-continue" once the request is known to
// be proxied: a 404 or redirect then never invites the body.
func (c *h1conn) continueBody() {
	if c.head.Expect100 && c.req.ContentLength != 0 && !c.continued {
		c.continued = true
		c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if c.bw.Flush() != nil {
			c.closeAfter = true
		}
	}
}

// beforeLocalReply: a reply the proxy makes itself leaves any request body
// unread, so the connection closes after it and the reply says so.
func (c *h1conn) beforeLocalReply() {
	if !c.bodyConsumed() {
		c.closeAfter = true
	}
}

// unblockBody ends any read of the request body: the connection will close
// after this response, so the rest of the body no longer matters.
func (c *h1conn) unblockBody() {
	c.closeAfter = true
	_ = c.bw.Flush()
	c.unblockRead()
}

// unblockRead ends a read of the request body in progress. Other
// goroutines call it (the WAF's body-wait timer, via abortFunc), so it
// touches nothing but the connection's deadline, and that directly, not
// through c.rd: the connection's goroutine then finds the body unread and
// closes the connection after its reply, or (had the body just ended)
// sets a fresh deadline for the next request.
func (c *h1conn) unblockRead() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) }

func (c *h1conn) writeStatus(code int) {
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	writeInt(bw, int64(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

func (c *h1conn) writeHeaders(hs message.Headers) {
	bw := c.bw
	for _, h := range hs {
		bw.Write(h.Name)
		bw.WriteString(": ")
		bw.Write(h.Value)
		bw.WriteString("\r\n")
	}
}

// respond writes the head and streams the body, flushing whenever the
// upstream has nothing more buffered (server-sent events reach the client
// at once) and otherwise batching into as few writes as possible.
func (c *h1conn) respond(resp *message.Response) (int64, error) {
	bw := c.bw
	noBody := c.isHead || resp.Status == 204 || resp.Status == 304 || resp.Status < 200
	chunked := false
	c.writeStatus(resp.Status)
	c.writeHeaders(resp.Headers)
	switch {
	case resp.ContentLength >= 0:
		if resp.Status != 204 && resp.Status != 304 && resp.Status >= 200 {
			bw.WriteString("Content-Length: ")
			writeInt(bw, resp.ContentLength)
			bw.WriteString("\r\n")
		}
	case noBody:
	case c.head.Minor >= 1:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		c.closeAfter = true // HTTP/1.0: the end of the body is the close
	}
	if c.closeAfter || c.srv.draining.Load() {
		c.closeAfter = true
		bw.WriteString("Connection: close\r\n")
	} else if c.head.Minor == 0 {
		bw.WriteString("Connection: keep-alive\r\n") // HTTP/1.0 keeps the connection only if told
	}
	_, err := bw.WriteString("\r\n")
	if noBody || err != nil {
		return 0, err
	}
	return c.copyBody(resp, chunked)
}

// writeInt formats n straight into bw's buffer: a stack array passed to
// bufio.Writer.Write would escape and cost an allocation per response.
func writeInt(bw *bufio.Writer, n int64) {
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), n, 10))
}

type buffered interface{ Buffered() int }

func (c *h1conn) copyBody(resp *message.Response, chunked bool) (int64, error) {
	bw := c.bw
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	src, _ := resp.Body.(buffered)
	var total int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			var werr error
			if chunked {
				werr = wire.WriteChunk(bw, buf[:n])
			} else {
				_, werr = bw.Write(buf[:n])
			}
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			c.closeAfter = true
			_ = bw.Flush()
			return total, err
		}
		if src == nil || src.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return total, err
			}
		}
	}
	if chunked {
		var tr message.Headers
		if resp.Trailers != nil {
			tr = resp.Trailers()
		}
		if err := wire.WriteLastChunk(bw, tr); err != nil {
			return total, err
		}
	}
	return total, nil
}

// upgrade completes a protocol switch (WebSocket) and relays bytes in both
// directions until both sides are done or the route's tunnel limits end it.
func (c *h1conn) upgrade(resp *message.Response, x *upstream.Exchange, t tunnel) (int64, error) {
	c.closeAfter = true
	c.writeStatus(101)
	c.writeHeaders(resp.Headers)
	c.bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
	c.bw.Write(c.head.Upgrade)
	c.bw.WriteString("\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		x.Finish(false)
		return 0, err
	}
	// The relay writes to the connection itself, under the tunnel's idle
	// and lifetime limits: the per-write deadline of responses must go.
	_ = c.nc.SetWriteDeadline(time.Time{})
	unc, ubr, done := x.Hijack()
	defer done()
	return t.relay(c.nc, c.br, unc, ubr)
}

func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = nc.Close()
	}
}

func (c *h1conn) abortFunc() func() { return c.abort }

// deadlineWriter gives each write to the client timeout to make progress.
// Moving a deadline costs a timer update, so it is moved only when a
// quarter of the timeout has passed since it was last set: every write
// then still has at least three quarters of it.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	set     time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.timeout > 0 {
		if now := time.Now(); now.Sub(d.set) > d.timeout/4 {
			d.set = now
			_ = d.nc.SetWriteDeadline(now.Add(d.timeout))
		}
	}
	return d.nc.Write(p)
}
