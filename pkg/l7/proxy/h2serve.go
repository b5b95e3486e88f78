package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	// WebSockets over HTTP/2 (RFC 8441); see the package comment.
	_ "github.com/edge-agent/edge-agent/internal/xconnect"
	"github.com/edge-agent/edge-agent/pkg/l7/h2guard"
)

// h2server serves HTTP/2 with net/http's built-in implementation on
// connections the proxy has already accepted and classified (TLS with ALPN
// h2, or the h2c preface). Connections arrive through a channel listener;
// each serveConn call blocks until net/http is done with its connection, so
// connection tracking and drain work as for HTTP/1.1.
type h2server struct {
	srv   *http.Server
	ln    *chanListener
	conns sync.Map // net.Conn → *h2conn
}

type h2conn struct {
	ln   *listener
	done chan struct{}
	once sync.Once
}

type listenerKey struct{}

// tlsStateKey holds a connection's *tls.ConnectionState in its context.
type tlsStateKey struct{}

func newH2Server(log *slog.Logger, handler http.Handler) *h2server {
	h := &h2server{ln: &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}}
	var protos http.Protocols
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true) // h2c prior knowledge: our sniffer saw the preface
	h.srv = &http.Server{
		Handler:   handler,
		Protocols: &protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000,
			// RFC 9113's default; larger frames let one stream hog the
			// connection's writes, and h2spec expects the default.
			MaxReadFrameSize: 16 << 10,
		},
		IdleTimeout: 60 * time.Second,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if v, ok := h.conns.Load(c); ok {
				ctx = context.WithValue(ctx, listenerKey{}, v.(*h2conn).ln)
			}
			// net/http sees the guard, not the *tls.Conn under it, so it
			// sets no Request.TLS: the handler takes the state from here.
			if g, ok := c.(*guardedConn); ok {
				if tc, ok := g.Conn.(*tls.Conn); ok {
					cs := tc.ConnectionState()
					ctx = context.WithValue(ctx, tlsStateKey{}, &cs)
				}
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				if v, ok := h.conns.LoadAndDelete(c); ok {
					hc := v.(*h2conn)
					hc.once.Do(func() { close(hc.done) })
				}
			}
		},
	}
	go func() { _ = h.srv.Serve(h.ln) }()
	return h
}

// serveConn hands nc to net/http and waits until the connection is closed.
// The client's frames pass through h2guard first, for the RFC 9113 rules
// net/http does not enforce; each write must make progress within
// writeTimeout, as on HTTP/1.1 (a client that stops reading the socket is
// cut, with all its streams).
func (h *h2server) serveConn(nc net.Conn, ln *listener, writeTimeout time.Duration) {
	nc = &guardedConn{Conn: nc, r: h2guard.NewReader(nc), w: deadlineWriter{nc: nc, timeout: writeTimeout}}
	hc := &h2conn{ln: ln, done: make(chan struct{})}
	h.conns.Store(nc, hc)
	select {
	case h.ln.ch <- nc:
		<-hc.done
	case <-h.ln.closed:
		h.conns.Delete(nc)
	}
}

// shutdown sends GOAWAY on every connection and waits for streams in flight.
func (h *h2server) shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// guardedConn reads through an h2guard.Reader and writes under a write
// timeout. net/http writes a connection from one goroutine at a time.
type guardedConn struct {
	net.Conn
	r *h2guard.Reader
	w deadlineWriter
}

func (g *guardedConn) Read(p []byte) (int, error)  { return g.r.Read(p) }
func (g *guardedConn) Write(p []byte) (int, error) { return g.w.Write(p) }

// chanListener is a net.Listener fed by the proxy's own accept loops.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
