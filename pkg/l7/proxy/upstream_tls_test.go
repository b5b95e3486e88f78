package proxy_test

import (
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/proxy"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// tlsBackend is an HTTPS server (httptest's certificate, valid for
// example.com) that counts the connections it accepted.
func tlsBackend(t *testing.T) (srv *httptest.Server, caFile string, conns func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v proto=%s path=%s", r.TLS != nil, r.Proto, r.URL.Path)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			n++
			mu.Unlock()
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func tlsProxy(t *testing.T, upstream, serverName, caFile string) *env {
	t.Helper()
	return startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 2s, backends: [{cluster: c}]}]
clusters: [{name: c, connectTimeout: 2s, tls: {serverName: %s, caFile: %s}, endpoints: [{address: %s}]}]
`, serverName, caFile, upstream))
}

func TestUpstreamTLS(t *testing.T) {
	srv, caFile, conns := tlsBackend(t)
	e := tlsProxy(t, srv.Listener.Addr().String(), "example.com", caFile)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(e.url("/x"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for range 5 {
		if code, body := get(); code != 200 || body != "tls=true proto=HTTP/1.1 path=/x" {
			t.Fatalf("got %d %q", code, body)
		}
	}
	if n := conns(); n != 1 {
		t.Fatalf("upstream TLS connections = %d, want 1 reused", n)
	}
	// After more than a second idle the pooled connection is probed before
	// reuse; a live TLS connection passes the probe.
	time.Sleep(1100 * time.Millisecond)
	if code, _ := get(); code != 200 {
		t.Fatalf("after idle: %d", code)
	}
	if n := conns(); n != 1 {
		t.Fatalf("idle TLS connection not reused: %d connections", n)
	}
	// The upstream closing its idle connections is noticed, not a failure.
	srv.CloseClientConnections()
	time.Sleep(1100 * time.Millisecond)
	if code, _ := get(); code != 200 {
		t.Fatalf("after upstream close: %d", code)
	}
}

func TestUpstreamTLSVerifiesTheCertificate(t *testing.T) {
	srv, caFile, _ := tlsBackend(t)
	// The certificate is not valid for this name: the handshake fails and
	// the client gets the connect-failure answer.
	e := tlsProxy(t, srv.Listener.Addr().String(), "wrong.example.org", caFile)
	resp, err := http.Get(e.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(proxy.ReasonHeader) != "upstream_connect_failure" {
		t.Fatalf("status %d reason %q", resp.StatusCode, resp.Header.Get(proxy.ReasonHeader))
	}
}

func TestUpstreamTLSBadCARejectsTheConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:%d"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, tls: {serverName: example.com, caFile: %s}, endpoints: [{address: 127.0.0.1:1}]}]
`, freePort(t), bad)))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := proxy.New(quiet, quiet, metrics.New())
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	err = srv.Apply(&config.Snapshot{Config: cfg, Generation: 1})
	if err == nil || !strings.Contains(err.Error(), "clusters[0].tls") {
		t.Fatalf("Apply = %v, want an error on clusters[0].tls", err)
	}
}
