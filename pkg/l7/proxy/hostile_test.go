package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHostileRequests sends request smuggling variants, malformed and
// oversized heads, path tricks, a slowloris and HTTP/2 floods, each of
// which must get its rejection, while a well-behaved client keeps being
// served; afterwards no goroutine is left behind.
func TestHostileRequests(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
server: {readHeaderTimeout: 1s}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
- {name: admin, hosts: [app.test], match: {path: {prefix: /admin}}, ipRules: {allow: [10.0.0.0/8]}, backends: [{cluster: c}]}
- {name: app, hosts: [app.test], backends: [{cluster: c}]}
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))

	// The well-behaved client.
	stop := make(chan struct{})
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		c := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
		defer c.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, _, _, _, err := call(c, "GET", e.url("/ok"), map[string]string{"Host": "app.test"}, nil)
			if err != nil || code != 200 {
				failed.Add(1)
			} else {
				served.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	raw := func(req string) (int, string) {
		conn, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, ""
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Edge-Agent-Reason")
	}
	const h = "Host: app.test\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
		reason    string
	}{
		{"CL.TE smuggling", "POST / HTTP/1.1\r\n" + h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"TE.CL with an obfuscated coding", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n", 501, "bad_request"},
		{"TE with a space before the colon", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n\r\n", 400, "bad_request"},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "bad_request"},
		{"bad chunk size", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "bad_request_body"},
		{"bare LF", "GET / HTTP/1.1\nHost: app.test\n\n", 400, "bad_request"},
		{"bare CR in a value", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n", 400, "bad_request"},
		{"duplicate Host", "GET / HTTP/1.1\r\n" + h + "Host: other.test\r\n\r\n", 400, "bad_request"},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", 400, "bad_request"},
		{"oversized header", "GET / HTTP/1.1\r\n" + h + "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, "bad_request"},
		{"too many headers", "GET / HTTP/1.1\r\n" + h + strings.Repeat("X-A: b\r\n", 101) + "\r\n", 431, "bad_request"},
		{"URI too long", "GET /" + strings.Repeat("a", 9<<10) + " HTTP/1.1\r\n" + h + "\r\n", 414, "bad_request"},
		{"encoded slash to reach another route", "GET /ok/..%2Fadmin HTTP/1.1\r\n" + h + "\r\n", 400, "encoded_path_separator"},
		{"encoded backslash", "GET /ok/..%5Cadmin HTTP/1.1\r\n" + h + "\r\n", 400, "encoded_path_separator"},
		{"path parameter on a dot segment", "GET /ok/..;/admin HTTP/1.1\r\n" + h + "\r\n", 400, "encoded_path_separator"},
		{"dot segments reach the admin route (and its rules)", "GET /ok/../admin HTTP/1.1\r\n" + h + "\r\n", 403, "ip_denied"},
		{"encoded dots too", "GET /ok/%2e%2E/admin HTTP/1.1\r\n" + h + "\r\n", 403, "ip_denied"},
		{"double slash too", "GET //admin HTTP/1.1\r\n" + h + "\r\n", 403, "ip_denied"},
		{"encoded letters too", "GET /%61dmin HTTP/1.1\r\n" + h + "\r\n", 403, "ip_denied"},
		{"absolute-form to a host we do not serve", "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n", 404, "no_route"},
		{"absolute-form overrides Host", "GET http://evil.example/ HTTP/1.1\r\n" + h + "\r\n", 404, "no_route"},
		{"CONNECT tunnel (authority-form is not accepted)", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 400, "bad_request"},
	} {
		status, reason := raw(tc.req)
		if status != tc.status || reason != tc.reason {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, reason, tc.status, tc.reason)
		}
	}

	// Slowloris: a head that never ends is cut at readHeaderTimeout.
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 10 {
		if _, err := conn.Write([]byte("a")); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	io.Copy(io.Discard, conn)
	conn.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("slowloris connection lived %v, want it closed after the 1s header timeout", d)
	}

	// HTTP/2 rapid reset and CONTINUATION flood: the connection ends,
	// others are served.
	h2flood(t, e.addr, func(fr *http2.Framer, block []byte) {
		for id := uint32(1); id < 20000; id += 2 {
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}) != nil {
				return
			}
			if fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	})
	h2flood(t, e.addr, func(fr *http2.Framer, block []byte) {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block}) != nil {
			return
		}
		junk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 3000) // literal x: y, over and over
		for range 2000 {
			if fr.WriteContinuation(1, false, junk) != nil {
				return
			}
		}
	})

	// SETTINGS and PING floods from a client that never reads the ACKs:
	// the guard ends the connection.
	h2flood(t, e.addr, func(fr *http2.Framer, block []byte) {
		for range 20000 {
			if fr.WritePing(false, [8]byte{1}) != nil {
				return
			}
		}
	}, true)
	h2flood(t, e.addr, func(fr *http2.Framer, block []byte) {
		for range 20000 {
			if fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}) != nil {
				return
			}
		}
	}, true)

	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || served.Load() < 10 {
		t.Errorf("the well-behaved client: %d served, %d failed", served.Load(), failed.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	up.Close()
}

// h2flood opens an h2c connection, runs flood, and requires the server to
// end the connection (GOAWAY or close) within a few seconds. With
// noRead, nothing the server sends is read during the flood (so its
// replies back up, as an attacker's would).
func h2flood(t *testing.T, addr string, flood func(fr *http2.Framer, block []byte), noRead ...bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "app.test"}, {":path", "/ok"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	done := make(chan bool, 1)
	if len(noRead) > 0 && noRead[0] {
		conn.(*net.TCPConn).SetReadBuffer(4096)
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		flood(fr, hb.Bytes())
		// The flood ends when the server stops reading or closes; then
		// the connection must be gone.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Error("the server kept a flooding HTTP/2 connection open")
				}
				return
			}
		}
	}
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				done <- true
				return
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				done <- true
				return
			}
		}
	}()
	flood(fr, hb.Bytes())
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		t.Error("the server kept a flooding HTTP/2 connection open")
	}
	conn.Close()
}

// dialBigResponseProxy starts a proxy (server.writeTimeout 1s) in front of
// a backend answering 64 MiB, and dials it with a small receive buffer.
func dialBigResponseProxy(t *testing.T) (*env, net.Conn) {
	t.Helper()
	big := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1000 { // 64 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	e := startProxy(t, fmt.Sprintf(`
server: {writeTimeout: 1s}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 30s, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, big))
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.(*net.TCPConn).SetReadBuffer(4096)
	return e, conn
}

// A client that stops reading a response is cut after server.writeTimeout
// instead of holding a connection, a goroutine and an upstream forever.
func TestWriteTimeoutCutsNonReadingClient(t *testing.T) {
	e, conn := dialBigResponseProxy(t)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 1024)
	if _, err := conn.Read(buf); err != nil {
		t.Fatal(err)
	}
	// Stop reading; the proxy's writes stall once the socket buffers fill.
	waitUntil(t, 10*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_downstream_connections", "http") == 0
	}, "the stalled client's connection was never closed")
}

// The same over HTTP/2: a client that opens its flow-control windows wide
// and then stops reading the socket is cut after server.writeTimeout
// (flow control alone would let the server write until its buffers fill).
func TestWriteTimeoutCutsNonReadingH2Client(t *testing.T) {
	e, conn := dialBigResponseProxy(t)
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	const maxWindow = 1<<31 - 1
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
	fr.WriteWindowUpdate(0, maxWindow-65535)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "app.test"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// Read until the response body starts, then stop reading.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		if _, ok := f.(*http2.DataFrame); ok {
			break
		}
	}
	waitUntil(t, 10*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_downstream_connections", "http") == 0
	}, "the stalled HTTP/2 client's connection was never closed")
}

// The HTTP/2 write timeout bounds stalled writes only: a stream that is
// quiet for longer than server.writeTimeout and then writes again is fine.
func TestH2WriteTimeoutSparesQuietStreams(t *testing.T) {
	slow := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		time.Sleep(2500 * time.Millisecond)
		io.WriteString(w, "second")
	})
	e := startProxy(t, fmt.Sprintf(`
server: {writeTimeout: 1s}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 30s, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, slow))
	resp, err := h2cClient().Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.ProtoMajor != 2 || string(body) != "first;second" {
		t.Fatalf("HTTP/%d %q %v, want first;second over HTTP/2", resp.ProtoMajor, body, err)
	}
}
