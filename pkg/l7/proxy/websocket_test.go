package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// wsEcho is a coder/websocket server: it negotiates subprotocol echo.v1,
// echoes every message with its type, answers pings (the library does),
// and closes with code 4001 when asked with the text "close".
func wsEcho(t testing.TB) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo.v1"}})
		if err != nil {
			return
		}
		c.SetReadLimit(16 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText && string(msg) == "close" {
				_ = c.Close(4001, "bye")
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

const wsConfig = `server: {accessLog: false}
listeners:
  - {name: http, address: "127.0.0.1:%d"}
routes:
  - name: ws
    match: {path: {prefix: /ws}}
    timeout: 1s
    websocket: {idleTimeout: %s, maxLifetime: %s}
    backends: [{cluster: ws}]
  - name: other-%d
    match: {path: {prefix: /other}}
    backends: [{cluster: ws}]
clusters:
  - {name: ws, endpoints: [{address: %s}]}
`

func wsDial(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{"echo.v1"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || c.Subprotocol() != "echo.v1" {
		t.Fatalf("handshake: %d, subprotocol %q", resp.StatusCode, c.Subprotocol())
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsEchoOnce(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gt, got, err := c.Read(ctx)
	if err != nil || gt != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes: type %v, %d bytes, %v", len(msg), gt, len(got), err)
	}
}

// TestWebSocketThroughProxy: a coder/websocket client and server through
// the proxy over HTTP/1.1: subprotocol negotiation, small, large (4 MB) and
// fragmented messages, ping/pong, a close code from the server, and a
// tunnel that outlives the route's request timeout and 10 reloads.
func TestWebSocketThroughProxy(t *testing.T) {
	backend := wsEcho(t)
	port := freePort(t)
	e := startProxy(t, fmt.Sprintf(wsConfig, port, "1h", "0s", 0, backend))
	c := wsDial(t, e.addr)
	ctx := context.Background()

	wsEchoOnce(t, c, websocket.MessageText, []byte("hello"))
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	wsEchoOnce(t, c, websocket.MessageBinary, big)

	// One message in many frames: each Write on the writer is a frame.
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	var whole []byte
	for i := range 50 {
		part := []byte(fmt.Sprintf("part-%02d;", i))
		whole = append(whole, part...)
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageText || !bytes.Equal(got, whole) {
		t.Fatalf("fragmented message: %v %q", err, got)
	}

	// Longer than the route's 1s request timeout, and through 10 reloads.
	for gen := 2; gen <= 11; gen++ {
		cfg, err := config.Parse([]byte(fmt.Sprintf(wsConfig, port, "1h", "0s", gen, backend)))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Apply(&config.Snapshot{Config: cfg, Generation: uint64(gen)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		wsEchoOnce(t, c, websocket.MessageText, []byte(fmt.Sprintf("after reload %d", gen)))
	}

	// Ping needs a concurrent reader; from here on messages go to a channel.
	msgs := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, m, err := c.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			msgs <- m
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr:
		if websocket.CloseStatus(err) != 4001 {
			t.Fatalf("close: %v, want code 4001", err)
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Reason != "bye" {
			t.Errorf("close reason %q", ce.Reason)
		}
	case m := <-msgs:
		t.Fatalf("unexpected message %q", m)
	case <-time.After(5 * time.Second):
		t.Fatal("no close frame")
	}
	if v := metricValue(t, e, "edge_agent_websocket_connections_total", "ws"); v != 1 {
		t.Errorf("websocket_connections_total{route=ws} = %v, want 1", v)
	}
}

// The route's idle timeout closes a silent tunnel but not a busy one; the
// maximum lifetime closes even a busy one.
func TestWebSocketIdleTimeoutAndLifetime(t *testing.T) {
	backend := wsEcho(t)
	t.Run("idle", func(t *testing.T) {
		e := startProxy(t, fmt.Sprintf(wsConfig, freePort(t), "1s", "0s", 0, backend))
		busy, silent := wsDial(t, e.addr), wsDial(t, e.addr)
		for range 8 { // 2.4s of traffic, every 300ms
			wsEchoOnce(t, busy, websocket.MessageText, []byte("tick"))
			time.Sleep(300 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, _, err := silent.Read(ctx); err == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("silent tunnel still open after 2.4s with a 1s idle timeout: %v", err)
		}
		waitUntil(t, 2*time.Second, func() bool {
			return metricValue(t, e, "edge_agent_websocket_closed_by_proxy_total", "ws", "idle_timeout") == 1
		}, "closed_by_proxy{idle_timeout} is not 1")
		if v := metricValue(t, e, "edge_agent_websocket_connections", "ws"); v != 1 {
			t.Errorf("open websockets = %v, want 1 (the busy one)", v)
		}
	})
	t.Run("lifetime", func(t *testing.T) {
		e := startProxy(t, fmt.Sprintf(wsConfig, freePort(t), "1h", "1s", 0, backend))
		c := wsDial(t, e.addr)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			if err := c.Write(ctx, websocket.MessageText, []byte("tick")); err != nil {
				break
			}
			if _, _, err := c.Read(ctx); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if el := time.Since(start); el < 900*time.Millisecond || el > 3*time.Second {
			t.Errorf("busy tunnel ended after %v, want ~1s", el)
		}
		waitUntil(t, 2*time.Second, func() bool {
			return metricValue(t, e, "edge_agent_websocket_closed_by_proxy_total", "ws", "max_lifetime") == 1
		}, "closed_by_proxy{max_lifetime} is not 1")
	})
}

// metricValue sums the samples of name whose label values are exactly
// values (in any order: Prometheus sorts labels by name), counters and
// gauges alike.
func metricValue(t *testing.T, e *env, name string, values ...string) float64 {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(slices.Sorted(slices.Values(values)), "\x00")
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			slices.Sort(got)
			if strings.Join(got, "\x00") == want {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
