package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tcpEcho upper-cases what it reads until the client half-closes, then
// writes "bye:<bytes read>" and closes: a half-close must reach it, and
// its answer after the half-close must reach the client.
func tcpEcho(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				n, _ := io.Copy(upperWriter{c}, c)
				fmt.Fprintf(c, "bye:%d\n", n)
			}()
		}
	}()
	return ln.Addr().String()
}

type upperWriter struct{ w io.Writer }

func (u upperWriter) Write(p []byte) (int, error) {
	return u.w.Write([]byte(strings.ToUpper(string(p))))
}

func TestTCPListener(t *testing.T) {
	a, b := tcpEcho(t, "a"), tcpEcho(t, "b")
	port := freePort(t)
	e := startProxy(t, fmt.Sprintf(`listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
  - name: db
    address: 127.0.0.1:%d
    protocol: tcp
    tcp: {cluster: db, idleTimeout: 1s, maxConnections: 3}
clusters:
  - {name: db, endpoints: [{address: %s}, {address: %s}]}
`, port, a, b))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dial := func() (*net.TCPConn, *bufio.Reader, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		who, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v", err)
		}
		return c.(*net.TCPConn), br, strings.TrimSpace(who)
	}

	// Round robin over both endpoints; echo; half-close both ways.
	seen := map[string]bool{}
	for range 4 {
		c, br, who := dial()
		seen[who] = true
		fmt.Fprintf(c, "hello\n")
		if line, _ := br.ReadString('\n'); line != "HELLO\n" {
			t.Fatalf("echo %q", line)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "bye:6\n" {
			t.Fatalf("after half-close: %q %v", rest, err)
		}
		c.Close()
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("endpoints reached: %v", seen)
	}

	// Limit: 3 open, the 4th is closed at once (once the first ones'
	// relays have wound down).
	waitUntil(t, 2*time.Second, func() bool { return metricValue(t, e, "edge_agent_tcp_connections", "db") == 0 }, "connections still open")
	var open []net.Conn
	for range 3 {
		c, _, _ := dial()
		open = append(open, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Errorf("4th connection got %d bytes, want it closed", n)
	}
	c.Close()
	if v := metricValue(t, e, "edge_agent_tcp_closed_by_proxy_total", "db", "max_connections"); v != 1 {
		t.Errorf("max_connections refusals = %v", v)
	}
	// Idle timeout: the open ones are closed after 1s of silence.
	for _, c := range open {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("idle connection not closed")
		}
		c.Close()
	}
	waitUntil(t, 2*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_tcp_closed_by_proxy_total", "db", "idle_timeout") == 3
	}, "idle_timeout closes are not 3")
	if v := metricValue(t, e, "edge_agent_tcp_connections_total", "db"); v != 7 {
		t.Errorf("connections_total = %v, want 7", v)
	}
}
