package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
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
				return context.WithValue(ctx, listenerKey{}, v.(*h2conn).ln)
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
func (h *h2server) serveConn(nc net.Conn, ln *listener) {
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
