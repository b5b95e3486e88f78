package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/h2client"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// roundTripH2C sends req over cleartext HTTP/2 on the cluster's pool; the
// timeout covers the exchange until response headers.
func (x *Exchange) roundTripH2C(req *OutRequest) error {
	if len(req.Target) == 0 || (req.Target[0] != '/' && string(req.Target) != "*") {
		return &Error{Kind: ProtocolError, Err: fmt.Errorf("request target %q is not origin-form", req.Target)}
	}
	parent := req.Ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	timer := time.AfterFunc(req.Timeout, func() { cancel(errHeadTimeout) })
	hreq := &x.h2req
	*hreq = h2client.Request{
		Method: req.Method, Scheme: schemeHTTP, Authority: req.Host, Path: req.Target,
		Header: req.Headers, ContentLength: req.ContentLength, TETrailers: req.TETrailers,
	}
	if len(hreq.Authority) == 0 {
		hreq.Authority = []byte(x.ep.Address)
	}
	x.bodyErr = nil
	if req.ContentLength != 0 && req.Body != nil {
		// The client streams the body from its own goroutine, possibly
		// after RoundTrip returns, and closes it when done. Finish and
		// WaitBody wait for that close, as for the HTTP/1.1 writer, so the
		// client connection's reader is never read by two goroutines.
		done := make(chan error, 1)
		x.bodyErr = done
		hreq.Body = &closeNotifier{r: req.Body, done: done}
	}
	s, err := x.cluster.h2.RoundTrip(ctx, x.ep.Address, hreq)
	timer.Stop()
	if err != nil {
		cancel(nil)
		if errors.Is(context.Cause(ctx), errHeadTimeout) {
			return &Error{Kind: Timeout, Err: err}
		}
		if parent.Err() != nil {
			// The client went away: nothing to hold against the endpoint.
			return &Error{Kind: Canceled, Err: err}
		}
		if ue, ok := AsError(err); ok {
			return ue
		}
		return &Error{Kind: Reset, Err: err}
	}
	x.h2s, x.h2cancel = s, func() { cancel(nil) }
	x.noBody, x.bodyEOF, x.untilEOF = false, false, false
	// The body runs until the route's deadline, and stalls no longer than
	// its idle timeout (each Read moves the timer).
	x.deadline, x.idle = req.Deadline, req.IdleTimeout
	x.idleReads = x.idle > 0 && (x.deadline.IsZero() || time.Until(x.deadline) > x.idle)
	switch {
	case x.idleReads:
		x.h2timer = time.AfterFunc(time.Until(x.nextReadDeadline()), func() { cancel(errBodyTimeout) })
	case !x.deadline.IsZero():
		x.h2timer = time.AfterFunc(time.Until(x.deadline), func() { cancel(errBodyTimeout) })
	}
	r := &x.Response
	r.Status, r.ContentLength, r.Body = s.Status, s.ContentLength, x
	r.Headers = r.Headers[:0]
	for _, h := range s.Header {
		// Framing is the front-end's to write from ContentLength: copying
		// the upstream's would duplicate or contradict it.
		if wire.IsHopByHop(h.Name) || message.EqualFold(h.Name, "content-length") {
			continue
		}
		r.Headers = append(r.Headers, h)
	}
	r.Trailers = s.Trailers
	x.body = s
	return nil
}

var schemeHTTP = []byte("http")

var (
	errHeadTimeout = errors.New("timed out waiting for response headers")
	errBodyTimeout = errors.New("response body timed out (route timeout or idle timeout)")
)

// closeNotifier reports on done once the HTTP/2 client has closed the body
// and no Read is in progress. The client may call Close from another
// goroutine while its writer is still blocked in Read; only when that Read
// returns is the client connection's reader free.
type closeNotifier struct {
	r       io.Reader
	done    chan error
	mu      sync.Mutex
	reading bool
	closed  bool
	sent    bool
}

func (c *closeNotifier) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, io.ErrClosedPipe
	}
	c.reading = true
	c.mu.Unlock()
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.reading = false
	c.signalLocked()
	c.mu.Unlock()
	return n, err
}

func (c *closeNotifier) Close() error {
	c.mu.Lock()
	c.closed = true
	c.signalLocked()
	c.mu.Unlock()
	return nil
}

func (c *closeNotifier) signalLocked() {
	if c.closed && !c.reading && !c.sent {
		c.sent = true
		c.done <- nil
	}
}
