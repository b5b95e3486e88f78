package proxy_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A WebSocket tunnel outlives server.writeTimeout: the per-write deadline
// of responses does not follow the connection into the relay.
func TestWebSocketOutlivesWriteTimeout(t *testing.T) {
	backend := wsEcho(t)
	e := startProxy(t, fmt.Sprintf(`
server: {writeTimeout: 1s}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: ws, match: {path: {prefix: /ws}}, backends: [{cluster: ws}]}]
clusters: [{name: ws, endpoints: [{address: %s}]}]
`, backend))
	c := wsDial(t, e.addr)
	wsEchoOnce(t, c, websocket.MessageText, []byte("before"))
	time.Sleep(2500 * time.Millisecond)
	wsEchoOnce(t, c, websocket.MessageText, []byte("after the write timeout"))
	c.Close(websocket.StatusNormalClosure, "")
}

// Expect: 100-continue is answered once, also when a WAF reads the body
// before the proxy sends it on.
func TestContinueOnceWithWAF(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Core Rule Set")
	}
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, waf: {mode: detect}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("first line %q, want 100 Continue", line)
	}
	br.ReadString('\n')
	fmt.Fprint(conn, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the body: %v %v (a second 100 Continue?)", resp, err)
	}
}

// A streaming upload (chunked, the client waits for the answer) on a WAF
// route is refused with 408 after the inspection window, not held forever.
func TestWAFStreamingBodyIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Core Rule Set")
	}
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, waf: {mode: block}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 408 || resp.Header.Get("Edge-Agent-Reason") != "request_body_timeout" {
		t.Fatalf("got %v %v, want 408 request_body_timeout", resp, err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// Weighted clusters: an unhealthy heavy endpoint does not keep getting
// traffic because sampling keeps landing on it.
func TestWeightedChooseSkipsUnavailableHeavyEndpoint(t *testing.T) {
	heavy, light := newFlaky(t, "heavy"), newFlaky(t, "light")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, lbPolicy: random, healthCheck: {type: http, path: /healthz, interval: 100ms, timeout: 50ms, healthyThreshold: 1, unhealthyThreshold: 1},
  endpoints: [{address: %s, weight: 99}, {address: %s, weight: 1}]}]
`, heavy.addr, light.addr))
	heavy.healthy.Store(false)
	waitUntil(t, 5*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_endpoint_healthy", "c", heavy.addr) == 0
	}, "heavy never marked unhealthy")
	before := heavy.hits.Load()
	c := client()
	for range 200 {
		if code, who, _, _, _ := call(c, "GET", e.url("/"), nil, nil); code != 200 || who != "light" {
			t.Fatalf("%d from %q while heavy is unhealthy", code, who)
		}
	}
	if heavy.hits.Load() != before {
		t.Fatalf("the unhealthy endpoint got %d requests", heavy.hits.Load()-before)
	}
}

// A retriable answer is returned as it is when the backoff would not fit
// before the deadline, rather than a made-up timeout.
func TestRetryKeepsAnswerWhenNoTimeLeft(t *testing.T) {
	slow := newFlaky(t, "slow")
	slow.set(modeFail)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 300ms, backends: [{cluster: c}], retry: {attempts: 2, on: [5xx], backoffBase: 250ms, backoffMax: 250ms}}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, slow.addr))
	c := client()
	for range 5 {
		code, _, body, h, err := call(c, "GET", e.url("/"), nil, nil)
		if err != nil || (code != 503 && code != 504) {
			t.Fatalf("%d %q (%v)", code, body, err)
		}
		if code == 504 && h.Get("Edge-Agent-Attempts") == "1" {
			t.Fatalf("a 503 with no time left to retry became %d %s", code, h.Get("Edge-Agent-Reason"))
		}
	}
}
