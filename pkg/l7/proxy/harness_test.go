package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/proxy"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// env is a running proxy with its metrics.
type env struct {
	t       testing.TB
	srv     *proxy.Server
	metrics *metrics.Metrics
	addr    string // the "http" listener
}

// startProxy parses yaml (with {{PORT}} replaced by a free port for the
// listener named "http") and serves it.
func startProxy(t testing.TB, yaml string) *env {
	t.Helper()
	if strings.Contains(yaml, "{{PORT}}") {
		yaml = strings.ReplaceAll(yaml, "{{PORT}}", fmt.Sprint(freePort(t)))
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	m := metrics.New()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := proxy.New(quiet, quiet, m)
	if err := srv.Apply(&config.Snapshot{Config: cfg, Generation: 1}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e := &env{t: t, srv: srv, metrics: m}
	if a := srv.Addr("http"); a != nil {
		e.addr = a.String()
	}
	return e
}

func (e *env) url(path string) string { return "http://" + e.addr + path }

// echo is what test backends answer: who they are and what they received.
type echo struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Proto   string      `json:"proto"`
	Header  http.Header `json:"header"`
	Body    int         `json:"body"`
}

// backend is a real HTTP server on 127.0.0.1 that echoes requests, named so
// tests can tell which one answered.
type backend struct {
	*httptest.Server
	name  string
	mu    sync.Mutex
	conns map[string]bool
	hits  int
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name, conns: map[string]bool{}}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.mu.Lock()
			b.conns[c.RemoteAddr().String()] = true
			b.mu.Unlock()
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

// newH2CBackend serves echo over cleartext HTTP/2 only (prior knowledge).
func newH2CBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name, conns: map[string]bool{}}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	b.Config.Protocols = &p
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.hits++
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", b.name)
	_ = json.NewEncoder(w).Encode(echo{Backend: b.name, Method: r.Method, Host: r.Host,
		Path: r.URL.RequestURI(), Proto: r.Proto, Header: r.Header, Body: int(n)})
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func (b *backend) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *backend) hitCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// get sends a request and decodes the echo; it fails the test on transport errors.
func get(t testing.TB, c *http.Client, req *http.Request) (*http.Response, echo) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	var e echo
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
	}
	return resp, e
}

func mustReq(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// h2cClient speaks HTTP/2 with prior knowledge over cleartext TCP.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}
