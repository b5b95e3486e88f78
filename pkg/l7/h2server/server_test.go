package h2server

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/edge-agent/edge-agent/internal/h2spectest"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// serveLoopback accepts loopback connections and serves each with h.
func serveLoopback(t *testing.T, cfg Config, h Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = Serve(ctx, nc, cfg, h) }()
		}
	}()
	return ln.Addr().String()
}

func echoLength(s *Stream) {
	n, err := io.Copy(io.Discard, s)
	if err != nil {
		s.Reset(0x8)
		return
	}
	body := fmt.Sprintf("read %d bytes of %s %s", n, s.Method, s.Path)
	_ = s.WriteHead(200, message.Headers{{Name: []byte("Content-Type"), Value: []byte("text/plain")}}, false)
	_, _ = s.Write([]byte(body))
	_ = s.Finish(nil)
}

func TestH2Spec(t *testing.T) {
	h2spectest.Path(t)
	addr := serveLoopback(t, Config{MaxConcurrentStreams: 100}, echoLength)
	host, port, _ := net.SplitHostPort(addr)
	h2spectest.Run(t, "h2c", host, port)
}
