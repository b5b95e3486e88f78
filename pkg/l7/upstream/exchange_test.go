package upstream

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

func TestConnectionReusedForSequentialExchanges(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	for i := range 10 {
		target := "/r" + itoa(i)
		if got := mustGet(t, env.c, ep, target); got != "hello "+target {
			t.Fatalf("body %q", got)
		}
	}
	if n := b.connCount(); n != 1 {
		t.Fatalf("backend saw %d connections for 10 sequential exchanges, want 1", n)
	}
	for range 10 {
		if r := <-b.reqs; r.conn != 1 {
			t.Fatalf("request %s on connection %d", r.target, r.conn)
		}
	}
	if n := idleLen(ep); n != 1 {
		t.Fatalf("idle pool has %d connections, want 1", n)
	}
	if v := openConns(t, env); v != 1 {
		t.Fatalf("open connections gauge = %v, want 1", v)
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_connects_total", map[string]string{"cluster": "c", "result": "ok"}); v != 1 {
		t.Fatalf("connects ok = %v, want 1", v)
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_requests_active", map[string]string{"cluster": "c"}); v != 0 {
		t.Fatalf("in-flight gauge = %v after all exchanges finished, want 0", v)
	}
	if a := ep.active.Load(); a != 0 {
		t.Fatalf("endpoint active = %d, want 0", a)
	}
	b.noEOF(50 * time.Millisecond)
}

func TestConnectionNotReused(t *testing.T) {
	cases := []struct {
		name  string
		first reply
		body  string
		// readAll=false reads 2 bytes only; delivered is Finish's argument.
		readAll, delivered bool
		// proxyCloses: the backend keeps the connection open, so the proxy
		// must be the one that closes it.
		proxyCloses bool
	}{
		{name: "connection close", first: reply{raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"},
			body: "hi", readAll: true, delivered: true, proxyCloses: true},
		{name: "http/1.0 without keep-alive", first: reply{raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"},
			body: "hi", readAll: true, delivered: true, proxyCloses: true},
		{name: "body until EOF", first: reply{raw: "HTTP/1.1 200 OK\r\n\r\nhello until eof", close: true},
			body: "hello until eof", readAll: true, delivered: true},
		{name: "finish not delivered", first: okReply("hi"),
			body: "hi", readAll: true, delivered: false, proxyCloses: true},
		// Only part of the body has arrived (nothing left in the buffer).
		{name: "body not fully read", first: reply{raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01"},
			body: "01", readAll: false, delivered: true, proxyCloses: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			b := newBackend(t, func(r backendReq) reply {
				if n.Add(1) == 1 {
					return tc.first
				}
				return okReply("second")
			})
			env := newEnv(t, b.addr())
			ep := env.ep()
			x := &Exchange{}
			if err := env.c.RoundTrip(ep, getReq("/first"), x); err != nil {
				t.Fatal(err)
			}
			var body []byte
			var err error
			if tc.readAll {
				body, err = io.ReadAll(x.Response.Body)
			} else {
				body = make([]byte, 2)
				_, err = io.ReadFull(x.Response.Body, body)
			}
			if err != nil || string(body) != tc.body {
				t.Fatalf("body %q, %v; want %q", body, err, tc.body)
			}
			x.Finish(tc.delivered)
			if n := idleLen(ep); n != 0 {
				t.Fatalf("connection was pooled (%d idle)", n)
			}
			if tc.proxyCloses {
				b.waitEOF(1)
			}
			if got := mustGet(t, env.c, ep, "/second"); got != "second" {
				t.Fatalf("second body %q", got)
			}
			if c := b.connCount(); c != 2 {
				t.Fatalf("backend saw %d connections, want 2", c)
			}
			if v := openConns(t, env); v != 1 {
				t.Fatalf("open connections gauge = %v, want 1", v)
			}
		})
	}
}

// Positive control for the HTTP/1.0 case: keep-alive makes it reusable.
func TestHTTP10KeepAliveReused(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply {
		return reply{raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"}
	})
	env := newEnv(t, b.addr())
	for range 3 {
		mustGet(t, env.c, env.ep(), "/")
	}
	if c := b.connCount(); c != 1 {
		t.Fatalf("backend saw %d connections, want 1", c)
	}
}

// The upstream closed a pooled connection while it was idle: a GET is sent
// again on a new connection without the caller noticing.
func TestStalePooledConnRetriedForGET(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	mustGet(t, env.c, ep, "/warm")
	<-b.reqs
	b.closeAll()
	if got := mustGet(t, env.c, ep, "/after"); got != "hello /after" {
		t.Fatalf("body %q", got)
	}
	if c := b.connCount(); c != 2 {
		t.Fatalf("backend saw %d connections, want 2", c)
	}
	if r := <-b.reqs; r.conn != 2 || r.target != "/after" {
		t.Fatalf("retried request %+v, want /after on connection 2", r)
	}
	if v := openConns(t, env); v != 1 {
		t.Fatalf("open connections gauge = %v, want 1 (the stale one closed)", v)
	}
}

// After an upstream restart every pooled connection is dead. The retry must
// use a new connection, not the next stale one from the pool.
func TestStaleRetryUsesFreshConnection(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	// Two concurrent exchanges leave two idle connections.
	x1, _, err1 := roundTrip(t, env.c, ep, getReq("/a"))
	x2, _, err2 := roundTrip(t, env.c, ep, getReq("/b"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	x1.Finish(true)
	x2.Finish(true)
	if n := idleLen(ep); n != 2 {
		t.Fatalf("idle = %d, want 2", n)
	}
	b.closeAll()
	x, body, err := roundTrip(t, env.c, ep, getReq("/after-restart"))
	if err != nil {
		x.Finish(false)
		t.Fatalf("GET after upstream closed its idle connections: %v", err)
	}
	x.Finish(true)
	if body != "hello /after-restart" {
		t.Fatalf("body %q", body)
	}
	if c := b.connCount(); c != 3 {
		t.Fatalf("backend saw %d connections, want 3", c)
	}
}

// A request with a body is not replayed: the upstream may have acted on it.
func TestStalePooledConnNotRetriedForPOST(t *testing.T) {
	for _, buffered := range []bool{true, false} {
		name := "streamed"
		if buffered {
			name = "buffered"
		}
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, nil)
			env := newEnv(t, b.addr())
			ep := env.ep()
			mustGet(t, env.c, ep, "/warm")
			<-b.reqs
			b.closeAll()
			req := &OutRequest{Method: []byte("POST"), Target: []byte("/submit"), Host: []byte("h"),
				ContentLength: 7, Body: bytes.NewReader([]byte("payload")), BodyBuffered: buffered,
				Timeout: 3 * time.Second}
			x := &Exchange{}
			err := env.c.RoundTrip(ep, req, x)
			x.Finish(false)
			expectKind(t, err, Reset)
			if c := b.connCount(); c != 1 {
				t.Fatalf("backend saw %d connections, want 1 (no retry)", c)
			}
			select {
			case r := <-b.reqs:
				t.Fatalf("backend received %+v", r)
			default:
			}
			if v := openConns(t, env); v != 0 {
				t.Fatalf("open connections gauge = %v, want 0", v)
			}
			if a := ep.active.Load(); a != 0 {
				t.Fatalf("endpoint active = %d after Finish, want 0", a)
			}
		})
	}
}

func TestTimeoutWaitingForHead(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply { return reply{hang: true} })
	env := newEnv(t, b.addr())
	req := getReq("/slow")
	req.Timeout = 200 * time.Millisecond
	x := &Exchange{}
	start := time.Now()
	err := env.c.RoundTrip(env.ep(), req, x)
	elapsed := time.Since(start)
	x.Finish(false)
	ue := expectKind(t, err, Timeout)
	if ue.Kind.Status() != 504 {
		t.Fatalf("timeout status %d", ue.Kind.Status())
	}
	// The upper bound is loose for overloaded -race runs; unloaded it is ~200ms.
	if elapsed < 180*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("timed out after %v, want about 200ms", elapsed)
	}
	b.waitEOF(1)
	if v := openConns(t, env); v != 0 {
		t.Fatalf("open connections gauge = %v, want 0", v)
	}
}

// A pooled connection reused within the slack keeps its read deadline (no
// timer update); one reused later gets a new deadline, so the route timeout
// never fires early; after a streamed request body, whose writer moved the
// deadline itself, the tracked one is not trusted.
func TestBusyConnectionDeadline(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply {
		if r.target == "/slow" {
			return reply{hang: true}
		}
		return okReply("hello " + r.target)
	})
	env := newEnv(t, b.addr())
	ep := env.ep()
	exchange := func(req *OutRequest) (time.Duration, error) {
		x := &Exchange{}
		start := time.Now()
		err := env.c.RoundTrip(ep, req, x)
		if err == nil {
			io.Copy(io.Discard, x.Response.Body)
		}
		elapsed := time.Since(start)
		if !x.Finish(err == nil) {
			x.WaitBody()
		}
		return elapsed, err
	}
	get := func(target string, timeout time.Duration) *OutRequest {
		req := getReq(target)
		req.Timeout = timeout
		return req
	}
	pooled := func() *Conn {
		ep.pool.mu.Lock()
		defer ep.pool.mu.Unlock()
		if len(ep.pool.idle) != 1 {
			t.Fatalf("%d pooled connections, want 1", len(ep.pool.idle))
		}
		return ep.pool.idle[0]
	}

	// Kept: a reuse well inside a 3.2 s timeout's 200 ms slack.
	if _, err := exchange(get("/a", 3200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	first, _ := pooled().rd.Deadline()
	if _, err := exchange(get("/b", 3200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if at, _ := pooled().rd.Deadline(); !at.Equal(first) {
		t.Fatalf("deadline moved by %v on a reuse within the slack", at.Sub(first))
	}

	// Not kept once it would fire early: /c leaves now+800ms+50ms; 100 ms
	// later /slow wants now+800ms, after it.
	const timeout = 800 * time.Millisecond
	if _, err := exchange(get("/c", timeout)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	elapsed, err := exchange(get("/slow", timeout))
	expectKind(t, err, Timeout)
	if elapsed < timeout || elapsed > 5*time.Second {
		t.Fatalf("timed out after %v, want %v or a little more", elapsed, timeout)
	}

	// A streamed body: its writer moves the deadline, so the tracker
	// forgets it and the next exchange sets its own.
	x := &Exchange{}
	post := &OutRequest{Method: []byte("POST"), Target: []byte("/up"), Host: []byte("h"), Timeout: 3 * time.Second,
		ContentLength: -1, Body: strings.NewReader("chunky")}
	if err := env.c.RoundTrip(ep, post, x); err != nil {
		t.Fatal(err)
	}
	if _, known := x.conn.rd.Deadline(); known {
		t.Fatalf("after a streamed body the tracked deadline is still trusted")
	}
	io.Copy(io.Discard, x.Response.Body)
	if !x.Finish(true) {
		x.WaitBody()
	}
	if n := b.connCount(); n != 2 {
		t.Fatalf("backend saw %d connections, want 2 (the first until /slow timed out)", n)
	}
}

// The route timeout covers the head only; a body that trickles in for
// longer than it is still read.
func TestTimeoutDoesNotCutSlowBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		buf := make([]byte, 4096)
		_, _ = nc.Read(buf)
		_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(nc, "def")
		_, _ = nc.Read(buf)
	}()
	env := newEnv(t, ln.Addr().String())
	req := getReq("/")
	req.Timeout = 100 * time.Millisecond
	x, body, err := roundTrip(t, env.c, env.ep(), req)
	x.Finish(err == nil)
	if err != nil || body != "abcdef" {
		t.Fatalf("body %q, err %v", body, err)
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := newEnv(t, addr)
	x := &Exchange{}
	err = env.c.RoundTrip(env.ep(), getReq("/"), x)
	x.Finish(false)
	ue := expectKind(t, err, ConnectFailure)
	if ue.Kind.Status() != 503 {
		t.Fatalf("status %d, want 503", ue.Kind.Status())
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_connects_total", map[string]string{"cluster": "c", "result": "error"}); v != 1 {
		t.Fatalf("connect errors = %v, want 1", v)
	}
	if v := openConns(t, env); v != 0 {
		t.Fatalf("open connections gauge = %v, want 0", v)
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_requests_active", map[string]string{"cluster": "c"}); v != 0 {
		t.Fatalf("in-flight gauge = %v, want 0", v)
	}
}

func TestGarbageResponseIsProtocolError(t *testing.T) {
	for name, raw := range map[string]string{
		"not http":      "SSH-2.0-OpenSSH_9.6\r\n\r\n",
		"bad length":    "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
		"bad status":    "HTTP/1.1 2x0 OK\r\n\r\n",
		"te and cl":     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"unexpected101": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, func(r backendReq) reply { return reply{raw: raw} })
			env := newEnv(t, b.addr())
			x := &Exchange{}
			err := env.c.RoundTrip(env.ep(), getReq("/"), x)
			x.Finish(false)
			ue := expectKind(t, err, ProtocolError)
			if ue.Kind.Status() != 502 {
				t.Fatalf("status %d", ue.Kind.Status())
			}
			b.waitEOF(1)
		})
	}
}

func TestInterimResponsesSkipped(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply {
		return reply{raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	env := newEnv(t, b.addr())
	if got := mustGet(t, env.c, env.ep(), "/"); got != "ok" {
		t.Fatalf("body %q", got)
	}
}

func TestChunkedResponseWithTrailers(t *testing.T) {
	var n atomic.Int32
	b := newBackend(t, func(r backendReq) reply {
		if n.Add(1) == 1 {
			return reply{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
				"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Checksum: abc123\r\nX-Other: 2\r\n\r\n"}
		}
		return okReply("next")
	})
	env := newEnv(t, b.addr())
	ep := env.ep()
	x := &Exchange{}
	if err := env.c.RoundTrip(ep, getReq("/"), x); err != nil {
		t.Fatal(err)
	}
	r := &x.Response
	if r.ContentLength != -1 {
		t.Fatalf("ContentLength %d, want -1", r.ContentLength)
	}
	if r.Trailers == nil {
		t.Fatal("Trailers func not set for a chunked response")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || string(body) != "hello world" {
		t.Fatalf("body %q, %v", body, err)
	}
	tr := r.Trailers()
	if v, ok := tr.Get("X-Checksum"); !ok || string(v) != "abc123" {
		t.Fatalf("trailers %v: X-Checksum = %q", tr, v)
	}
	if v, ok := tr.Get("x-other"); !ok || string(v) != "2" {
		t.Fatalf("trailers %v: X-Other = %q", tr, v)
	}
	x.Finish(true)
	// The whole chunked body, trailers included, was consumed: reusable.
	if got := mustGet(t, env.c, ep, "/next"); got != "next" {
		t.Fatalf("next body %q", got)
	}
	if c := b.connCount(); c != 1 {
		t.Fatalf("backend saw %d connections, want 1", c)
	}
}

func TestNoBodyResponses(t *testing.T) {
	cases := []struct {
		method, raw string
		wantCL      int64
	}{
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 1234},
		{"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", -1}, // length unknown: not 0
		{"GET", "HTTP/1.1 204 No Content\r\n\r\n", 0},
		{"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.raw[9:12], func(t *testing.T) {
			var n atomic.Int32
			b := newBackend(t, func(r backendReq) reply {
				if n.Add(1) == 1 {
					return reply{raw: tc.raw}
				}
				return okReply("after")
			})
			env := newEnv(t, b.addr())
			ep := env.ep()
			req := getReq("/")
			req.Method = []byte(tc.method)
			x := &Exchange{}
			if err := env.c.RoundTrip(ep, req, x); err != nil {
				t.Fatal(err)
			}
			if x.Response.ContentLength != tc.wantCL {
				t.Fatalf("ContentLength %d, want %d", x.Response.ContentLength, tc.wantCL)
			}
			done := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(x.Response.Body); done <- b }()
			select {
			case body := <-done:
				if len(body) != 0 {
					t.Fatalf("body %q, want none", body)
				}
			case <-time.After(2 * time.Second):
				x.Abort()
				t.Fatal("reading a body-less response blocked")
			}
			x.Finish(true)
			// The next response on the same connection is framed correctly.
			if got := mustGet(t, env.c, ep, "/after"); got != "after" {
				t.Fatalf("next body %q", got)
			}
			if c := b.connCount(); c != 1 {
				t.Fatalf("backend saw %d connections, want 1", c)
			}
		})
	}
}

func TestRequestBodies(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply { return okReply(r.method + ":" + r.body) })
	env := newEnv(t, b.addr())
	ep := env.ep()
	big := strings.Repeat("x", 100<<10)
	cases := []struct {
		name string
		req  OutRequest
		want string
	}{
		{"buffered", OutRequest{Method: []byte("POST"), ContentLength: 5, Body: strings.NewReader("abcde"), BodyBuffered: true}, "POST:abcde"},
		{"streamed large", OutRequest{Method: []byte("PUT"), ContentLength: int64(len(big)), Body: strings.NewReader(big)}, "PUT:" + big},
		{"chunked", OutRequest{Method: []byte("POST"), ContentLength: -1, Body: strings.NewReader("chunky"),
			Trailers: func() message.Headers {
				return message.Headers{{Name: []byte("X-T"), Value: []byte("1")}}
			}}, "POST:chunky"},
		{"empty post", OutRequest{Method: []byte("POST")}, "POST:"},
		{"buffered again", OutRequest{Method: []byte("PATCH"), ContentLength: 2, Body: strings.NewReader("zz"), BodyBuffered: true}, "PATCH:zz"},
	}
	for _, tc := range cases {
		req := tc.req
		req.Target, req.Host, req.Timeout = []byte("/"), []byte("h"), 3*time.Second
		x, body, err := roundTrip(t, env.c, ep, &req)
		if err != nil {
			x.Finish(false)
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !x.Finish(true) {
			// A streamed body's writer may not have reported yet even
			// though the upstream read it all (see the report): the
			// connection is then closed rather than pooled.
			x.WaitBody()
		}
		if body != tc.want {
			t.Fatalf("%s: backend echoed %d bytes, want %d", tc.name, len(body), len(tc.want))
		}
		if a := ep.active.Load(); a != 0 {
			t.Fatalf("%s: endpoint active = %d after Finish", tc.name, a)
		}
	}
	if n := idleLen(ep); n != 1 {
		t.Fatalf("idle = %d after the last (unstreamed) exchange, want 1", n)
	}
}

func TestAbortUnblocksRoundTrip(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply { return reply{hang: true} })
	env := newEnv(t, b.addr())
	req := getReq("/slow")
	req.Timeout = 10 * time.Second
	x := &Exchange{}
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- env.c.RoundTrip(env.ep(), req, x) }()
	select {
	case <-b.reqs: // the request is on the wire: RoundTrip is waiting for the head
	case <-time.After(3 * time.Second):
		t.Fatal("backend never received the request")
	}
	x.Abort()
	select {
	case err := <-errc:
		x.Finish(false)
		expectKind(t, err, Reset)
		if time.Since(start) > 3*time.Second {
			t.Fatal("Abort took too long")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Abort did not unblock RoundTrip")
	}
	b.waitEOF(1)
	if v := openConns(t, env); v != 0 {
		t.Fatalf("open connections gauge = %v, want 0", v)
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_requests_active", map[string]string{"cluster": "c"}); v != 0 {
		t.Fatalf("in-flight gauge = %v, want 0", v)
	}
	// Abort with nothing in flight is a no-op.
	x.Abort()
	(&Exchange{}).Abort()
}

func TestContextCancelUnblocksRoundTrip(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply { return reply{hang: true} })
	env := newEnv(t, b.addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := getReq("/slow")
	req.Timeout = 10 * time.Second
	req.Ctx = ctx
	x := &Exchange{}
	errc := make(chan error, 1)
	go func() { errc <- env.c.RoundTrip(env.ep(), req, x) }()
	<-b.reqs
	cancel()
	select {
	case err := <-errc:
		x.Finish(false)
		if _, ok := AsError(err); !ok {
			t.Fatalf("error %v is not an *Error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("cancelling the context did not unblock RoundTrip")
	}
	b.waitEOF(1)
}

// A request context that ends after the response was delivered (an HTTP/2
// client resetting its finished stream, a handler returning) must not leave
// the pooled connection with an expired deadline.
func TestContextCancelAfterBodyDoesNotPoisonPool(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	ctx, cancel := context.WithCancel(context.Background())
	req := getReq("/one")
	req.Ctx = ctx
	x, body, err := roundTrip(t, env.c, ep, req)
	if err != nil || body != "hello /one" {
		t.Fatalf("body %q, %v", body, err)
	}
	cancel()
	time.Sleep(50 * time.Millisecond) // let context.AfterFunc run
	x.Finish(true)
	x2, body, err := roundTrip(t, env.c, ep, getReq("/two"))
	if err != nil {
		x2.Finish(false)
		t.Fatalf("next exchange after a cancelled context: %v", err)
	}
	x2.Finish(true)
	if body != "hello /two" {
		t.Fatalf("body %q", body)
	}
}

func TestUpgradeHijack(t *testing.T) {
	b := newBackend(t, func(r backendReq) reply {
		return reply{raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nping", hang: false}
	})
	env := newEnv(t, b.addr())
	ep := env.ep()
	req := getReq("/ws")
	req.Upgrade = []byte("websocket")
	x := &Exchange{}
	if err := env.c.RoundTrip(ep, req, x); err != nil {
		t.Fatal(err)
	}
	if x.Response.Status != 101 {
		t.Fatalf("status %d", x.Response.Status)
	}
	nc, br, done := x.Hijack()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("relayed %q, %v", buf, err)
	}
	if nc == nil {
		t.Fatal("no connection")
	}
	if a := ep.active.Load(); a != 0 {
		t.Fatalf("endpoint active = %d after Hijack, want 0", a)
	}
	done()
	b.waitEOF(1)
	if v := openConns(t, env); v != 0 {
		t.Fatalf("open connections gauge = %v, want 0", v)
	}
	if n := idleLen(ep); n != 0 {
		t.Fatalf("hijacked connection pooled")
	}
}
