package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/deadline"
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
	// rd is the read deadline; only the exchange using the connection
	// moves it.
	rd deadline.Read
}

// pool keeps idle connections to one endpoint, newest first: the hottest
// connections are reused and the rest age out.
type pool struct {
	mu     sync.Mutex
	idle   []*Conn
	closed bool
}

func (e *Endpoint) getConn(ctx context.Context, c *Cluster, wait time.Duration) (*Conn, error) {
	var deadline time.Time // set when the first wait starts
	for {
		if conn := e.idleConn(); conn != nil {
			return conn, nil
		}
		again, err := c.acquireConn(ctx, wait, &deadline)
		if err != nil {
			return nil, err
		}
		if !again {
			return e.dialSlot(ctx)
		}
	}
}

// idleConn takes the newest usable idle connection, or nil.
func (e *Endpoint) idleConn() *Conn {
	now := time.Now()
	p := &e.pool
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if idle := now.Sub(c.lastUsed); idle < e.cluster.idleTimeout {
			p.mu.Unlock()
			// A connection idle for a while may have been closed by the
			// upstream (many close idle keep-alives after a few seconds):
			// check before sending, so a non-repeatable request does not
			// fail on it. Busy connections skip the check.
			if idle < probeAfter || c.alive() {
				c.reused = true
				return c
			}
			c.close()
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		c.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// dial opens a new connection, in a connection slot of the cluster's.
func (e *Endpoint) dial(ctx context.Context, cl *Cluster, wait time.Duration) (*Conn, error) {
	var deadline time.Time
	for {
		again, err := cl.acquireConn(ctx, wait, &deadline)
		if err != nil {
			return nil, err
		}
		if !again {
			return e.dialSlot(ctx)
		}
	}
}

// dialTCP opens a TCP connection to addr within the cluster's connect
// timeout; a failure is counted and reported as a ConnectFailure.
func (s *settings) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: s.connectTimeout, KeepAlive: 30 * time.Second}
	d.SetMultipathTCP(false)
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		s.stats.connectErrors.Inc()
		return nil, &Error{Kind: ConnectFailure, Err: err}
	}
	return nc, nil
}

// dialSlot dials holding a connection slot; a failed dial gives it back.
func (e *Endpoint) dialSlot(ctx context.Context) (*Conn, error) {
	conn, err := e.dialConn(ctx)
	if err != nil {
		e.cluster.state.connFreed(true)
	}
	return conn, err
}

func (e *Endpoint) dialConn(ctx context.Context) (*Conn, error) {
	c := e.cluster
	nc, err := c.dialTCP(ctx, e.Address)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if c.tls != nil {
		tc, err := handshake(ctx, nc, c.tls, c.connectTimeout)
		if err != nil {
			nc.Close()
			c.stats.connectErrors.Inc()
			return nil, &Error{Kind: ConnectFailure, Err: err}
		}
		nc = tc
	}
	c.stats.connectOK.Inc()
	c.stats.open.Inc()
	conn := &Conn{
		nc: nc,
		br: bufio.NewReaderSize(nc, connReadBuf),
		bw: bufio.NewWriterSize(nc, connWriteBuf),
		ep: e,
	}
	conn.rd.Reset(nc)
	return conn, nil
}

// probeAfter is the idle time after which a pooled connection is checked
// before reuse.
const probeAfter = time.Second

// alive reports whether the upstream has not closed (or written to) an idle
// connection: a non-blocking MSG_PEEK that finds nothing to read.
func (c *Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false // unsolicited bytes: the connection is out of step
	}
	if _, ok := c.nc.(*tls.Conn); ok {
		return c.tlsAlive()
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// A read deadline left from the last exchange would make the runtime
	// refuse the read before trying it.
	if c.rd.Set(time.Time{}) != nil {
		return false
	}
	alive := false
	var one [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait: this is a probe
	})
	return err == nil && alive
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
			e.cluster.state.connFreed(false)
			return
		}
		p.mu.Unlock()
	}
	c.close()
}

func (c *Conn) close() {
	_ = c.nc.Close()
	c.ep.cluster.stats.open.Dec()
	c.ep.cluster.state.connFreed(true)
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

// DialStream opens a connection for a byte stream the caller relays (a
// TCP listener's connection, a TLS passthrough): no TLS of the cluster's,
// counted as busy (least-request) until done is called.
func (e *Endpoint) DialStream(ctx context.Context) (nc net.Conn, done func(), err error) {
	c := e.cluster
	nc, err = c.dialTCP(ctx, e.Address)
	if err != nil {
		return nil, nil, err
	}
	c.stats.connectOK.Inc()
	c.stats.open.Inc()
	e.active.Add(1)
	var once sync.Once
	return nc, func() {
		once.Do(func() {
			e.active.Add(-1)
			c.stats.open.Dec()
		})
	}, nil
}
