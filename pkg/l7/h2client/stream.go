package h2client

import (
	"context"
	"errors"
	"io"
	"sync"

	"golang.org/x/net/http2"

	"github.com/edge-agent/edge-agent/pkg/l7/h2wire"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// Request is a request head and body as the proxy forwards it.
type Request struct {
	Method, Scheme, Authority, Path []byte
	// Header holds the regular fields; names are lower-cased on the wire
	// and connection-specific ones (RFC 9113 §8.2.2) are dropped.
	Header message.Headers
	// ContentLength, when positive, is sent as content-length.
	ContentLength int64
	// TETrailers sends "te: trailers" (gRPC servers require it).
	TETrailers bool
	// Body is streamed from its own goroutine (nil: no body). If it is an
	// io.Closer it is closed once the stream no longer needs it; a Read in
	// progress at that moment is not interrupted.
	Body io.Reader
}

// Stream is one request's response: its head (set before RoundTrip
// returns), then its body and trailers.
type Stream struct {
	Status        int
	Header        message.Headers
	ContentLength int64 // -1 when the server sent none

	c     *Conn
	id    uint32
	ctx   context.Context
	headc chan struct{} // closed when the head arrived or the stream failed
	ready chan struct{} // a body reader's wake-up: data, the end, or an error

	// Guarded by c.mu.
	gotHead    bool
	headErr    error
	rbuf       h2wire.RecvBuffer
	trailers   message.Headers
	respEnded  bool // END_STREAM received
	reqDone    bool // END_STREAM sent
	forgotten  bool // no longer in c.streams
	closed     bool // Close called
	err        error
	sendWindow int64
	recvWindow int64
	credit     h2wire.Credit
	body       io.Reader
	bodyOnce   sync.Once
}

func (s *Stream) notifyLocked() { h2wire.Wake(s.ready) }

// failLocked ends the stream with err for whoever waits on it.
func (s *Stream) failLocked(err error) {
	if s.err == nil {
		s.err = err
	}
	if !s.gotHead && s.headErr == nil {
		s.headErr = err
		close(s.headc)
	}
	s.notifyLocked()
	s.c.cond.Broadcast()
}

// Read returns response body bytes; io.EOF once the body ended cleanly.
// It gives the consumed bytes back to the server's send windows.
func (s *Stream) Read(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for {
		if s.rbuf.Len() > 0 {
			n := s.rbuf.Read(p)
			connGrant := c.grantLocked(int64(n))
			var streamGrant int64
			if !s.respEnded && !s.forgotten {
				streamGrant = s.credit.Consume(int64(n), streamWindow/4)
				s.recvWindow += streamGrant
			}
			c.mu.Unlock()
			if connGrant > 0 || streamGrant > 0 {
				c.write(func() error { return h2wire.WriteGrants(c.fr, connGrant, s.id, streamGrant) })
			}
			return n, nil
		}
		if s.err != nil {
			err := s.err
			c.mu.Unlock()
			return 0, err
		}
		if s.respEnded {
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		select {
		case <-s.ready:
		case <-s.ctx.Done():
			s.reset(http2.ErrCodeCancel, context.Cause(s.ctx))
		}
		c.mu.Lock()
	}
}

// Buffered reports how many body bytes a Read returns without waiting.
func (s *Stream) Buffered() int {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.rbuf.Len()
}

// Pending reports whether the next Read returns without waiting: bytes are
// buffered, or the body's end (or failure) has arrived.
func (s *Stream) Pending() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.rbuf.Len() > 0 || s.respEnded || s.err != nil
}

// Trailers returns the trailer fields; complete once Read returned io.EOF.
func (s *Stream) Trailers() message.Headers {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.trailers
}

// Close ends the stream. If either direction is still open the server gets
// RST_STREAM(CANCEL); unread body bytes go back to the connection window.
func (s *Stream) Close() {
	s.reset(http2.ErrCodeCancel, errStreamEnded)
}

func (s *Stream) reset(code http2.ErrCode, err error) {
	c := s.c
	c.mu.Lock()
	s.closed = true
	open := !s.forgotten
	s.failLocked(err)
	var closing bool
	if open {
		closing = c.forgetLocked(s)
	}
	grant := c.grantLocked(int64(s.rbuf.Discard()))
	c.mu.Unlock()
	if open || grant > 0 {
		c.write(func() error {
			if open {
				if err := c.fr.WriteRSTStream(s.id, code); err != nil {
					return err
				}
			}
			return h2wire.WriteGrants(c.fr, grant, 0, 0)
		})
	}
	s.closeBody()
	if closing {
		c.close(errIdle)
	}
}

func (s *Stream) closeBody() {
	s.bodyOnce.Do(func() {
		if cl, ok := s.body.(io.Closer); ok {
			_ = cl.Close()
		}
	})
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// writeBody streams the request body as DATA frames within the server's
// flow-control windows, flushing after each read (the next may block).
func (s *Stream) writeBody(body io.Reader) {
	defer s.closeBody()
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	for {
		n, err := body.Read(*bp)
		if n > 0 {
			if werr := s.writeData((*bp)[:n], false); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = s.writeData(nil, true)
			return
		}
		if err != nil {
			// The client's body failed: the upstream must not take the
			// truncated request as whole.
			s.reset(http2.ErrCodeCancel, err)
			return
		}
	}
}

func (s *Stream) writeData(p []byte, end bool) error {
	c := s.c
	for {
		c.mu.Lock()
		for len(p) > 0 && s.err == nil && (s.sendWindow <= 0 || c.sendWindow <= 0) {
			c.cond.Wait()
		}
		if s.err != nil || s.forgotten {
			c.mu.Unlock()
			return errStreamEnded
		}
		n := min(int64(len(p)), s.sendWindow, c.sendWindow, int64(c.maxFrame))
		s.sendWindow -= n
		c.sendWindow -= n
		chunk := p[:n]
		p = p[n:]
		last := end && len(p) == 0
		if last {
			s.reqDone = true
		}
		var closing bool
		if last && s.respEnded {
			closing = c.forgetLocked(s)
		}
		c.mu.Unlock()
		c.wmu.Lock()
		err := c.fr.WriteData(s.id, last, chunk)
		if err == nil && len(p) == 0 {
			err = c.bw.Flush()
		}
		c.wmu.Unlock()
		if err != nil {
			c.close(err)
			return err
		}
		if closing {
			c.close(errIdle)
		}
		if len(p) == 0 {
			return nil
		}
	}
}
