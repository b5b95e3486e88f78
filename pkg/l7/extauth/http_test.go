package extauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// seen is what the HTTP auth server received.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	BodyLen                  int
	ContentLength            int64
}

type httpAuthServer struct {
	mu      sync.Mutex
	last    seen
	release chan struct{}
	conns   atomic.Int32
}

func (s *httpAuthServer) lastSeen() seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *httpAuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.last = seen{Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: r.Header.Clone(),
		BodyLen: len(body), ContentLength: r.ContentLength}
	s.mu.Unlock()
	switch {
	case strings.Contains(r.URL.Path, "/hang"):
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
		return
	case strings.Contains(r.URL.Path, "/broken"):
		http.Error(w, "auth backend down", http.StatusServiceUnavailable)
		return
	case strings.Contains(r.URL.Path, "/big"):
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(strings.Repeat("x", 100<<10)))
		return
	case strings.Contains(r.URL.Path, "/login"):
		w.Header().Set("Location", "https://login.example/?next=/app")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusFound)
		return
	}
	if r.Header.Get("Authorization") == "Bearer nocontent" {
		w.Header().Set("X-User", "bob")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Header.Get("Authorization") == "Bearer good" {
		w.Header().Set("X-User", "alice")
		w.Header().Add("X-Groups", "admins")
		w.Header().Add("X-Groups", "devs")
		w.Header().Set("X-Other", "must-not-pass")
		_, _ = w.Write([]byte("ok"))
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="edge"`)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Keep-Alive", "timeout=5")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("denied: bad token\n"))
}

func newHTTPAuth(t testing.TB, h2c bool, prefix string, timeout time.Duration, failOpen bool) (Authorizer, *httpAuthServer) {
	t.Helper()
	srv := &httpAuthServer{release: make(chan struct{})}
	t.Cleanup(func() { close(srv.release) })
	addr := serveHTTP(t, srv, h2c, &srv.conns)
	proto := config.UpstreamHTTP1
	if h2c {
		proto = config.UpstreamH2C
	}
	cfg := extAuth(timeout, failOpen)
	cfg.HTTP = &config.ExtAuthHTTP{Cluster: "auth", PathPrefix: prefix,
		AllowedRequestHeaders:  []string{"x-tenant", "User-Agent", "Content-Length", "Host"},
		AllowedUpstreamHeaders: []string{"X-User", "x-groups", "host"}}
	a := NewHTTP(cfg, newCluster(t, proto, addr))
	t.Cleanup(a.Close)
	return a, srv
}

func clientRequest(method, target, auth string) *Request {
	hs := hdrs("X-Tenant", "acme", "X-Secret", "s3cr3t", "Cookie", "sid=1", "Cookie", "theme=dark",
		"X-Forwarded-For", "6.6.6.6", "X-Request-Id", "spoofed", "Connection", "keep-alive", "Content-Type", "application/json")
	if auth != "" {
		hs = append(hs, message.Header{Name: []byte("Authorization"), Value: []byte(auth)})
	}
	return &Request{Method: []byte(method), Target: []byte(target), Host: []byte("app.example"), Headers: hs,
		Scheme: "https", Proto: "HTTP/1.1", RequestID: []byte("rid-1"), ClientIP: []byte("10.0.0.7"),
		ForwardedFor: []byte("1.2.3.4, 10.0.0.7"), ContentLength: 42}
}

func TestHTTPAllow(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			a, srv := newHTTPAuth(t, h2c, "/auth/", time.Second, false)
			d := a.Check(context.Background(), clientRequest("POST", "/api/items?x=1&y=2", "Bearer good"))
			if !d.Allowed || d.Reason != "" || d.Err != nil {
				t.Fatalf("decision = %+v, want allowed", d)
			}
			// Response header order is the server's (Go sorts; h2c is a map):
			// compare as a set, with the first X-Groups a Set.
			var ops []string
			for _, op := range d.Upstream {
				ops = append(ops, fmt.Sprintf("%s=%s/%d", strings.ToLower(string(op.Name)), op.Value, op.Action))
			}
			slices.Sort(ops)
			want := []string{fmt.Sprintf("x-groups=admins/%d", Set), fmt.Sprintf("x-groups=devs/%d", Append), fmt.Sprintf("x-user=alice/%d", Set)}
			if !slices.Equal(ops, want) {
				t.Errorf("upstream ops = %q, want %q", ops, want)
			}

			got := srv.lastSeen()
			if got.Method != "POST" || got.URI != "/auth/api/items?x=1&y=2" || got.Host != "app.example" {
				t.Errorf("auth request = %s %s host %s", got.Method, got.URI, got.Host)
			}
			if got.BodyLen != 0 || got.ContentLength > 0 {
				t.Errorf("auth request had a body: %d bytes, Content-Length %d", got.BodyLen, got.ContentLength)
			}
			if h2c != (got.Proto == "HTTP/2.0") {
				t.Errorf("proto = %s", got.Proto)
			}
			h := got.Header
			for name, v := range map[string]string{
				"Authorization":     "Bearer good",
				"X-Tenant":          "acme",
				"X-Forwarded-Host":  "app.example",
				"X-Forwarded-For":   "1.2.3.4, 10.0.0.7",
				"X-Forwarded-Proto": "https",
				"X-Request-Id":      "rid-1",
			} {
				if vs := h.Values(name); len(vs) != 1 || vs[0] != v {
					t.Errorf("auth request %s = %q, want %q", name, vs, v)
				}
			}
			if c := strings.Join(h.Values("Cookie"), "; "); c != "sid=1; theme=dark" {
				t.Errorf("auth request Cookie = %q", c)
			}
			for _, name := range []string{"X-Secret", "Content-Type", "User-Agent"} {
				if v := h.Values(name); len(v) != 0 && !(name == "User-Agent" && h2c) {
					t.Errorf("auth request carried %s: %q", name, v)
				}
			}

			// Applied to the upstream request: replaces the client's X-User.
			up := hdrs("X-User", "mallory", "Accept", "*/*", "x-user", "eve")
			up = d.ApplyUpstream(up)
			if v, _ := get(up, "x-user"); v != "alice" || countHeader(up, "x-user") != 1 {
				t.Errorf("upstream headers = %q", up)
			}
			if countHeader(up, "x-groups") != 2 || countHeader(up, "x-other") != 0 || countHeader(up, "accept") != 1 {
				t.Errorf("upstream headers = %q", up)
			}
		})
	}
}

func countHeader(hs message.Headers, name string) int {
	n := 0
	for _, h := range hs {
		if message.EqualFold(h.Name, name) {
			n++
		}
	}
	return n
}

// TestHTTPAllowNoBody: 204 and HEAD answers (no body) allow, and the
// connection stays usable.
func TestHTTPAllowNoBody(t *testing.T) {
	a, srv := newHTTPAuth(t, false, "/auth", time.Second, false)
	for i := range 3 {
		for _, tc := range []struct{ method, auth, user string }{
			{"GET", "Bearer nocontent", "bob"},
			{"HEAD", "Bearer good", "alice"},
			{"OPTIONS", "Bearer nocontent", "bob"},
		} {
			d := a.Check(context.Background(), clientRequest(tc.method, "/p", tc.auth))
			if v, ok := opValue(d, "x-user"); !d.Allowed || !ok || v != tc.user {
				t.Fatalf("%d %s %s: decision = %+v", i, tc.method, tc.auth, d)
			}
			if got := srv.lastSeen(); got.Method != tc.method || got.URI != "/auth/p" {
				t.Errorf("auth request = %s %s", got.Method, got.URI)
			}
		}
		d := a.Check(context.Background(), clientRequest("HEAD", "/p", "Bearer bad"))
		if d.Allowed || d.Status != 401 || len(d.Body) != 0 {
			t.Fatalf("HEAD denial = %+v", d)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections to the service, want 1 reused", n)
	}
}

func opValue(d Decision, name string) (string, bool) {
	for _, op := range d.Upstream {
		if message.EqualFold(op.Name, name) {
			return string(op.Value), true
		}
	}
	return "", false
}

func TestHTTPNoPrefixKeepsPath(t *testing.T) {
	a, srv := newHTTPAuth(t, false, "", time.Second, false)
	d := a.Check(context.Background(), clientRequest("DELETE", "/v1/things/7?force=true", "Bearer good"))
	if !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	if got := srv.lastSeen(); got.Method != "DELETE" || got.URI != "/v1/things/7?force=true" {
		t.Errorf("auth request = %s %s", got.Method, got.URI)
	}
}

func TestHTTPDeny(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			a, _ := newHTTPAuth(t, h2c, "/auth", time.Second, true) // fail-open does not open denials
			d := a.Check(context.Background(), clientRequest("GET", "/private", "Bearer bad"))
			if d.Allowed || d.Reason != ReasonDenied || d.Status != 401 || d.Err != nil {
				t.Fatalf("decision = %+v, want 401 denied", d)
			}
			if string(d.Body) != "denied: bad token\n" {
				t.Errorf("body = %q", d.Body)
			}
			if v, _ := get(d.Headers, "WWW-Authenticate"); v != `Bearer realm="edge"` {
				t.Errorf("WWW-Authenticate = %q (headers %q)", v, d.Headers)
			}
			if v, _ := get(d.Headers, "Content-Type"); v != "text/plain" {
				t.Errorf("Content-Type = %q", v)
			}
			for _, name := range []string{"Content-Length", "Keep-Alive", "Transfer-Encoding", "Connection"} {
				if d.Headers.Has(name) {
					t.Errorf("denial carries %s: %q", name, d.Headers)
				}
			}
			if len(d.Upstream) != 0 {
				t.Errorf("denial has upstream ops %q", d.Upstream)
			}

			// No token at all: denied too.
			d = a.Check(context.Background(), clientRequest("GET", "/private", ""))
			if d.Allowed || d.Status != 401 {
				t.Fatalf("decision = %+v, want 401", d)
			}
		})
	}
}

func TestHTTPRedirectPassesThrough(t *testing.T) {
	a, _ := newHTTPAuth(t, false, "", time.Second, false)
	d := a.Check(context.Background(), clientRequest("GET", "/login", ""))
	if d.Allowed || d.Status != 302 || d.Reason != ReasonDenied {
		t.Fatalf("decision = %+v", d)
	}
	if v, _ := get(d.Headers, "Location"); v != "https://login.example/?next=/app" {
		t.Errorf("Location = %q", v)
	}
	if countHeader(d.Headers, "set-cookie") != 2 {
		t.Errorf("headers = %q", d.Headers)
	}
}

func TestHTTPDenialBodyIsCut(t *testing.T) {
	a, _ := newHTTPAuth(t, false, "", time.Second, false)
	for range 2 { // the cut connection is not reused
		d := a.Check(context.Background(), clientRequest("GET", "/big", ""))
		if d.Allowed || d.Status != 401 || len(d.Body) != MaxBody {
			t.Fatalf("decision: allowed %v status %d body %d bytes", d.Allowed, d.Status, len(d.Body))
		}
	}
	if d := a.Check(context.Background(), clientRequest("GET", "/x", "Bearer good")); !d.Allowed {
		t.Fatalf("decision after cut body = %+v", d)
	}
}

func TestHTTPTimeout(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			a, _ := newHTTPAuth(t, false, "", 150*time.Millisecond, failOpen)
			start := time.Now()
			d := a.Check(context.Background(), clientRequest("GET", "/hang", "Bearer good"))
			if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
				t.Errorf("check took %v, want about the 150ms timeout", el)
			}
			if !errors.Is(d.Err, ErrTimeout) {
				t.Errorf("err = %v, want ErrTimeout", d.Err)
			}
			checkFailure(t, d, failOpen)
			// The authorizer still works afterwards.
			if d := a.Check(context.Background(), clientRequest("GET", "/x", "Bearer good")); !d.Allowed || d.Reason != "" {
				t.Fatalf("decision after timeout = %+v", d)
			}
		})
	}
}

func checkFailure(t *testing.T, d Decision, failOpen bool) {
	t.Helper()
	if d.Err == nil {
		t.Errorf("decision has no Err: %+v", d)
	}
	if failOpen {
		if !d.Allowed || d.Reason != ReasonFailedOpen || len(d.Upstream) != 0 {
			t.Errorf("decision = %+v, want allowed, failed open", d)
		}
		return
	}
	if d.Allowed || d.Reason != ReasonError || d.Status != 503 {
		t.Errorf("decision = %+v, want 503 ext_auth_error", d)
	}
}

func TestHTTPCallerCancel(t *testing.T) {
	a, _ := newHTTPAuth(t, false, "", 5*time.Second, false)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	d := a.Check(ctx, clientRequest("GET", "/hang", ""))
	if time.Since(start) > 2*time.Second {
		t.Errorf("cancelled check took %v", time.Since(start))
	}
	if d.Allowed || d.Reason != ReasonError || errors.Is(d.Err, ErrTimeout) {
		t.Errorf("decision = %+v, want a non-timeout error", d)
	}
}

func TestHTTPConnectFailure(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			cfg := extAuth(time.Second, failOpen)
			cfg.HTTP = &config.ExtAuthHTTP{Cluster: "auth"}
			a := NewHTTP(cfg, newCluster(t, config.UpstreamHTTP1, deadAddr(t)))
			defer a.Close()
			d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good"))
			checkFailure(t, d, failOpen)
			if errors.Is(d.Err, ErrTimeout) {
				t.Errorf("connect failure reported as timeout: %v", d.Err)
			}
		})
	}
}

func TestHTTPServerError(t *testing.T) {
	t.Run("failClosed", func(t *testing.T) {
		a, _ := newHTTPAuth(t, false, "", time.Second, false)
		d := a.Check(context.Background(), clientRequest("GET", "/broken", "Bearer good"))
		if d.Allowed || d.Reason != ReasonError || d.Status != 503 || string(d.Body) != "auth backend down\n" || d.Err == nil {
			t.Fatalf("decision = %+v", d)
		}
	})
	t.Run("failOpen", func(t *testing.T) {
		a, _ := newHTTPAuth(t, false, "", time.Second, true)
		d := a.Check(context.Background(), clientRequest("GET", "/broken", "Bearer good"))
		checkFailure(t, d, true)
	})
}

func TestHTTPConcurrent(t *testing.T) {
	a, _ := newHTTPAuth(t, false, "/auth", 2*time.Second, false)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				good := (i+j)%2 == 0
				auth := "Bearer bad"
				if good {
					auth = "Bearer good"
				}
				d := a.Check(context.Background(), clientRequest("GET", fmt.Sprintf("/r/%d/%d", i, j), auth))
				if d.Allowed != good || (good && len(d.Upstream) != 3) || (!good && d.Status != 401) {
					t.Errorf("check %d/%d: %+v", i, j, d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkHTTPCheck(b *testing.B) {
	a, _ := newHTTPAuth(b, false, "/auth", time.Second, false)
	r := clientRequest("GET", "/api/items?x=1", "Bearer good")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := a.Check(ctx, r); !d.Allowed {
			b.Fatalf("decision = %+v", d)
		}
	}
}

func BenchmarkHTTPCheckParallel(b *testing.B) {
	a, _ := newHTTPAuth(b, false, "/auth", time.Second, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := clientRequest("GET", "/api/items?x=1", "Bearer good")
		for pb.Next() {
			if d := a.Check(ctx, r); !d.Allowed {
				b.Errorf("decision = %+v", d)
				return
			}
		}
	})
}

// TestHTTPRetriesStaleConnection: a service that closes each connection
// after answering (without saying so) leaves a dead connection in the
// pool; a POST check, which the upstream layer does not replay, is sent
// again on a new connection instead of failing.
func TestHTTPRetriesStaleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-User: alice\r\n\r\n"))
			}()
		}
	}()
	cfg := extAuth(time.Second, false)
	cfg.HTTP = &config.ExtAuthHTTP{Cluster: "auth", AllowedUpstreamHeaders: []string{"x-user"}}
	a := NewHTTP(cfg, newCluster(t, config.UpstreamHTTP1, ln.Addr().String()))
	defer a.Close()
	for i := range 5 {
		d := a.Check(context.Background(), clientRequest("POST", "/submit", "Bearer good"))
		if v, _ := opValue(d, "x-user"); !d.Allowed || v != "alice" {
			t.Fatalf("check %d: %+v", i, d)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := accepted.Load(); n < 5 {
		t.Errorf("%d connections for 5 checks on a closing service", n)
	}
}
