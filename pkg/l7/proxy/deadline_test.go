package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// keepAliveGet sends one GET on conn and reads its response.
func keepAliveGet(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(conn, "GET /ka HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// dialKeepAlive opens a client connection to the proxy.
func dialKeepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

// closedAfter waits for the proxy to close conn and says how long it took.
func closedAfter(t *testing.T, conn net.Conn, br *bufio.Reader) time.Duration {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(10 * time.Second))
	_, err := br.ReadByte()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v, want the proxy to close the connection", err)
	}
	return time.Since(start)
}

// The read deadline of a keep-alive connection moves lazily (not on every
// request); the limits still hold: the header timeout cuts a slow head on a
// connection that has served requests, and the idle timeout closes an idle
// connection but not one that keeps sending requests.
func TestKeepAliveDeadlines(t *testing.T) {
	up := newBackend(t, "up")
	const cfg = `
server: {readHeaderTimeout: %s, idleTimeout: %s}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`
	t.Run("slow head after requests", func(t *testing.T) {
		e := startProxy(t, fmt.Sprintf(cfg, "1s", "30s", up.addr()))
		conn, br := dialKeepAlive(t, e.addr)
		for range 5 {
			keepAliveGet(t, conn, br)
		}
		start := time.Now()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
		go func() {
			for range 20 {
				if _, err := conn.Write([]byte("a")); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		closedAfter(t, conn, br)
		if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
			t.Errorf("slow head cut after %v, want about readHeaderTimeout (1s), not idleTimeout (30s)", d)
		}
	})
	t.Run("idle close and busy keep", func(t *testing.T) {
		e := startProxy(t, fmt.Sprintf(cfg, "10s", "1s", up.addr()))
		conn, br := dialKeepAlive(t, e.addr)
		// 2.4 s of requests 400 ms apart: longer than idleTimeout in all,
		// so every wait must start a fresh idle timeout.
		for range 7 {
			keepAliveGet(t, conn, br)
			time.Sleep(400 * time.Millisecond)
		}
		keepAliveGet(t, conn, br)
		// Idle now: closed idleTimeout later, at most its slack (62.5 ms) late.
		if d := closedAfter(t, conn, br); d < 900*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("idle connection closed after %v, want about idleTimeout (1s)", d)
		}
	})
}
