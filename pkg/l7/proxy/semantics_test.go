package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func simpleProxy(t *testing.T, upstream string) *env {
	t.Helper()
	return proxyWithTimeout(t, upstream, "2s")
}

// proxyWithTimeout serves one catch-all route to upstream (HTTP/1.1) with
// the given route timeout.
func proxyWithTimeout(t *testing.T, upstream, timeout string) *env {
	t.Helper()
	return startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: %s, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, timeout, upstream))
}

func TestHopByHopAndForwardedHeaders(t *testing.T) {
	var seen http.Header
	var host string
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		seen, host = r.Header.Clone(), r.Host
		w.Header().Set("Connection", "X-Up-Private")
		w.Header().Set("X-Up-Private", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "yes")
		w.Write([]byte("ok"))
	})
	e := simpleProxy(t, up)
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET /h HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Private\r\nX-Private: p\r\n"+
		"Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\n"+
		"X-Forwarded-Proto: https\r\nX-Request-Id: trace-123\r\nX-Normal: n\r\n\r\n")
	resp := readResponse(t, conn, "GET")
	for _, h := range []string{"Connection", "X-Private", "Keep-Alive", "Proxy-Connection", "Te"} {
		if v := seen.Get(h); v != "" {
			t.Errorf("hop-by-hop %s reached upstream: %q", h, v)
		}
	}
	if seen.Get("X-Normal") != "n" || host != "app.test" {
		t.Errorf("end-to-end header or Host lost: %v host %q", seen, host)
	}
	if got := seen.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the client appended", got)
	}
	if seen.Get("X-Forwarded-Proto") != "http" || seen.Get("X-Forwarded-Host") != "app.test" {
		t.Errorf("X-Forwarded-Proto/Host = %q/%q", seen.Get("X-Forwarded-Proto"), seen.Get("X-Forwarded-Host"))
	}
	if seen.Get("X-Request-Id") != "trace-123" || resp.Header.Get("X-Request-Id") != "trace-123" {
		t.Errorf("request id not kept: upstream %q response %q", seen.Get("X-Request-Id"), resp.Header.Get("X-Request-Id"))
	}
	if resp.Header.Get("X-Up-Private") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("response hop-by-hop filtering: %v", resp.Header)
	}
	// A missing or malformed id is replaced by a fresh 32-hex-digit one.
	fmt.Fprint(conn, "GET /h HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: bad id\r\n\r\n")
	readResponse(t, conn, "GET")
	if id := seen.Get("X-Request-Id"); len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("generated request id %q", id)
	}
}

// TestServerSentEventsStreamImmediately proves responses are not buffered:
// the client reads each event while the upstream is still holding the
// response open.
func TestServerSentEventsStreamImmediately(t *testing.T) {
	next := make(chan struct{})
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			_ = rc.Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	})
	e := simpleProxy(t, up)
	for _, c := range []*http.Client{http.DefaultClient, h2cClient()} {
		resp, err := c.Get(e.url("/events"))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for i := range 3 {
			done := make(chan string, 1)
			go func() {
				line, _ := br.ReadString('\n')
				br.ReadString('\n')
				done <- line
			}()
			select {
			case line := <-done:
				if line != fmt.Sprintf("data: %d\n", i) {
					t.Fatalf("%s: event %d = %q", resp.Proto, i, line)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("%s: event %d not delivered while upstream holds the stream open", resp.Proto, i)
			}
			next <- struct{}{}
		}
		resp.Body.Close()
	}
}

func TestLargeBodiesStreamBothWays(t *testing.T) {
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Len", fmt.Sprint(n))
		// Answer with 8 MiB, chunked (no Content-Length).
		chunk := bytes.Repeat([]byte("z"), 64<<10)
		for range 128 {
			w.Write(chunk)
		}
	})
	e := simpleProxy(t, up)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	sum := fmt.Sprintf("%x", sha256.Sum256(body))
	for _, tc := range []struct {
		name   string
		client *http.Client
		chunk  bool
	}{{"h1 content-length", http.DefaultClient, false}, {"h1 chunked", http.DefaultClient, true}, {"h2c", h2cClient(), false}} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(body)
			if tc.chunk {
				r = io.MultiReader(r) // hides the length: sent chunked
			}
			resp, err := tc.client.Do(mustReq(t, "PUT", e.url("/upload"), r))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != 8<<20 {
				t.Fatalf("response body: %d bytes, err %v", n, err)
			}
			if resp.Header.Get("X-Sum") != sum || resp.Header.Get("X-Len") != fmt.Sprint(len(body)) {
				t.Fatalf("upstream got len %s sum %s", resp.Header.Get("X-Len"), resp.Header.Get("X-Sum"))
			}
		})
	}
}

func TestUpstreamFailuresMapToStatusAndReason(t *testing.T) {
	slow := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
	})
	reset := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	garbage := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Write([]byte("NOT HTTP AT ALL\r\n\r\n"))
		conn.Close()
	})
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: slow, match: {path: {prefix: /slow}}, timeout: 300ms, backends: [{cluster: slow}]}
  - {name: reset, match: {path: {prefix: /reset}}, backends: [{cluster: reset}]}
  - {name: garbage, match: {path: {prefix: /garbage}}, backends: [{cluster: garbage}]}
  - {name: down, match: {path: {prefix: /down}}, backends: [{cluster: down}]}
  - {name: empty, match: {path: {prefix: /empty}}, backends: [{cluster: empty}]}
clusters:
  - {name: slow, endpoints: [{address: %s}]}
  - {name: reset, endpoints: [{address: %s}]}
  - {name: garbage, endpoints: [{address: %s}]}
  - {name: down, connectTimeout: 500ms, endpoints: [{address: %s}]}
  - {name: empty, endpoints: []}
`, slow, reset, garbage, closed))
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/slow", 504, "upstream_timeout"},
		{"/reset", 502, "upstream_reset"},
		{"/garbage", 502, "upstream_protocol_error"},
		{"/down", 503, "upstream_connect_failure"},
		{"/empty", 503, "no_healthy_upstream"},
	} {
		for _, c := range []*http.Client{http.DefaultClient, h2cClient()} {
			start := time.Now()
			resp, err := c.Get(e.url(tc.path))
			if err != nil {
				t.Fatalf("%s: %v", tc.path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Edge-Agent-Reason") != tc.reason {
				t.Errorf("%s (%s): %d %q, want %d %q", tc.path, resp.Proto, resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"), tc.status, tc.reason)
			}
			if tc.status == 504 && time.Since(start) > time.Second {
				t.Errorf("timeout took %v, want about the route's 300ms", time.Since(start))
			}
		}
	}
}

func TestLoadBalancingPolicies(t *testing.T) {
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	slowAddr := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("X-Backend", "slow")
	})
	fast := newBackend(t, "fast")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: rr, match: {path: {prefix: /rr}}, backends: [{cluster: rr}]}
  - {name: wrr, match: {path: {prefix: /wrr}}, backends: [{cluster: wrr}]}
  - {name: rnd, match: {path: {prefix: /rnd}}, backends: [{cluster: rnd}]}
  - {name: lr, match: {path: {prefix: /lr}}, backends: [{cluster: lr}]}
clusters:
  - {name: rr, lbPolicy: round_robin, endpoints: [{address: %[1]s}, {address: %[2]s}, {address: %[3]s}]}
  - {name: wrr, lbPolicy: round_robin, endpoints: [{address: %[1]s, weight: 3}, {address: %[2]s, weight: 1}]}
  - {name: rnd, lbPolicy: random, endpoints: [{address: %[1]s}, {address: %[2]s}, {address: %[3]s}]}
  - {name: lr, lbPolicy: least_request, endpoints: [{address: %[4]s}, {address: %[5]s}]}
`, bs[0].addr(), bs[1].addr(), bs[2].addr(), slowAddr, fast.addr()))
	count := func(path string, n int) map[string]int {
		m := map[string]int{}
		for range n {
			resp, err := http.Get(e.url(path))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			m[resp.Header.Get("X-Backend")]++
		}
		return m
	}
	if got := count("/rr", 300); got["a"] != 100 || got["b"] != 100 || got["c"] != 100 {
		t.Errorf("round robin: %v, want 100 each", got)
	}
	if got := count("/wrr", 400); got["a"] != 300 || got["b"] != 100 {
		t.Errorf("weighted round robin 3:1: %v", got)
	}
	if got := count("/rnd", 300); got["a"] < 50 || got["b"] < 50 || got["c"] < 50 {
		t.Errorf("random: %v, want each well used", got)
	}
	// Least request: with 10 concurrent clients, the slow endpoint holds its
	// requests and the fast one should take most of the traffic.
	results := make(chan string, 200)
	for range 10 {
		go func() {
			for range 20 {
				resp, err := http.Get(e.url("/lr"))
				if err != nil {
					results <- "error"
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				results <- resp.Header.Get("X-Backend")
			}
		}()
	}
	got := map[string]int{}
	for range 200 {
		got[<-results]++
	}
	if got["error"] > 0 || got["fast"] < 150 {
		t.Errorf("least request: %v, want the fast endpoint to take most", got)
	}
}

func TestMalformedRequestsGet400AndClose(t *testing.T) {
	b := newBackend(t, "b")
	e := simpleProxy(t, b.addr())
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"smuggling CL+TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"bad version", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
		{"gzip TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"huge head", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dial(t, e.addr)
			fmt.Fprint(conn, tc.raw)
			resp := readResponse(t, conn, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("got %d close=%v, want %d and close", resp.StatusCode, resp.Close, tc.status)
			}
		})
	}
	if b.hitCount() != 0 {
		t.Errorf("malformed requests reached the upstream %d times", b.hitCount())
	}
}

func TestExpectContinueHeadAndHTTP10(t *testing.T) {
	b := newBackend(t, "b")
	e := simpleProxy(t, b.addr())
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("want 100 Continue first, got %q", line)
	}
	br.ReadString('\n')
	fmt.Fprint(conn, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"body":5`)) {
		t.Fatalf("after 100-continue: %d %s", resp.StatusCode, body)
	}

	resp2, err := http.Head(e.url("/head"))
	if err != nil || resp2.StatusCode != 200 || resp2.ContentLength <= 0 {
		t.Fatalf("HEAD: %v %+v", err, resp2)
	}

	conn10 := dial(t, e.addr)
	fmt.Fprint(conn10, "GET /old HTTP/1.0\r\n\r\n")
	all, _ := io.ReadAll(conn10)
	if !bytes.HasPrefix(all, []byte("HTTP/1.1 200")) || !bytes.Contains(all, []byte(`"path":"/old"`)) {
		t.Fatalf("HTTP/1.0 request: %q", all)
	}
}

func TestWebSocketUpgradeTunnels(t *testing.T) {
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, _ := http.NewResponseController(w).Hijack()
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo raw frames until the client half-closes
	})
	e := simpleProxy(t, up)
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || resp.Header.Get("Sec-Websocket-Accept") != "x" {
		t.Fatalf("upgrade response: %v %+v", err, resp)
	}
	for _, msg := range []string{"ping-1", "ping-2"} {
		conn.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q %v", msg, buf, err)
		}
	}
	conn.(*net.TCPConn).CloseWrite()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("unexpected bytes after close: %q", rest)
	}
}

func newHandlerBackend(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readResponse reads one response from a raw connection; the reader keeps
// no state between calls, which is fine for non-pipelined tests.
func readResponse(t *testing.T, conn net.Conn, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReaderSize(&oneByteReader{conn}, 1), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// oneByteReader keeps http.ReadResponse from reading past one response.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }
