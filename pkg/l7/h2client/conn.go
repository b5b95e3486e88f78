package h2client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/h2wire"
)

// Receive windows: large enough that a multi-megabyte gRPC message streams
// without waiting on WINDOW_UPDATEs over a local network, small enough to
// bound what one slow client makes the proxy buffer.
const (
	streamWindow      = 1 << 20
	connWindow        = 16 << 20
	maxHeaderListSize = 1 << 20
	defaultMaxStreams = 100
	maxStreamID       = 1<<31 - 1
)

var (
	errRefused     = errors.New("h2client: the server refused the stream before processing it")
	errStreamEnded = errors.New("h2client: stream closed")
	errPingTimeout = errors.New("h2client: no answer to PING")
	errIdle        = errors.New("h2client: idle connection closed")
)

// Conn is one HTTP/2 connection. The read loop owns the framer's reading
// side; writers share the write side under wmu.
type Conn struct {
	pool *Pool
	addr string
	nc   net.Conn
	fr   *http2.Framer

	wmu  sync.Mutex // guards bw, the framer's writes, henc and hbuf
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	name []byte // scratch for lower-casing header names

	mu          sync.Mutex
	cond        sync.Cond // a send window grew, or a stream or the connection ended
	streams     map[uint32]*Stream
	nextID      uint32
	reserved    int // streams reserved by get or open
	maxStreams  uint32
	sendWindow  int64 // connection-level, granted by the server
	initWindow  int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    uint32
	recvAvail   int64         // how much more the server may send on the connection
	credit      h2wire.Credit // consumed, not yet granted back
	draining    bool          // GOAWAY, out of stream IDs or pool closing: no new streams
	err         error
	idleSince   time.Time
	gotSettings bool
	// liveness: frames read, as last seen by sweep, and when that changed
	frames     atomic.Uint64
	seenFrames uint64
	seenAt     time.Time
	pingSentAt time.Time

	settingsc chan struct{}
	donec     chan struct{}
	closeOnce sync.Once
}

func newConn(p *Pool, addr string, nc net.Conn) (*Conn, error) {
	c := &Conn{
		pool: p, addr: addr, nc: nc,
		bw:         bufio.NewWriterSize(nc, 32<<10),
		streams:    map[uint32]*Stream{},
		nextID:     1,
		maxStreams: defaultMaxStreams,
		sendWindow: 65535,
		initWindow: 65535,
		maxFrame:   16384,
		recvAvail:  connWindow,
		idleSince:  time.Now(),
		seenAt:     time.Now(),
		settingsc:  make(chan struct{}),
		donec:      make(chan struct{}),
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(c.bw, bufio.NewReaderSize(nc, 32<<10))
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderListSize
	c.fr.SetMaxReadFrameSize(16 << 10) // RFC 9113 default; we advertise no other
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)

	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		return nil, err
	}
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderListSize},
	)
	if err == nil {
		err = c.fr.WriteWindowUpdate(0, connWindow-65535)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// reserve claims a stream slot if the connection takes new streams.
func (c *Conn) reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.draining || c.reserved >= int(c.maxStreams) {
		return false
	}
	c.reserved++
	return true
}

// unreserveLocked gives back a slot; it reports whether the connection
// should now close (draining and unused).
func (c *Conn) unreserveLocked() bool {
	c.reserved--
	if c.reserved == 0 {
		c.idleSince = time.Now()
		return c.draining
	}
	return false
}

func (c *Conn) maxStreamsNow() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxStreams
}

func (c *Conn) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close tears the connection down and fails every stream on it.
func (c *Conn) close(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		for _, s := range c.streams {
			s.failLocked(fmt.Errorf("h2client: connection lost: %w", err))
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		_ = c.nc.Close()
		c.pool.remove(c)
		close(c.donec)
	})
}

// drain takes no new streams and closes once the last one ends.
func (c *Conn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := c.reserved == 0
	c.mu.Unlock()
	c.pool.remove(c)
	if idle {
		c.close(ErrPoolClosed)
	}
}

func (c *Conn) sweep(now time.Time) {
	c.mu.Lock()
	var closeErr error
	ping := false
	switch n := c.frames.Load(); {
	case c.reserved == 0 && c.pool.opts.IdleTimeout > 0 && now.Sub(c.idleSince) >= c.pool.opts.IdleTimeout:
		c.draining = true
		closeErr = errIdle
	case n != c.seenFrames:
		c.seenFrames, c.seenAt, c.pingSentAt = n, now, time.Time{}
	case !c.pingSentAt.IsZero():
		if now.Sub(c.pingSentAt) >= c.pool.opts.PingTimeout {
			closeErr = errPingTimeout
		}
	case now.Sub(c.seenAt) >= c.pool.opts.PingAfter:
		c.pingSentAt = now
		ping = true
	}
	c.mu.Unlock()
	if closeErr != nil {
		c.close(closeErr)
		return
	}
	if ping {
		// Not from the sweeper's goroutine: a connection stuck writing
		// must not stall the sweep of all the others. If the write never
		// completes, no frames arrive either, and the next sweeps close it.
		go c.write(func() error { return c.fr.WritePing(false, [8]byte{'e', 'd', 'g', 'e'}) })
	}
}

// write runs fn under the write lock and flushes; a failed write ends the
// connection.
func (c *Conn) write(fn func() error) {
	c.wmu.Lock()
	err := fn()
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
}

// roundTrip opens a stream on the reserved slot, sends the request head
// and waits for the response head.
func (c *Conn) roundTrip(ctx context.Context, req *Request) (*Stream, error) {
	s := &Stream{c: c, ctx: ctx, headc: make(chan struct{}), ready: make(chan struct{}, 1)}
	hasBody := req.Body != nil
	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil || c.nextID > maxStreamID {
		err := c.err
		if err == nil {
			err = errors.New("out of stream IDs")
		}
		closing := c.unreserveLocked()
		c.mu.Unlock()
		c.wmu.Unlock()
		if closing {
			c.close(errIdle)
		}
		return nil, fmt.Errorf("%w: %w", errRefused, err)
	}
	s.id = c.nextID
	c.nextID += 2
	if c.nextID > maxStreamID {
		c.draining = true
	}
	s.sendWindow, s.recvWindow, s.reqDone = c.initWindow, streamWindow, !hasBody
	c.streams[s.id] = s
	maxFrame := c.maxFrame
	c.mu.Unlock()
	err := c.writeHeaders(s.id, req, !hasBody, maxFrame)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
		return nil, fmt.Errorf("h2client: send request: %w", err)
	}
	if hasBody {
		s.body = req.Body
		go s.writeBody(req.Body)
	}
	select {
	case <-s.headc:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	if s.headErr != nil {
		s.Close()
		return nil, s.headErr
	}
	return s, nil
}

// writeHeaders encodes the request head as HEADERS (+ CONTINUATION).
// Connection-specific fields are never sent on HTTP/2 (RFC 9113 §8.2.2).
func (c *Conn) writeHeaders(id uint32, req *Request, endStream bool, maxFrame uint32) error {
	c.hbuf.Reset()
	c.field(":method", req.Method)
	c.field(":scheme", req.Scheme)
	c.field(":authority", req.Authority)
	c.field(":path", req.Path)
	for _, h := range req.Header {
		c.name = h2wire.AppendLower(c.name[:0], h.Name)
		if h2wire.ConnectionSpecific(string(c.name)) {
			continue
		}
		switch string(c.name) {
		case "host", "content-length":
			continue // :authority and the body's framing say these
		case "te":
			if req.TETrailers || !bytes.EqualFold(h.Value, []byte("trailers")) {
				continue // TETrailers adds it once
			}
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: string(c.name), Value: string(h.Value)})
	}
	if req.TETrailers {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
	}
	if req.ContentLength > 0 {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
	return h2wire.WriteHeaderBlock(c.fr, id, c.hbuf.Bytes(), endStream, maxFrame)
}

func (c *Conn) field(name string, value []byte) {
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: string(value)})
}

// forgetLocked removes a stream that is closed both ways (or reset); it
// reports whether the connection should now close.
func (c *Conn) forgetLocked(s *Stream) bool {
	if s.forgotten {
		return false
	}
	s.forgotten = true
	delete(c.streams, s.id)
	c.cond.Broadcast()
	return c.unreserveLocked()
}

// grantLocked returns consumed bytes to the connection window and says
// how much to announce in a WINDOW_UPDATE (0: not yet worth a frame).
func (c *Conn) grantLocked(n int64) int64 {
	n = c.credit.Consume(n, connWindow/4)
	c.recvAvail += n
	return n
}

func (c *Conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code, fmt.Errorf("h2client: %w", se))
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.write(func() error { return c.fr.WriteGoAway(0, http2.ErrCode(ce), nil) })
			}
			c.close(err)
			return
		}
		c.frames.Add(1)
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			err = c.onHeaders(f)
		case *http2.DataFrame:
			err = c.onData(f)
		case *http2.RSTStreamFrame:
			c.onReset(f)
		case *http2.SettingsFrame:
			err = c.onSettings(f)
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f)
		case *http2.PingFrame:
			if f.IsAck() {
				c.mu.Lock()
				c.pingSentAt = time.Time{}
				c.mu.Unlock()
			} else {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled in our SETTINGS
		}
		if err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.write(func() error { return c.fr.WriteGoAway(0, http2.ErrCode(ce), nil) })
			}
			c.close(err)
			return
		}
	}
}

// resetStream fails a stream for a protocol problem with it and tells the
// server.
func (c *Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	var closing bool
	if s := c.streams[id]; s != nil {
		s.failLocked(err)
		closing = c.forgetLocked(s)
	}
	c.mu.Unlock()
	c.write(func() error { return c.fr.WriteRSTStream(id, code) })
	if closing {
		c.close(errIdle)
	}
}

func (c *Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		neverOpened := f.StreamID >= c.nextID
		c.mu.Unlock()
		if neverOpened {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil // one we reset or closed: its frames may still be in flight
	}
	if s.gotHead {
		if !f.StreamEnded() {
			c.mu.Unlock()
			c.resetStream(f.StreamID, http2.ErrCodeProtocol, errors.New("h2client: second HEADERS without END_STREAM"))
			return nil
		}
		s.trailers = h2wire.ToHeaders(f.RegularFields())
		s.respEnded = true
		s.notifyLocked()
	} else {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 100 || status > 999 {
			c.mu.Unlock()
			c.resetStream(f.StreamID, http2.ErrCodeProtocol, fmt.Errorf("h2client: bad :status %q", f.PseudoValue("status")))
			return nil
		}
		if status < 200 {
			c.mu.Unlock()
			if f.StreamEnded() {
				c.resetStream(f.StreamID, http2.ErrCodeProtocol, errors.New("h2client: informational response ended the stream"))
			}
			return nil // 1xx: the final response follows
		}
		s.gotHead, s.Status = true, status
		s.Header = h2wire.ToHeaders(f.RegularFields())
		s.ContentLength = -1
		if v, ok := s.Header.Get("content-length"); ok {
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n >= 0 {
				s.ContentLength = n
			}
		}
		s.respEnded = f.StreamEnded()
		close(s.headc)
	}
	var closing bool
	if s.respEnded && s.reqDone {
		closing = c.forgetLocked(s)
	}
	c.mu.Unlock()
	if closing {
		c.close(errIdle)
	}
	return nil
}

func (c *Conn) onData(f *http2.DataFrame) error {
	size := int64(f.Header().Length) // flow control counts padding too
	data := f.Data()
	c.mu.Lock()
	c.recvAvail -= size
	if c.recvAvail < 0 {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := c.streams[f.StreamID]
	if s == nil || !s.gotHead || s.respEnded {
		grant := c.grantLocked(size)
		known, neverOpened := s != nil, f.StreamID >= c.nextID
		c.mu.Unlock()
		c.sendWindowUpdate(0, grant)
		if known {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol, errors.New("h2client: DATA outside a response body"))
		} else if neverOpened {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	grant := c.grantLocked(size - int64(len(data))) // padding is consumed on arrival
	s.recvWindow -= size
	if s.recvWindow < 0 {
		c.mu.Unlock()
		c.sendWindowUpdate(0, grant)
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("h2client: server overran the stream window"))
		return nil
	}
	s.recvWindow += size - int64(len(data))
	s.rbuf.Append(data)
	var closing bool
	if f.StreamEnded() {
		s.respEnded = true
		if s.reqDone {
			closing = c.forgetLocked(s)
		}
	}
	s.notifyLocked()
	c.mu.Unlock()
	c.sendWindowUpdate(0, grant)
	if closing {
		c.close(errIdle)
	}
	return nil
}

func (c *Conn) sendWindowUpdate(id uint32, n int64) {
	if n > 0 {
		c.write(func() error { return c.fr.WriteWindowUpdate(id, uint32(n)) })
	}
}

func (c *Conn) onReset(f *http2.RSTStreamFrame) {
	c.mu.Lock()
	var closing bool
	if s := c.streams[f.StreamID]; s != nil {
		err := error(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		if f.ErrCode == http2.ErrCodeRefusedStream && !s.gotHead {
			err = fmt.Errorf("%w (%v)", errRefused, err)
		}
		s.failLocked(err)
		closing = c.forgetLocked(s)
	}
	c.mu.Unlock()
	if closing {
		c.close(errIdle)
	}
}

func (c *Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize *uint32
	c.mu.Lock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = st.Val
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - c.initWindow
			c.initWindow = int64(st.Val)
			if !h2wire.ShiftWindows(c.streams, func(s *Stream) *int64 { return &s.sendWindow }, delta) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = st.Val
		case http2.SettingHeaderTableSize:
			v := st.Val
			tableSize = &v
		}
		return nil
	})
	first := !c.gotSettings
	c.gotSettings = true
	c.cond.Broadcast()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.write(func() error {
		if tableSize != nil {
			c.henc.SetMaxDynamicTableSizeLimit(*tableSize)
		}
		return c.fr.WriteSettingsAck()
	})
	if first {
		close(c.settingsc)
	}
	return nil
}

func (c *Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	overflow := false
	if f.StreamID == 0 {
		if !h2wire.AddWindow(&c.sendWindow, inc) {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if s := c.streams[f.StreamID]; s != nil {
		overflow = !h2wire.AddWindow(&s.sendWindow, inc)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if overflow {
		c.resetStream(f.StreamID, http2.ErrCodeFlowControl, errors.New("h2client: server overflowed the stream window"))
	}
	return nil
}

// onGoAway: streams above the last one the server will process were never
// seen by it and may be sent again elsewhere; the rest run to completion.
func (c *Conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.draining = true
	for id, s := range c.streams {
		if id > f.LastStreamID {
			s.failLocked(fmt.Errorf("%w (GOAWAY %v)", errRefused, f.ErrCode))
			c.forgetLocked(s)
		}
	}
	idle := c.reserved == 0
	c.mu.Unlock()
	c.pool.remove(c)
	if idle {
		c.close(errIdle)
	}
}
