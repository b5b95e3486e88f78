package upstream

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// newH2CBackend serves cleartext HTTP/2 (prior knowledge) with net/http.
// conns counts connections that carried at least one request: net/http's
// client may race a spare dial against its busy connection and close the
// spare unused, which is not a second connection in any useful sense.
func newH2CBackend(t *testing.T, h http.Handler) (addr string, conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	used := map[net.Conn]bool{}
	conns = func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(used)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos,
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateActive {
				mu.Lock()
				used[c] = true
				mu.Unlock()
			}
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), conns
}

func TestH2CRoundTrip(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, conns := newH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not h2", http.StatusHTTPVersionNotSupported)
			return
		}
		switch r.URL.Path {
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Te", r.Header.Get("Te"))
			w.Header().Set("X-Q", r.URL.RawQuery)
			_, _ = w.Write([]byte(r.Method + ":" + string(body)))
			w.Header().Set("X-Sum", "42")
		}
	}))
	env := newEnv(t)
	env.cfg.Protocol = config.UpstreamH2C
	env.cfg.Endpoints = []config.Endpoint{{Address: addr, Weight: 1}}
	env.update(t)
	ep := env.ep()

	for i := range 3 {
		req := &OutRequest{Method: []byte("POST"), Target: []byte("/echo?i=" + itoa(i)), Host: []byte("svc.test"),
			ContentLength: 5, Body: strings.NewReader("hello"), TETrailers: true, Timeout: 3 * time.Second}
		x, body, err := roundTrip(t, env.c, ep, req)
		if err != nil {
			x.Finish(false)
			t.Fatal(err)
		}
		r := &x.Response
		if r.Status != 200 || body != "POST:hello" {
			x.Finish(false)
			t.Fatalf("status %d body %q", r.Status, body)
		}
		for name, want := range map[string]string{"X-Host": "svc.test", "X-Te": "trailers", "X-Q": "i=" + itoa(i)} {
			if v, ok := r.Headers.Get(name); !ok || string(v) != want {
				t.Errorf("%s = %q, want %q", name, v, want)
			}
		}
		if v, ok := r.Trailers().Get("X-Sum"); !ok || string(v) != "42" {
			t.Errorf("trailer X-Sum = %q (%v), want 42", v, ok)
		}
		x.Finish(true)
	}
	if n := conns(); n != 1 {
		t.Errorf("h2c backend saw %d connections for 3 requests, want 1 (multiplexed)", n)
	}

	req := &OutRequest{Method: []byte("GET"), Target: []byte("/slow"), Host: []byte("h"), Timeout: 150 * time.Millisecond}
	x := &Exchange{}
	start := time.Now()
	err := env.c.RoundTrip(ep, req, x)
	x.Finish(false)
	expectKind(t, err, Timeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("h2c timeout took %v", d)
	}
	if v := metricValue(t, env.m, "edge_agent_upstream_requests_active", map[string]string{"cluster": "c"}); v != 0 {
		t.Fatalf("in-flight gauge = %v, want 0", v)
	}
	if a := ep.active.Load(); a != 0 {
		t.Fatalf("endpoint active = %d, want 0", a)
	}
}

func TestH2CConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := newEnv(t)
	env.cfg.Protocol = config.UpstreamH2C
	env.cfg.Endpoints = []config.Endpoint{{Address: addr, Weight: 1}}
	env.update(t)
	x := &Exchange{}
	err = env.c.RoundTrip(env.ep(), getReq("/"), x)
	x.Finish(false)
	expectKind(t, err, ConnectFailure)
}
