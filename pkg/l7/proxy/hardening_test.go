package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Regression tests for problems found in review: each names the failure it
// guards against.

func TestWebSocketOutlivesRouteTimeout(t *testing.T) {
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		conn, brw, _ := http.NewResponseController(w).Hijack()
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: ws, timeout: 300ms, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	time.Sleep(700 * time.Millisecond) // more than twice the route timeout
	conn.Write([]byte("still-there"))
	buf := make([]byte, 11)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "still-there" {
		t.Fatalf("tunnel after the route timeout: %q %v", buf, err)
	}
}

func TestNonWebSocketUpgradeIsNotTunnelled(t *testing.T) {
	var upgrade string
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		upgrade = r.Header.Get("Upgrade") + r.Header.Get("Connection")
		w.Write([]byte("plain"))
	})
	e := simpleProxy(t, up)
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	resp := readResponse(t, conn, "GET")
	if resp.StatusCode != 200 || upgrade != "" {
		t.Fatalf("h2c upgrade: status %d, upstream saw Upgrade/Connection %q", resp.StatusCode, upgrade)
	}
}

// A stray CRLF after a request (RFC 9112 §2.2 allows it) must not hold the
// response back.
func TestResponseNotHeldByBufferedBytes(t *testing.T) {
	b := newBackend(t, "b")
	e := simpleProxy(t, b.addr())
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\n")
	got := make(chan error, 1)
	go func() {
		_, err := http.ReadResponse(bufio.NewReader(conn), nil)
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("response not delivered while a stray CRLF sat in the buffer")
	}
}

func TestHTTP2RequestFramingIsTheProxys(t *testing.T) {
	// A raw upstream counts the framing and Host lines it receives.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	heads := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var got []string
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
			l := strings.ToLower(line)
			if strings.HasPrefix(l, "content-length:") || strings.HasPrefix(l, "host:") || strings.HasPrefix(l, "transfer-encoding:") {
				got = append(got, strings.TrimSpace(line))
			}
		}
		io.CopyN(io.Discard, br, 5)
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		heads <- got
	}()
	e := simpleProxy(t, ln.Addr().String())
	req := mustReq(t, "POST", e.url("/p"), strings.NewReader("hello"))
	req.Host = "public.example"
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := <-heads
	if resp.StatusCode != 200 || strings.Join(got, "|") != "Host: public.example|Content-Length: 5" {
		t.Fatalf("status %d; upstream framing lines %q, want exactly one Host and one Content-Length", resp.StatusCode, got)
	}
}

func TestH2CUpstreamLengthWrittenOnce(t *testing.T) {
	up := newH2CBackend(t, "h2c")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, protocol: h2c, endpoints: [{address: %s}]}]
`, up.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(conn)
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		if strings.HasPrefix(strings.ToLower(line), "content-length:") || strings.HasPrefix(strings.ToLower(line), "transfer-encoding:") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d framing headers in the response head, want exactly 1", n)
	}
}

// An HTTP/2 client that cancels a streaming response must release the
// upstream connection and the in-flight gauges.
func TestH2ClientCancelReleasesUpstream(t *testing.T) {
	up := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for {
			if _, err := fmt.Fprint(w, "data: tick\n\n"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	e := simpleProxy(t, up)
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		req := mustReq(t, "GET", e.url("/stream"), nil).WithContext(ctx)
		resp, err := h2cClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		bufio.NewReader(resp.Body).ReadString('\n')
		cancel()
		resp.Body.Close()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		active, open := gauge(t, e, "edge_agent_upstream_requests_active"), gauge(t, e, "edge_agent_upstream_connections")
		if active == 0 && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 cancelled streams: %v requests active, %v upstream connections open", active, open)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func gauge(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

var _ prometheus.Gatherer = (*prometheus.Registry)(nil)

func TestMalformedChunkedBodyIs400Fast(t *testing.T) {
	b := newBackend(t, "b")
	e := proxyWithTimeout(t, b.addr(), "5s")
	conn := dial(t, e.addr)
	start := time.Now()
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
	time.Sleep(50 * time.Millisecond)
	fmt.Fprint(conn, "lo\r\nZZ\r\n\r\n")
	resp := readResponse(t, conn, "POST")
	if resp.StatusCode != 400 || resp.Header.Get("Edge-Agent-Reason") != "bad_request_body" || !resp.Close {
		t.Fatalf("got %d %q close=%v, want 400 bad_request_body and close", resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"), resp.Close)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v: the proxy waited for the route timeout", d)
	}
}

func TestUploadLongerThanRouteTimeout(t *testing.T) {
	b := newBackend(t, "b")
	e := proxyWithTimeout(t, b.addr(), "300ms")
	pr, pw := io.Pipe()
	go func() {
		for range 10 {
			pw.Write([]byte(strings.Repeat("x", 1000)))
			time.Sleep(100 * time.Millisecond) // 1 s in all
		}
		pw.Close()
	}()
	resp, got := get(t, http.DefaultClient, mustReq(t, "PUT", e.url("/up"), pr))
	if resp.StatusCode != 200 || got.Body != 10000 {
		t.Fatalf("slow upload: %d, upstream got %d bytes", resp.StatusCode, got.Body)
	}
}

func TestLocalReplyWithUnreadBodySaysClose(t *testing.T) {
	b := newBackend(t, "b")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, hosts: [only.test], backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, b.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: other.test\r\nContent-Length: 100000\r\n\r\npartial")
	resp := readResponse(t, conn, "POST")
	if resp.StatusCode != 404 || !resp.Close {
		t.Fatalf("got %d close=%v, want 404 with Connection: close", resp.StatusCode, resp.Close)
	}
}

func TestHTTP10KeepAliveIsAcknowledged(t *testing.T) {
	b := newBackend(t, "b")
	e := simpleProxy(t, b.addr())
	conn := dial(t, e.addr)
	for i := range 2 {
		fmt.Fprint(conn, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp := readResponse(t, conn, "GET")
		if resp.StatusCode != 200 || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("request %d: %d Connection=%q", i, resp.StatusCode, resp.Header.Get("Connection"))
		}
	}
}

func TestDotSegmentsAreRemovedBeforeRouting(t *testing.T) {
	pub, adm := newBackend(t, "public"), newBackend(t, "admin")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: admin, match: {path: {prefix: /admin}}, backends: [{cluster: adm}]}
  - {name: public, match: {path: {prefix: /public}}, backends: [{cluster: pub}]}
clusters:
  - {name: pub, endpoints: [{address: %s}]}
  - {name: adm, endpoints: [{address: %s}]}
`, pub.addr(), adm.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "GET /public/../admin/x?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp := readResponse(t, conn, "GET"); resp.Header.Get("X-Backend") != "admin" {
		t.Fatalf("HTTP/1.1 /public/../admin went to %q", resp.Header.Get("X-Backend"))
	}
	req := mustReq(t, "GET", e.url("/public/x"), nil)
	req.URL.Opaque = "/public/../admin/y" // sent as :path verbatim
	resp, got := get(t, h2cClient(), req)
	if resp.Header.Get("X-Backend") != "admin" || got.Path != "/admin/y" {
		t.Fatalf("HTTP/2 /public/../admin went to %q as %q", resp.Header.Get("X-Backend"), got.Path)
	}
	if adm.hitCount() != 2 {
		t.Fatalf("admin backend hits %d", adm.hitCount())
	}
}

// rawUpstream serves each connection with h, for upstreams net/http will not play.
func rawUpstream(t *testing.T, h func(net.Conn)) string {
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
			go func() { defer c.Close(); h(c) }()
		}
	}()
	return ln.Addr().String()
}

// A client that stops halfway through its body must not hold the request
// (and two connections) forever: the route timeout still bounds it.
func TestStalledUploadTimesOut(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	e := proxyWithTimeout(t, up, "300ms")
	conn := dial(t, e.addr)
	start := time.Now()
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within 3s (route timeout 300ms): %v", err)
	}
	if resp.StatusCode != 504 || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("got %d after %v, want 504 after about 300ms", resp.StatusCode, time.Since(start))
	}
}

// An upstream that starts streaming its response before the upload ends:
// finishing the upload must not re-arm the route timeout on a streaming
// route's response.
func TestStreamNotCutWhenUploadEnds(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
		io.Copy(io.Discard, req.Body)
		for range 8 {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprint(c, "1\r\nb\r\n")
		}
		fmt.Fprint(c, "0\r\n\r\n")
	})
	e := proxyWithTimeout(t, up, "300ms, streaming: true")
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n"+strings.Repeat("x", 100000))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, strings.Repeat("y", 100000))
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "a"+strings.Repeat("b", 8) {
		t.Fatalf("stream cut: %q %v", b, err)
	}
}

// An h2c upstream that answers without reading the body: the transport
// closes the body while its writer may still be reading the client. Run
// under -race, with other connections reusing pooled connection state.
func TestH2CEarlyAnswerReleasesBodyReader(t *testing.T) {
	b := &backend{name: "h", conns: map[string]bool{}}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("early"))
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	b.Config.Protocols = &p
	b.Start()
	t.Cleanup(b.Close)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 2s, backends: [{cluster: c}]}]
clusters: [{name: c, protocol: h2c, endpoints: [{address: %s}]}]
`, b.addr()))
	for i := range 20 {
		conn := dial(t, e.addr)
		fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 70000))
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "early" {
			t.Fatalf("round %d: %d %q", i, resp.StatusCode, body)
		}
		c2 := dial(t, e.addr)
		fmt.Fprint(c2, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
		if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("round %d: other connection: %v", i, err)
		}
		conn.Close()
		c2.Close()
	}
}

// "Expect: 100-continue" is answered only when the request is proxied: a
// request that gets a 404 is never invited to send its body.
func TestNoContinueForLocalReplies(t *testing.T) {
	b := newBackend(t, "b")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, hosts: [only.test], backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, b.addr()))
	conn := dial(t, e.addr)
	fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: other.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "HTTP/1.1 404 Not Found\r\n" {
		t.Fatalf("first line %q (%v), want the 404 without a 100 Continue", line, err)
	}
}
