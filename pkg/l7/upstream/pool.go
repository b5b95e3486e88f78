package upstream

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

const (
	connReadBuf  = 16 << 10
	connWriteBuf = 8 << 10
)

// Conn is one pooled HTTP/1.1 connection to an endpoint.
type Conn struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	ep       *Endpoint
	lastUsed time.Time
	reused   bool
}

// pool keeps idle connections to one endpoint, newest first: the hottest
// connections are reused and the rest age out.
type pool struct {
	mu     sync.Mutex
	idle   []*Conn
	closed bool
}

func (e *Endpoint) getConn(ctx context.Context) (*Conn, error) {
	now := time.Now()
	p := &e.pool
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.lastUsed) < e.cluster.idleTimeout {
			p.mu.Unlock()
			c.reused = true
			return c, nil
		}
		p.mu.Unlock()
		c.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return e.dial(ctx)
}

func (e *Endpoint) dial(ctx context.Context) (*Conn, error) {
	c := e.cluster
	d := net.Dialer{Timeout: c.connectTimeout, KeepAlive: 30 * time.Second}
	d.SetMultipathTCP(false)
	nc, err := d.DialContext(ctx, "tcp", e.Address)
	if err != nil {
		c.stats.connectErrors.Inc()
		return nil, &Error{Kind: ConnectFailure, Err: err}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.stats.connectOK.Inc()
	c.stats.open.Inc()
	return &Conn{
		nc: nc,
		br: bufio.NewReaderSize(nc, connReadBuf),
		bw: bufio.NewWriterSize(nc, connWriteBuf),
		ep: e,
	}, nil
}

// release returns c to its pool when it is reusable, and closes it otherwise.
func (c *Conn) release(reusable bool) {
	if reusable && c.br.Buffered() == 0 {
		e := c.ep
		c.lastUsed = time.Now()
		p := &e.pool
		p.mu.Lock()
		if !p.closed && len(p.idle) < e.cluster.maxIdle {
			p.idle = append(p.idle, c)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	c.close()
}

func (c *Conn) close() {
	_ = c.nc.Close()
	c.ep.cluster.stats.open.Dec()
}

// sweep closes connections idle longer than the cluster's idle timeout.
func (e *Endpoint) sweep(now time.Time) {
	p := &e.pool
	p.mu.Lock()
	var stale []*Conn
	keep := p.idle[:0]
	for _, c := range p.idle {
		if now.Sub(c.lastUsed) >= e.cluster.idleTimeout {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// closeIdle closes every idle connection and stops pooling new ones.
func (e *Endpoint) closeIdle() {
	p := &e.pool
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}
