package h2server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/h2wire"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// Stream is one request and its response.
type Stream struct {
	Method, Scheme, Authority, Path string
	Protocol                        string // RFC 8441 extended CONNECT
	Header                          message.Headers
	ContentLength                   int64 // -1 when not declared
	// TooLarge: the header list passed MAX_HEADER_LIST_SIZE and was cut;
	// the handler should answer 431.
	TooLarge bool

	c      *Conn
	id     uint32
	ctx    context.Context
	cancel context.CancelCauseFunc
	ready  chan struct{}

	// Guarded by c.mu.
	rbuf       h2wire.RecvBuffer
	trailers   message.Headers
	reqEnded   bool
	err        error
	bodyBytes  int64
	recvWindow int64
	credit     h2wire.Credit
	sendWindow int64
	forgotten  bool
	respEnded  bool

	readClosed bool

	// Owned by the handler's goroutine.
	wroteHead bool
	continued bool
}

// Context ends when the client resets the stream or the connection ends.
func (s *Stream) Context() context.Context { return s.ctx }

func (s *Stream) notifyLocked() { h2wire.Wake(s.ready) }

func (s *Stream) failLocked(err error) {
	if s.err == nil {
		s.err = err
		s.cancel(err)
	}
	s.notifyLocked()
}

// endRequestLocked: the client's END_STREAM arrived.
func (s *Stream) endRequestLocked() error {
	s.reqEnded = true
	s.notifyLocked()
	if s.ContentLength >= 0 && s.bodyBytes != s.ContentLength {
		return http2.StreamError{StreamID: s.id, Code: http2.ErrCodeProtocol}
	}
	if s.respEnded {
		s.c.forgetLocked(s)
	}
	return nil
}

func (s *Stream) run() {
	defer s.c.handlers.Done()
	done := false
	defer func() {
		if !done {
			if r := recover(); r != errAbort {
				slog.Error("h2server: handler panic", "stream", s.id, "panic", r)
			}
			s.Reset(http2.ErrCodeInternal)
		}
	}()
	s.c.handler(s)
	done = true
	if !s.wroteHead {
		_ = s.WriteHead(500, nil, true)
		_ = s.Flush()
	} else {
		s.c.mu.Lock()
		ended := s.respEnded
		s.c.mu.Unlock()
		if !ended {
			_ = s.Finish(nil)
		}
	}
	s.c.mu.Lock()
	unread := !s.reqEnded && s.err == nil
	grant := s.c.discardLocked(s) // the handler is done reading
	s.c.mu.Unlock()
	s.c.sendWindowUpdate(0, grant)
	if unread {
		// The response is complete: tell the client to stop sending the
		// body nobody reads (RFC 9113 §8.1).
		s.Reset(http2.ErrCodeNo)
	}
}

var errAbort = errors.New("h2server: handler aborted the stream")

// Abort resets the stream from inside its handler and unwinds it.
func (s *Stream) Abort() { panic(errAbort) }

// Read reads the request body; io.EOF at its clean end. Read bytes are
// granted back to the client's send windows.
func (s *Stream) Read(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for {
		if s.rbuf.Len() > 0 && !s.readClosed {
			n := s.rbuf.Read(p)
			connGrant := c.grantLocked(int64(n))
			var streamGrant int64
			if !s.reqEnded {
				streamGrant = s.credit.Consume(int64(n), streamWindow/4)
				s.recvWindow += streamGrant
			}
			c.mu.Unlock()
			if connGrant > 0 || streamGrant > 0 {
				_ = c.writeNow(func() error { return h2wire.WriteGrants(c.fr, connGrant, s.id, streamGrant) })
			}
			return n, nil
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		if s.reqEnded {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if s.readClosed {
			c.mu.Unlock()
			return 0, errReadClosed
		}
		c.mu.Unlock()
		<-s.ready
		c.mu.Lock()
	}
}

// Trailers are the request's trailers, complete once Read returned EOF.
func (s *Stream) Trailers() message.Headers {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.trailers
}

// Close stops reading the request body: Read fails from now on, one in
// progress included. The client is told to stop sending when the handler
// returns.
func (s *Stream) Close() error {
	s.c.mu.Lock()
	s.readClosed = true
	s.notifyLocked()
	s.c.mu.Unlock()
	return nil
}

var errReadClosed = errors.New("h2server: request body closed")

// Continue sends an interim 100 (Continue) response, once, before the
// final head (RFC 9110 §10.1.1).
func (s *Stream) Continue() error {
	if s.wroteHead || s.continued {
		return nil
	}
	s.continued = true
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := s.writeBlockLocked(false, func() {
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
	}); err != nil {
		return err
	}
	err := c.bw.Flush()
	if err != nil {
		c.close(err)
	}
	return err
}

// WriteHead queues the response head; end also ends the stream (no body)
// and flushes.
// Names are lower-cased, connection-specific fields dropped; a
// contentLength of -1 sends none.
func (s *Stream) WriteHead(status int, h message.Headers, end bool) error {
	if s.wroteHead {
		return errors.New("h2server: response head written twice")
	}
	s.wroteHead = true
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := s.writeBlockLocked(end, func() {
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
		c.encodeFields(h)
	}); err != nil || !end {
		return err
	}
	if err := c.bw.Flush(); err != nil { // the response is complete: send it
		c.close(err)
		return err
	}
	return nil
}

func (c *Conn) encodeFields(h message.Headers) {
	for _, f := range h {
		c.name = h2wire.AppendLower(c.name[:0], f.Name)
		if h2wire.ConnectionSpecific(string(c.name)) {
			continue
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: string(c.name), Value: string(f.Value)})
	}
}

// writeBlockLocked encodes a header block with encode and sends it as
// HEADERS + CONTINUATION (c.wmu held). A stream already reset gets
// nothing, and nothing is encoded for it: a block that was encoded is
// always sent, or the client's HPACK table would part from ours.
func (s *Stream) writeBlockLocked(end bool, encode func()) error {
	c := s.c
	c.mu.Lock()
	if s.err != nil {
		err := s.err
		c.mu.Unlock()
		return err
	}
	maxFrame := c.maxFrame
	if end {
		s.respEnded = true
		if s.reqEnded {
			c.forgetLocked(s)
		}
	}
	c.mu.Unlock()
	c.hbuf.Reset()
	encode()
	if err := h2wire.WriteHeaderBlock(c.fr, s.id, c.hbuf.Bytes(), end, maxFrame); err != nil {
		c.close(err)
		return err
	}
	return nil
}

// Write queues response body bytes as DATA within the client's windows;
// it waits while they are closed. Nothing is flushed.
func (s *Stream) Write(p []byte) (int, error) {
	c := s.c
	written := 0
	for len(p) > 0 {
		c.mu.Lock()
		if s.err == nil && (s.sendWindow <= 0 || c.sendWindow <= 0) {
			if err := s.awaitWindowLocked(); err != nil {
				c.mu.Unlock()
				if errors.Is(err, errWindowStalled) {
					s.Reset(http2.ErrCodeFlowControl)
				}
				return written, err
			}
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return written, err
		}
		n := min(int64(len(p)), s.sendWindow, c.sendWindow, int64(c.maxFrame))
		s.sendWindow -= n
		c.sendWindow -= n
		c.mu.Unlock()
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, false, p[:n])
		c.wmu.Unlock()
		if err != nil {
			c.close(err)
			return written, err
		}
		written += int(n)
		p = p[n:]
	}
	return written, nil
}

var errWindowStalled = errors.New("h2server: the client kept its flow-control window closed past the write timeout")

// awaitWindowLocked waits (c.mu held) until the stream and the connection
// may send again, the stream ends, or Config.WriteTimeout passes with the
// window still closed: a client that never grants window would otherwise
// hold the handler, and the upstream exchange behind it, for good.
func (s *Stream) awaitWindowLocked() error {
	c := s.c
	var stalled bool
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for s.err == nil && (s.sendWindow <= 0 || c.sendWindow <= 0) {
		if stalled {
			return errWindowStalled
		}
		c.mu.Unlock()
		// Whatever is queued must reach the client for it to open its
		// window again.
		err := s.Flush()
		c.mu.Lock()
		if err != nil {
			return err
		}
		if timer == nil && c.cfg.WriteTimeout > 0 {
			timer = time.AfterFunc(c.cfg.WriteTimeout, func() {
				c.mu.Lock()
				stalled = true
				c.cond.Broadcast()
				c.mu.Unlock()
			})
		}
		if s.err == nil && (s.sendWindow <= 0 || c.sendWindow <= 0) && !stalled {
			c.cond.Wait()
		}
	}
	return nil
}

// Flush sends what is queued on the connection.
func (s *Stream) Flush() error {
	c := s.c
	c.wmu.Lock()
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// Finish ends the response (with trailers if any) and flushes. On a
// stream that was reset it returns the reset's error and sends nothing.
func (s *Stream) Finish(trailers message.Headers) error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(trailers) > 0 {
		if err := s.writeBlockLocked(true, func() { c.encodeFields(trailers) }); err != nil {
			return err
		}
	} else {
		c.mu.Lock()
		err := s.err
		if err == nil {
			s.respEnded = true
			if s.reqEnded {
				c.forgetLocked(s)
			}
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if err := c.fr.WriteData(s.id, true, nil); err != nil {
			c.close(err)
			return err
		}
	}
	if err := c.bw.Flush(); err != nil {
		c.close(err)
		return err
	}
	return nil
}

// Reset ends the stream abnormally with code.
func (s *Stream) Reset(code http2.ErrCode) {
	c := s.c
	c.mu.Lock()
	gone := s.forgotten
	s.failLocked(fmt.Errorf("h2server: stream reset by the server (%v)", code))
	c.forgetLocked(s)
	grant := c.discardLocked(s)
	c.mu.Unlock()
	if !gone || grant > 0 {
		_ = c.writeNow(func() error {
			if err := h2wire.WriteGrants(c.fr, grant, 0, 0); err != nil || gone {
				return err
			}
			return c.fr.WriteRSTStream(s.id, code)
		})
	}
}
