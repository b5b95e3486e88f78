// Package h2server is a frame-level HTTP/2 server for the proxy's client
// side. One goroutine per connection reads frames and keeps the RFC 9113
// state; each stream's handler runs in its own goroutine and writes its
// HEADERS, DATA and trailers straight into the connection's buffer under a
// lock, flushing only when it asks to. net/http's server instead sends
// every frame through its serve loop (a channel round trip each) and
// flushes from a new goroutine, which is most of what a proxied gRPC call
// costs there.
package h2server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/h2wire"
)

// Config tunes a connection; zero values pick the defaults.
type Config struct {
	MaxConcurrentStreams uint32        // default 1000
	MaxHeaderListSize    uint32        // default 1 MiB
	IdleTimeout          time.Duration // no streams this long: GOAWAY and close (0: never)
	// WriteTimeout resets a stream whose response has waited this long
	// for the client to open its flow-control window (0: no limit).
	WriteTimeout time.Duration
}

// Handler serves one stream; it runs in its own goroutine. When it returns
// the stream is ended (cleanly if it wrote a response, else reset).
type Handler func(*Stream)

const (
	streamWindow = 1 << 20
	connWindow   = 16 << 20
)

// ErrClosed reports a connection that ended.
var ErrClosed = errors.New("h2server: connection closed")

// Conn is one client connection.
type Conn struct {
	cfg     Config
	handler Handler
	nc      net.Conn
	fr      *http2.Framer
	br      *bufio.Reader
	ctx     context.Context
	cancel  context.CancelCauseFunc

	wmu  sync.Mutex // guards bw, the framer's writes, henc, hbuf, name
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	name []byte

	mu              sync.Mutex
	cond            sync.Cond // send windows grew, or streams/connection ended
	streams         map[uint32]*Stream
	maxClientID     uint32
	active          uint32 // streams not yet closed
	sendWindow      int64
	initWindow      int64 // client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame        uint32
	recvAvail       int64
	credit          h2wire.Credit // consumed, not yet granted back
	unackedSettings int
	goingAway       bool
	idleTimer       *time.Timer
	linger          *time.Timer
	handlers        sync.WaitGroup
	closeOnce       sync.Once
}

// NewConn prepares the HTTP/2 connection nc (its client preface not yet
// read) for Serve.
func NewConn(nc net.Conn, cfg Config, h Handler) *Conn {
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 1000
	}
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = 1 << 20
	}
	c := &Conn{
		cfg: cfg, handler: h, nc: nc,
		bw:         bufio.NewWriterSize(nc, 16<<10),
		streams:    map[uint32]*Stream{},
		sendWindow: 65535, initWindow: 65535, maxFrame: 16384,
		recvAvail: connWindow,
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.cond.L = &c.mu
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = cfg.MaxHeaderListSize
	c.fr.SetMaxReadFrameSize(16 << 10) // RFC 9113 default; we advertise no other
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// Serve runs the connection until it ends; handlers still running are then
// canceled and waited for. Canceling ctx shuts it down gracefully.
func (c *Conn) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, c.Shutdown)
	defer stop()
	err := c.serve(c.br)
	c.close(err)
	c.handlers.Wait()
	return err
}

// Serve runs nc as an HTTP/2 connection until it ends (NewConn + Serve).
func Serve(ctx context.Context, nc net.Conn, cfg Config, h Handler) error {
	return NewConn(nc, cfg, h).Serve(ctx)
}

func (c *Conn) serve(br *bufio.Reader) error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(br, preface); err != nil {
		return err
	}
	if string(preface) != http2.ClientPreface {
		return errors.New("h2server: bad client preface")
	}
	c.mu.Lock()
	c.unackedSettings++
	c.mu.Unlock()
	if err := c.writeNow(func() error {
		err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxConcurrentStreams},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
			http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1},
		)
		if err == nil {
			err = c.fr.WriteWindowUpdate(0, connWindow-65535)
		}
		return err
	}); err != nil {
		return err
	}
	c.armIdle()
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.resetStream(se.StreamID, se.Code, fmt.Errorf("h2server: %w", se))
				continue
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce))
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize)
			}
			return err
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.goAway(http2.ErrCodeProtocol)
				return errors.New("h2server: first frame is not SETTINGS")
			}
			first = false
		}
		if err := c.process(f); err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code, err)
				continue
			}
			var ce http2.ConnectionError
			code := http2.ErrCodeProtocol
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			c.goAway(code)
			return err
		}
	}
}

// lingerLocked closes the connection a moment after its graceful GOAWAY
// once no stream is left. Meanwhile frames are still read (PINGs answered),
// so the client's last frames are not met by a TCP reset.
func (c *Conn) lingerLocked() {
	if c.linger == nil {
		c.linger = time.AfterFunc(lingerTime, func() { c.close(ErrClosed) })
	}
}

const lingerTime = time.Second

func (c *Conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			return c.writeNow(func() error { return c.fr.WritePing(true, f.Data) })
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.GoAwayFrame:
		c.Shutdown()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored (RFC 9113 §4.1)
}

// writeNow runs fn under the write lock and flushes.
func (c *Conn) writeNow(fn func() error) error {
	c.wmu.Lock()
	err := fn()
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// isIdleLocked: a client stream ID never used yet.
func (c *Conn) isIdleLocked(id uint32) bool { return id > c.maxClientID }

func (c *Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		defer c.mu.Unlock()
		if s.reqEnded {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		}
		// Trailers: they end the stream and carry no pseudo-fields.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		s.trailers = h2wire.ToHeaders(f.RegularFields())
		return s.endRequestLocked()
	}
	if !c.isIdleLocked(id) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	c.maxClientID = id
	if c.goingAway {
		c.mu.Unlock()
		return nil // past our GOAWAY: ignored, the client retries elsewhere
	}
	if c.active >= c.cfg.MaxConcurrentStreams {
		code := http2.ErrCodeProtocol
		if c.unackedSettings > 0 {
			code = http2.ErrCodeRefusedStream // it may not have seen our limit yet
		}
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: code}
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	s, err := newStream(c, id, f)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.streams[id] = s
	c.active++
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.mu.Unlock()
	c.handlers.Add(1)
	go s.run()
	return nil
}

func (c *Conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	size := int64(f.Header().Length)
	data := f.Data()
	c.mu.Lock()
	if c.isIdleLocked(id) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.recvAvail -= size
	if c.recvAvail < 0 {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := c.streams[id]
	if s == nil || s.reqEnded || s.err != nil {
		grant := c.grantLocked(size)
		c.mu.Unlock()
		c.sendWindowUpdate(0, grant)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	s.recvWindow -= size
	if s.recvWindow < 0 {
		grant := c.grantLocked(size)
		c.mu.Unlock()
		c.sendWindowUpdate(0, grant)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	s.bodyBytes += int64(len(data))
	if s.ContentLength >= 0 && s.bodyBytes > s.ContentLength {
		grant := c.grantLocked(size)
		c.mu.Unlock()
		c.sendWindowUpdate(0, grant)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	pad := size - int64(len(data)) // padding is consumed on arrival
	s.recvWindow += pad
	grant := c.grantLocked(pad)
	s.rbuf.Append(data)
	var err error
	if f.StreamEnded() {
		err = s.endRequestLocked()
	}
	s.notifyLocked()
	c.mu.Unlock()
	c.sendWindowUpdate(0, grant)
	return err
}

func (c *Conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	if c.isIdleLocked(f.StreamID) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	var grant int64
	if s := c.streams[f.StreamID]; s != nil {
		s.failLocked(http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		c.forgetLocked(s)
		grant = c.discardLocked(s)
	}
	c.mu.Unlock()
	c.sendWindowUpdate(0, grant)
	return nil
}

func (c *Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		if c.unackedSettings > 0 {
			c.unackedSettings--
		}
		c.mu.Unlock()
		return nil
	}
	// The ACK is written under the same write lock that applies the new
	// windows, so no DATA they allow can overtake it (clients, h2spec
	// among them, expect the ACK first).
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - c.initWindow
			c.initWindow = int64(st.Val)
			if !h2wire.ShiftWindows(c.streams, func(s *Stream) *int64 { return &s.sendWindow }, delta) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		case http2.SettingMaxFrameSize:
			c.maxFrame = st.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(st.Val)
		}
		return nil
	})
	c.cond.Broadcast()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	err = c.fr.WriteSettingsAck()
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		c.close(err)
	}
	return err
}

func (c *Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if !h2wire.AddWindow(&c.sendWindow, inc) {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else {
		if c.isIdleLocked(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if s := c.streams[f.StreamID]; s != nil && !h2wire.AddWindow(&s.sendWindow, inc) {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
		}
	}
	c.cond.Broadcast()
	return nil
}

// resetStream ends a stream for a protocol error and tells the client.
func (c *Conn) resetStream(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	var grant int64
	if s := c.streams[id]; s != nil {
		s.failLocked(err)
		c.forgetLocked(s)
		grant = c.discardLocked(s)
	}
	c.mu.Unlock()
	_ = c.writeNow(func() error {
		if err := h2wire.WriteGrants(c.fr, grant, 0, 0); err != nil {
			return err
		}
		return c.fr.WriteRSTStream(id, code)
	})
}

// discardLocked drops a stream's unread body and returns the connection
// window it held (what to grant now, see grantLocked): a body nobody will
// read must not shrink the window of every other stream for good.
func (c *Conn) discardLocked(s *Stream) int64 {
	return c.grantLocked(int64(s.rbuf.Discard()))
}

// forgetLocked drops a stream that is closed both ways or reset.
func (c *Conn) forgetLocked(s *Stream) {
	if s.forgotten {
		return
	}
	s.forgotten = true
	delete(c.streams, s.id)
	c.active--
	c.cond.Broadcast()
	if c.active == 0 {
		c.armIdleLocked()
		if c.goingAway {
			c.lingerLocked()
		}
	}
}

func (c *Conn) armIdle() {
	c.mu.Lock()
	c.armIdleLocked()
	c.mu.Unlock()
}

func (c *Conn) armIdleLocked() {
	if c.cfg.IdleTimeout <= 0 {
		return
	}
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(c.cfg.IdleTimeout, c.Shutdown)
		return
	}
	c.idleTimer.Reset(c.cfg.IdleTimeout)
}

// grantLocked returns consumed bytes to the connection window and says
// how much to announce (0: not yet worth a WINDOW_UPDATE).
func (c *Conn) grantLocked(n int64) int64 {
	n = c.credit.Consume(n, connWindow/4)
	c.recvAvail += n
	return n
}

func (c *Conn) sendWindowUpdate(id uint32, n int64) {
	if n > 0 {
		_ = c.writeNow(func() error { return c.fr.WriteWindowUpdate(id, uint32(n)) })
	}
}

// goAway tells the client the connection is ending with code.
func (c *Conn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	c.goingAway = true
	last := c.maxClientID
	c.mu.Unlock()
	_ = c.writeNow(func() error { return c.fr.WriteGoAway(last, code, nil) })
}

// Shutdown sends GOAWAY: streams in flight finish, new ones are refused,
// and the connection closes when the last one ends.
func (c *Conn) Shutdown() {
	c.mu.Lock()
	if c.goingAway {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.goAway(http2.ErrCodeNo)
	c.mu.Lock()
	if c.active == 0 {
		c.lingerLocked()
	}
	c.mu.Unlock()
}

// close ends the connection and every stream on it.
func (c *Conn) close(err error) {
	c.closeOnce.Do(func() {
		if err == nil {
			err = ErrClosed
		}
		c.mu.Lock()
		c.goingAway = true
		for _, s := range c.streams {
			s.failLocked(fmt.Errorf("h2server: connection closed: %w", err))
		}
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		if c.linger != nil {
			c.linger.Stop()
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		c.cancel(err)
		_ = c.nc.Close()
	})
}

// newStream validates a request head (RFC 9113 §8.3.1, §8.2.2); a
// malformed one is a stream error.
func newStream(c *Conn, id uint32, f *http2.MetaHeadersFrame) (*Stream, error) {
	bad := http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	s := &Stream{
		c: c, id: id,
		Method: f.PseudoValue("method"), Scheme: f.PseudoValue("scheme"),
		Authority: f.PseudoValue("authority"), Path: f.PseudoValue("path"),
		Protocol:      f.PseudoValue("protocol"),
		ContentLength: -1,
		ready:         make(chan struct{}, 1),
		sendWindow:    c.initWindow,
		recvWindow:    streamWindow,
	}
	if s.Method == "CONNECT" {
		if s.Protocol == "" && (s.Path != "" || s.Scheme != "" || s.Authority == "") {
			return nil, bad
		}
	} else if s.Method == "" || s.Path == "" || s.Protocol != "" || (s.Scheme != "http" && s.Scheme != "https") {
		return nil, bad
	}
	if f.Truncated {
		s.TooLarge = true
	}
	for _, hf := range f.RegularFields() {
		if h2wire.ConnectionSpecific(hf.Name) {
			return nil, bad
		}
		switch hf.Name {
		case "te":
			if hf.Value != "trailers" {
				return nil, bad
			}
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || (s.ContentLength >= 0 && n != s.ContentLength) {
				return nil, bad
			}
			s.ContentLength = n
		}
	}
	s.Header = h2wire.ToHeaders(f.RegularFields())
	if s.Authority == "" {
		if h, ok := s.Header.Get("host"); ok {
			s.Authority = string(h)
		}
	}
	if f.StreamEnded() {
		if s.ContentLength > 0 {
			return nil, bad
		}
		s.reqEnded = true
		s.ContentLength = 0
	}
	s.ctx, s.cancel = context.WithCancelCause(c.ctx)
	return s, nil
}
