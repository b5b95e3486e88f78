package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/h2client"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// OutRequest is a request as it goes upstream: the proxy has already removed
// hop-by-hop headers and applied the route's rewrites and header changes.
type OutRequest struct {
	Method, Target, Host []byte
	Headers              message.Headers
	// ContentLength is 0 for no body and -1 for a body of unknown length.
	ContentLength int64
	Body          io.Reader
	// BodyBuffered says the whole body is in memory, so it is written inline
	// instead of from a goroutine.
	BodyBuffered bool
	// Trailers, if set, is called after Body's EOF (chunked bodies only).
	Trailers func() message.Headers
	// Upgrade asks the upstream to switch to this protocol (e.g. websocket).
	Upgrade []byte
	// TETrailers forwards "te: trailers" (gRPC needs it over HTTP/2).
	TETrailers bool
	// Timeout bounds the exchange until the response head has arrived.
	Timeout time.Duration
	// Deadline bounds reading the response body (zero: no limit, for
	// streaming routes); IdleTimeout cuts a body that stalls this long.
	Deadline    time.Time
	IdleTimeout time.Duration
	// Ctx, when cancellable, aborts the exchange when it ends.
	Ctx context.Context
	// AbortBody unblocks a Body read stuck on a slow client, so a failed
	// exchange can stop its body writer.
	AbortBody func()
}

// Exchange is one request/response with an upstream. The proxy reuses one
// per client connection; its zero value is ready to use.
type Exchange struct {
	Response message.Response

	conn     *Conn
	cluster  *Cluster
	ep       *Endpoint
	head     wire.ResponseHead
	lr       wire.LengthReader
	cr       wire.ChunkedReader
	body     io.Reader // one of lr, cr, the raw connection, or an h2 body
	noBody   bool
	bodyEOF  bool
	untilEOF bool
	bodyErr  chan error
	stopCtx  func() bool
	h2req    h2client.Request
	h2s      *h2client.Stream
	h2cancel context.CancelFunc
	// active is the connection in use, for Abort from another goroutine.
	active atomic.Pointer[Conn]
	// deadline and idle bound the response body (OutRequest.Deadline and
	// IdleTimeout); idleReads says each read must move the deadline.
	deadline  time.Time
	idle      time.Duration
	idleReads bool
	h2timer   *time.Timer
	// bodyAborted: a failed send stopped the request-body writer while it
	// was reading the client; the body cannot be sent again.
	bodyAborted bool
}

// BodyAborted reports whether the last RoundTrip stopped reading the
// client's request body part-way (a retry could not send it whole).
func (x *Exchange) BodyAborted() bool { return x.bodyAborted }

// Abort closes the upstream connection of the exchange in progress, if any.
// It is safe to call from any goroutine (the drain deadline uses it).
func (x *Exchange) Abort() {
	if c := x.active.Load(); c != nil {
		_ = c.nc.Close()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// GetBuffer lends a 32 KiB copy buffer; return it with PutBuffer.
func GetBuffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer returns a buffer from GetBuffer.
func PutBuffer(b *[]byte) { bufPool.Put(b) }

// RoundTrip sends req to ep and reads the response head into x.Response.
// The caller streams x.Response.Body and must call x.Finish.
func (c *Cluster) RoundTrip(ep *Endpoint, req *OutRequest, x *Exchange) error {
	x.cluster, x.ep, x.bodyAborted = c, ep, false
	ep.active.Add(1)
	c.stats.inflight.Inc()
	if c.h2 != nil {
		return x.roundTripH2C(req)
	}
	ctx := req.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	for attempt := 0; ; attempt++ {
		var conn *Conn
		var err error
		if attempt == 0 {
			conn, err = ep.getConn(ctx, c, req.Timeout)
		} else {
			// The retry dials: other pooled connections are likely stale too.
			conn, err = ep.dial(ctx, c, req.Timeout)
		}
		if err != nil {
			return err
		}
		err = x.send(conn, req)
		if err == nil {
			return nil
		}
		bodyErr := x.abortBody(conn, req)
		x.active.Store(nil)
		conn.close()
		x.conn = nil
		if _, ok := bodyErr.(*clientBodyError); ok {
			// The client's body was malformed or cut short: its fault, not
			// the upstream's.
			return &Error{Kind: BadRequestBody, Err: bodyErr}
		}
		// A pooled connection the upstream closed while idle fails at once.
		// Only a request that is safe to repeat (RFC 9110 §9.2.2) and has
		// no body is sent again: the upstream may have processed it.
		if attempt == 0 && conn.reused && req.ContentLength == 0 && req.Upgrade == nil && replayable(req.Method) && isStale(err) {
			continue
		}
		if req.Ctx != nil && req.Ctx.Err() != nil {
			return &Error{Kind: Canceled, Err: req.Ctx.Err()}
		}
		return classify(err)
	}
}

func (x *Exchange) send(conn *Conn, req *OutRequest) error {
	x.conn, x.noBody, x.bodyEOF, x.untilEOF, x.bodyErr = conn, false, false, false, nil
	x.active.Store(conn)
	nc := conn.nc
	// The route timeout runs until the response head. While a streamed
	// body makes progress its writer pushes the deadline on, so a long
	// upload is not cut by it but a stalled one is. A busy connection
	// keeps the deadline it has when that is within the slack.
	if err := conn.rd.Within(time.Now(), req.Timeout); err != nil {
		return err
	}
	var hd *headDeadline
	if req.Ctx != nil && req.Ctx.Done() != nil {
		x.stopCtx = context.AfterFunc(req.Ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	}
	writeHead(conn.bw, req)
	switch {
	case req.ContentLength == 0 || req.Body == nil:
		if err := conn.bw.Flush(); err != nil {
			return err
		}
	case req.BodyBuffered:
		if err := writeBody(conn.bw, req, nil, nil); err != nil {
			return err
		}
	default:
		ch := make(chan error, 1)
		x.bodyErr = ch
		conn.rd.Forget() // the body writer moves the deadline from here
		hd = &headDeadline{nc: nc, timeout: req.Timeout}
		go func() {
			err := writeBody(conn.bw, req, nc, hd)
			// Report first, so the reader that the deadline change wakes
			// finds the error; once the head is in, hd is stopped and these
			// calls do nothing.
			ch <- err
			if _, bad := err.(*clientBodyError); bad {
				hd.expire() // nothing more can be sent: stop waiting for a response
			} else {
				// Body sent (or the upstream stopped taking it and may be
				// answering early, e.g. 413): the route timeout runs now.
				hd.extend()
			}
		}()
	}
	for {
		if err := wire.ReadResponseHead(conn.br, &x.head, 64<<10); err != nil {
			return err
		}
		// Interim responses are not forwarded (the proxy answers Expect
		// itself); 101 ends the exchange as an upgrade.
		if x.head.Status >= 200 || x.head.Status == 101 {
			break
		}
	}
	if hd != nil {
		hd.stop() // from here the read deadline belongs to the response body
	}
	h := &x.head
	r := &x.Response
	r.Status, r.Headers, r.Trailers = h.Status, h.Headers, nil
	switch {
	case h.Status == 101:
		if req.Upgrade == nil {
			return &wire.ParseError{Status: 502, Reason: "unexpected 101 response"}
		}
		x.noBody, r.ContentLength, r.Body = true, 0, nil
		// The tunnel lives as long as its peers want: no route timeout.
		return conn.rd.Set(time.Time{})
	case string(req.Method) == "HEAD":
		// No body follows; the length (if any) describes the entity.
		x.noBody, r.ContentLength = true, h.ContentLength
		if h.Chunked {
			r.ContentLength = -1
		}
	case h.Status == 204 || h.Status == 304:
		x.noBody, r.ContentLength = true, 0
	case h.Chunked:
		x.cr.Reset(conn.br, 16<<10)
		x.body, r.ContentLength = &x.cr, -1
		r.Trailers = x.cr.Trailers
	case h.ContentLength >= 0:
		x.lr = wire.LengthReader{R: conn.br, N: h.ContentLength}
		x.body, r.ContentLength = &x.lr, h.ContentLength
		x.noBody = h.ContentLength == 0
	default:
		x.untilEOF = true
		x.body, r.ContentLength = conn.br, -1
	}
	r.Body = x
	if x.noBody {
		r.Body = eofReader{}
	}
	// Lift the deadline for a body still to be read (it may stream for
	// longer than the route timeout). A body already in the buffer needs no
	// more reads, and the next exchange on the connection sets its own
	// deadline: skipping the call saves a timer update per request.
	x.idleReads = false
	if !x.noBody && !(x.body == &x.lr && x.lr.Buffered() >= int(x.lr.N)) {
		x.deadline, x.idle = req.Deadline, req.IdleTimeout
		if x.idle > 0 && (x.deadline.IsZero() || time.Until(x.deadline) > x.idle) {
			x.idleReads = true
			return conn.rd.Set(x.nextReadDeadline())
		}
		return conn.rd.Set(x.deadline)
	}
	return nil
}

// nextReadDeadline is the idle timeout from now, within the body deadline.
func (x *Exchange) nextReadDeadline() time.Time {
	t := time.Now().Add(x.idle)
	if !x.deadline.IsZero() && x.deadline.Before(t) {
		return x.deadline
	}
	return t
}

// Read streams the response body.
func (x *Exchange) Read(p []byte) (int, error) {
	if x.idleReads {
		if x.h2s != nil {
			x.h2timer.Reset(time.Until(x.nextReadDeadline()))
		} else if c := x.conn; c != nil && c.br.Buffered() == 0 {
			_ = c.rd.Set(x.nextReadDeadline())
		}
	}
	n, err := x.body.Read(p)
	if err == io.EOF {
		x.bodyEOF = true
	} else if err != nil && x.h2s == nil {
		err = classify(err)
	}
	return n, err
}

// Buffered reports how many body bytes can be read without blocking, so the
// front-end flushes only when the upstream has nothing more ready.
func (x *Exchange) Buffered() int {
	switch {
	case x.h2s != nil:
		return x.h2s.Buffered()
	case x.body == &x.lr:
		return x.lr.Buffered()
	default:
		return x.conn.br.Buffered()
	}
}

// Pending reports whether the next Read returns without blocking: body
// bytes are buffered, or (HTTP/2) the body's end has already arrived. An
// HTTP/2 front-end then holds its flush, so a response's HEADERS, DATA and
// trailers leave in one write.
func (x *Exchange) Pending() bool {
	if x.h2s != nil {
		return x.h2s.Pending()
	}
	return x.Buffered() > 0
}

// Hijack hands over the upstream connection after a 101 response; the
// caller relays raw bytes and must call done when finished with it.
func (x *Exchange) Hijack() (nc net.Conn, br *bufio.Reader, done func()) {
	c := x.conn
	x.conn = nil
	x.finishStats()
	return c.nc, c.br, c.close
}

// Finish ends the exchange. delivered says the whole response reached the
// client. It returns false when the request-body writer is still running:
// the caller must close the client connection and then call WaitBody.
func (x *Exchange) Finish(delivered bool) bool {
	ctxFired := false
	if x.stopCtx != nil {
		// If the context's AfterFunc already ran, the connection's deadline
		// is in the past: it must not be pooled.
		ctxFired = !x.stopCtx()
		x.stopCtx = nil
	}
	if x.h2s != nil {
		if x.h2timer != nil {
			x.h2timer.Stop()
			x.h2timer = nil
		}
		x.h2s.Close()
		x.h2cancel()
		x.h2s, x.h2cancel = nil, nil
		x.h2req = h2client.Request{}
	}
	x.idleReads = false
	bodyDone := true
	x.active.Store(nil)
	if x.conn == nil && x.bodyErr != nil { // h2c: wait for the transport to let go of the body
		bodyDone, _ = x.waitBody(bodyGrace)
	}
	if x.conn != nil {
		reusable := delivered && (x.noBody || x.bodyEOF) && !x.untilEOF && !x.head.Close && !ctxFired
		if x.bodyErr != nil {
			// The writer usually has only its last flush to go: give it a
			// moment before giving up on both connections.
			var err error
			bodyDone, err = x.waitBody(bodyGrace)
			reusable = reusable && bodyDone && err == nil
		}
		x.conn.release(reusable)
		x.conn = nil
	}
	x.finishStats()
	return bodyDone
}

// waitBody waits up to d for the body writer; it reports whether it ended
// and the writer's error.
func (x *Exchange) waitBody(d time.Duration) (bool, error) {
	select {
	case err := <-x.bodyErr: // the usual case: no timer needed
		x.bodyErr = nil
		return true, err
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-x.bodyErr:
		x.bodyErr = nil
		return true, err
	case <-t.C:
		return false, nil
	}
}

// WaitBody waits for a request-body writer that Finish reported running.
func (x *Exchange) WaitBody() {
	if x.bodyErr != nil {
		<-x.bodyErr
		x.bodyErr = nil
	}
}

func (x *Exchange) finishStats() {
	if x.ep != nil {
		x.ep.active.Add(-1)
		x.cluster.stats.inflight.Dec()
		x.ep, x.cluster = nil, nil
	}
}

// abortBody stops a running body writer after a failed send.
// It returns the writer's error, if it had one.
func (x *Exchange) abortBody(conn *Conn, req *OutRequest) error {
	if x.stopCtx != nil {
		x.stopCtx()
		x.stopCtx = nil
	}
	if x.bodyErr == nil {
		return nil
	}
	var err error
	select {
	case err = <-x.bodyErr: // already done (perhaps the cause of the failure)
	default:
		// Still running: stop it. Its error is then our doing, not news.
		if req.AbortBody != nil {
			req.AbortBody()
			x.bodyAborted = true
		}
		_ = conn.nc.Close()
		<-x.bodyErr
	}
	x.bodyErr = nil
	return err
}

// bodyGrace is how long Finish waits for a request-body writer that is
// still running when the response has been delivered.
const bodyGrace = 50 * time.Millisecond

// clientBodyError is a failure reading the client's request body, as
// opposed to writing it upstream.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

func replayable(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

func writeHead(bw *bufio.Writer, req *OutRequest) {
	bw.Write(req.Method)
	bw.WriteByte(' ')
	bw.Write(req.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(req.Host)
	bw.WriteString("\r\n")
	for _, h := range req.Headers {
		bw.Write(h.Name)
		bw.WriteString(": ")
		bw.Write(h.Value)
		bw.WriteString("\r\n")
	}
	if req.Upgrade != nil {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(req.Upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case req.ContentLength > 0 || !(string(req.Method) == "GET" || string(req.Method) == "HEAD"):
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// headDeadline is the response-head deadline of an exchange whose body is
// streamed: the body writer moves it while the upload progresses, until
// the head arrives and the deadline belongs to the response body.
type headDeadline struct {
	mu      sync.Mutex
	nc      net.Conn
	timeout time.Duration
	stopped bool
}

func (h *headDeadline) set(t time.Time) {
	h.mu.Lock()
	if !h.stopped {
		_ = h.nc.SetReadDeadline(t)
	}
	h.mu.Unlock()
}

func (h *headDeadline) extend() { h.set(time.Now().Add(h.timeout)) }
func (h *headDeadline) expire() { h.set(time.Unix(1, 0)) }

func (h *headDeadline) stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
}

// writeBody copies the request body upstream. With nc and hd set (a
// streamed body), each write must make progress within the route timeout,
// and each chunk read from the client moves the response-head deadline.
func writeBody(bw *bufio.Writer, req *OutRequest, nc net.Conn, hd *headDeadline) error {
	bp := GetBuffer()
	defer PutBuffer(bp)
	buf := *bp
	chunked := req.ContentLength < 0
	for {
		n, err := req.Body.Read(buf)
		if n > 0 {
			if nc != nil {
				hd.extend()
				_ = nc.SetWriteDeadline(time.Now().Add(req.Timeout))
			}
			var werr error
			if chunked {
				werr = wire.WriteChunk(bw, buf[:n])
				if werr == nil {
					werr = bw.Flush()
				}
			} else {
				_, werr = bw.Write(buf[:n])
			}
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &clientBodyError{err}
		}
	}
	if nc != nil {
		defer func() { _ = nc.SetWriteDeadline(time.Time{}) }()
	}
	if chunked {
		var tr message.Headers
		if req.Trailers != nil {
			tr = req.Trailers()
		}
		if err := wire.WriteLastChunk(bw, tr); err != nil {
			return err
		}
	}
	return bw.Flush()
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func classify(err error) error {
	if _, ok := AsError(err); ok {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Kind: Timeout, Err: err}
	}
	if _, ok := wire.IsParseError(err); ok {
		return &Error{Kind: ProtocolError, Err: err}
	}
	return &Error{Kind: Reset, Err: err}
}
