// Package h2client is a lean HTTP/2 client for proxying to cleartext
// (prior-knowledge) upstreams. Unlike net/http's Transport it takes the
// proxy's own header lists, runs a request in the caller's goroutine (only a
// request body gets a goroutine), multiplexes on as few connections as the
// upstream's stream limit allows, and reports whether the rest of a response
// is already buffered, so the proxy can pass HEADERS, DATA and trailers on
// in one write instead of flushing each.
package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// DialFunc opens a TCP connection to addr.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Options tune a Pool; zero values pick the defaults.
type Options struct {
	// IdleTimeout closes a connection that has had no stream this long
	// (0: never).
	IdleTimeout time.Duration
	// PingAfter sends a PING on a connection that has read nothing this
	// long; no answer within PingTimeout closes it (a dead peer or path).
	PingAfter, PingTimeout time.Duration
	// SettingsTimeout bounds the wait for the server's first SETTINGS.
	SettingsTimeout time.Duration
}

// Pool holds the connections to every address of one upstream cluster.
type Pool struct {
	dial DialFunc
	opts Options

	mu     sync.Mutex
	conns  map[string][]*Conn
	dials  map[string]*dialCall
	closed bool
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewPool returns a pool that opens connections with dial.
func NewPool(dial DialFunc, opts Options) *Pool {
	if opts.PingAfter == 0 {
		opts.PingAfter = 30 * time.Second
	}
	if opts.PingTimeout == 0 {
		opts.PingTimeout = 10 * time.Second
	}
	if opts.SettingsTimeout == 0 {
		opts.SettingsTimeout = 10 * time.Second
	}
	return &Pool{dial: dial, opts: opts, conns: map[string][]*Conn{}, dials: map[string]*dialCall{}}
}

// ErrPoolClosed is returned by RoundTrip after Close.
var ErrPoolClosed = errors.New("h2client: pool closed")

// RoundTrip sends req to addr and waits for the response head. The caller
// reads the Stream's body and must Close it. A stream the server refused
// before processing it (GOAWAY, REFUSED_STREAM) is sent again on another
// connection when its body has not been read yet.
func (p *Pool) RoundTrip(ctx context.Context, addr string, req *Request) (*Stream, error) {
	for attempt := 0; ; attempt++ {
		c, err := p.get(ctx, addr)
		if err == nil {
			var s *Stream
			s, err = c.roundTrip(ctx, req)
			if err == nil {
				return s, nil
			}
			if errors.Is(err, errRefused) && attempt < 3 && req.Body == nil {
				continue
			}
		}
		// Whatever became of the stream, its body is done with.
		if cl, ok := req.Body.(io.Closer); ok {
			_ = cl.Close()
		}
		return nil, err
	}
}

// get reserves a stream on a connection to addr, dialing one when every
// connection is at the server's concurrent-stream limit. One dial per
// address runs at a time; the callers that wait for it share its result.
func (p *Pool) get(ctx context.Context, addr string) (*Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		for _, c := range p.conns[addr] {
			if c.reserve() {
				p.mu.Unlock()
				return c, nil
			}
		}
		dc := p.dials[addr]
		if dc == nil {
			dc = &dialCall{done: make(chan struct{})}
			p.dials[addr] = dc
			go p.dialConn(addr, dc)
		}
		p.mu.Unlock()
		select {
		case <-dc.done:
			if dc.err != nil {
				return nil, dc.err
			}
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// dialConn runs detached from any one request's context, so a caller that
// gives up does not fail the connection others are waiting for.
func (p *Pool) dialConn(addr string, dc *dialCall) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.SettingsTimeout)
	defer cancel()
	c, err := p.connect(ctx, addr)
	p.mu.Lock()
	delete(p.dials, addr)
	switch {
	case err != nil:
		dc.err = err
	case p.closed:
		dc.err = ErrPoolClosed
		defer c.close(ErrPoolClosed)
	default:
		p.conns[addr] = append(p.conns[addr], c)
	}
	p.mu.Unlock()
	close(dc.done)
}

func (p *Pool) connect(ctx context.Context, addr string) (*Conn, error) {
	nc, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c, err := newConn(p, addr, nc)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2client: start connection to %s: %w", addr, err)
	}
	select {
	case <-c.settingsc:
		if c.maxStreamsNow() == 0 {
			// Every caller would dial again, forever.
			c.close(errIdle)
			return nil, fmt.Errorf("h2client: %s accepts no streams (MAX_CONCURRENT_STREAMS 0)", addr)
		}
		return c, nil
	case <-c.donec:
		return nil, fmt.Errorf("h2client: connection to %s: %w", addr, c.closeErr())
	case <-ctx.Done():
		c.close(ctx.Err())
		return nil, fmt.Errorf("h2client: waiting for %s's SETTINGS: %w", addr, ctx.Err())
	}
}

// remove forgets a connection that can take no more streams.
func (p *Pool) remove(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.conns[c.addr]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(p.conns, c.addr)
	} else {
		p.conns[c.addr] = cs
	}
}

// DrainAddr stops new streams to addr (an endpoint that left its cluster);
// its connections close as their last streams end.
func (p *Pool) DrainAddr(addr string) {
	p.mu.Lock()
	cs := append([]*Conn(nil), p.conns[addr]...)
	p.mu.Unlock()
	for _, c := range cs {
		c.drain()
	}
}

// Sweep closes connections idle past IdleTimeout and checks the liveness
// of the others; call it periodically.
func (p *Pool) Sweep(now time.Time) {
	for _, c := range p.snapshot(false) {
		c.sweep(now)
	}
}

// Close stops new requests and closes idle connections; connections with
// streams in flight close when their last stream ends.
func (p *Pool) Close() {
	for _, c := range p.snapshot(true) {
		c.drain()
	}
}

// snapshot lists the connections (closing the pool first if asked), so
// they are worked on without holding the pool's lock.
func (p *Pool) snapshot(closing bool) []*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = p.closed || closing
	var all []*Conn
	for _, cs := range p.conns {
		all = append(all, cs...)
	}
	return all
}

// Conns reports how many connections the pool holds (for tests and
// metrics).
func (p *Pool) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, cs := range p.conns {
		n += len(cs)
	}
	return n
}
