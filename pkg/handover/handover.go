// Package handover lets a new agent process take over from the running
// one without refusing a connection. The new process first puts its own
// socket into the pinned SOCKMAP (from then on the kernel steers new
// connections to it), then asks the old process, over a Unix socket, to
// hand over: the old one releases what the two cannot share (the admin
// port, this socket's path), answers, and drains.
//
// The socket is created 0600 (its directory 0700 when missing): only the agent's own
// user can make a running agent drain.
package handover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

const (
	request = "edge-agent hand-over v1\n"
	reply   = "released\n"
	// readTimeout bounds how long either side waits for the other's line.
	readTimeout = 5 * time.Second
)

// Ask asks the agent serving path to hand over and waits until it has
// released the admin port and this path. It reports false, with no error,
// when no agent serves path.
func Ask(ctx context.Context, path string) (bool, error) {
	p, err := Connect(ctx, path)
	if err != nil || p == nil {
		return false, err
	}
	defer p.Close()
	if err := p.HandOver(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Peer is a connection to the running agent, made before this agent
// changes anything: whether a predecessor answers decides what it may do.
type Peer struct{ c net.Conn }

// Connect reaches the agent serving path. It returns nil, with no error,
// when none does (the first start, or a crashed predecessor's stale
// socket, which it removes).
func Connect(ctx context.Context, path string) (*Peer, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("remove stale handover socket: %w", err)
			}
			return nil, nil
		}
		return nil, fmt.Errorf("reach the running agent: %w", err)
	}
	return &Peer{c: c}, nil
}

// HandOver asks the peer to hand over and waits until it has released
// the admin port and its socket path.
func (p *Peer) HandOver(ctx context.Context) error {
	deadline := time.Now().Add(readTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = p.c.SetDeadline(deadline)
	if _, err := p.c.Write([]byte(request)); err != nil {
		return fmt.Errorf("ask the running agent to hand over: %w", err)
	}
	line, err := bufio.NewReader(p.c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("wait for the running agent to hand over: %w", err)
	}
	if line != reply {
		return fmt.Errorf("running agent answered %q, want %q", line, reply)
	}
	return nil
}

// Close drops the connection; an agent not asked yet keeps serving.
func (p *Peer) Close() error { return p.c.Close() }

// Server answers one hand-over request on a Unix socket.
type Server struct {
	ln  *net.UnixListener
	log *slog.Logger
}

// Listen creates the socket at path (its directory is created 0700).
func Listen(path string, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("handover socket directory: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("handover socket: %w", err)
	}
	return &Server{ln: ln, log: log}, nil
}

// Close stops listening and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

// Serve waits for a successor's request. It then calls release, which
// must free what the successor binds next (the admin port), closes and
// removes the socket, answers, and returns true. It returns false when
// ctx ends or the listener is closed first. Malformed requests are
// answered with nothing and ignored.
func (s *Server) Serve(ctx context.Context, release func()) bool {
	stop := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return false
		}
		_ = c.SetDeadline(time.Now().Add(readTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != request {
			s.log.Warn("ignoring a malformed handover request", "err", err)
			_ = c.Close()
			continue
		}
		release()
		// Closing removes the socket file, so the successor can listen at
		// the same path as soon as it reads the answer.
		_ = s.ln.Close()
		_, err = c.Write([]byte(reply))
		_ = c.Close()
		if err != nil {
			s.log.Warn("handover answer not delivered", "err", err)
		}
		return true
	}
}
