package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/h2guard"
	"github.com/edge-agent/edge-agent/pkg/l7/h2server"
)

// h2conns serves HTTP/2 connections the proxy has already accepted and
// classified (TLS with ALPN h2, or the h2c preface) with pkg/l7/h2server.
// serveConn blocks until the connection ends, so connection tracking and
// drain work as for HTTP/1.1.
type h2conns struct {
	handler *h2handler
	mu      sync.Mutex
	conns   map[*h2server.Conn]struct{}
	closing bool
	idle    sync.Cond // signalled when a connection ends
}

func newH2Conns(handler *h2handler) *h2conns {
	h := &h2conns{handler: handler, conns: map[*h2server.Conn]struct{}{}}
	h.idle.L = &h.mu
	return h
}

// serveConn serves nc until it ends. The client's frames pass through
// h2guard first, for its abuse limits and the RFC 9113 rules it enforces;
// each write must make progress within writeTimeout, as on HTTP/1.1 (a
// client that stops reading the socket is cut, with all its streams).
func (h *h2conns) serveConn(nc net.Conn, ln *listener, writeTimeout time.Duration) {
	var tlsState *tls.ConnectionState
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		tlsState = &cs
	}
	remote := nc.RemoteAddr().String()
	gc := &guardedConn{Conn: nc, r: h2guard.NewReader(nc), w: deadlineWriter{nc: nc, timeout: writeTimeout}}
	conn := h2server.NewConn(gc, h2server.Config{MaxConcurrentStreams: 1000, IdleTimeout: 60 * time.Second, WriteTimeout: writeTimeout},
		func(s *h2server.Stream) { h.handler.serveStream(s, ln, tlsState, remote) })
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = nc.Close()
		return
	}
	h.conns[conn] = struct{}{}
	h.mu.Unlock()
	_ = conn.Serve(context.Background())
	h.mu.Lock()
	delete(h.conns, conn)
	h.idle.Broadcast()
	h.mu.Unlock()
}

// shutdown sends GOAWAY on every connection and waits for their streams in
// flight (or ctx).
func (h *h2conns) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for c := range h.conns {
		c.Shutdown()
	}
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		h.idle.Broadcast()
		h.mu.Unlock()
	})
	defer stop()
	for len(h.conns) > 0 && ctx.Err() == nil {
		h.idle.Wait()
	}
	h.mu.Unlock()
	return ctx.Err()
}

// guardedConn reads through an h2guard.Reader and writes under a write
// timeout. h2server writes a connection under one lock.
type guardedConn struct {
	net.Conn
	r *h2guard.Reader
	w deadlineWriter
}

func (g *guardedConn) Read(p []byte) (int, error)  { return g.r.Read(p) }
func (g *guardedConn) Write(p []byte) (int, error) { return g.w.Write(p) }
