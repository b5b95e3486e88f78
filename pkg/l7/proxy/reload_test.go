package proxy_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/config"
)

func (e *env) apply(t *testing.T, gen uint64, yaml string) error {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return e.srv.Apply(&config.Snapshot{Config: cfg, Generation: gen})
}

// TestReloadKeepsSocketsByAddress: renaming a listener, switching it to
// https and removing it are reloads, not restarts: the socket and the
// client connections on it stay.
func TestReloadKeepsSocketsByAddress(t *testing.T) {
	dir := t.TempDir()
	crt, key, pool := writeCert(t, dir, "shop", "shop.example.com")
	b := newBackend(t, "b")
	port := freePort(t)
	cfg := func(name, protocol, extra string) string {
		l := fmt.Sprintf(`{name: %s, address: "127.0.0.1:%d", protocol: %s%s}`, name, port, protocol, extra)
		return fmt.Sprintf(`
listeners: [%s, {name: other, address: "127.0.0.1:%d"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, l, freePort(t), b.addr())
	}
	e := startProxy(t, cfg("http", "http", ""))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	reusedGet := func(wantReused bool) *http.Response {
		t.Helper()
		reused := false
		req := mustReq(t, "GET", "http://"+addr+"/", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
		resp, _ := get(t, c, req)
		if reused != wantReused {
			t.Fatalf("connection reused = %v, want %v", reused, wantReused)
		}
		return resp
	}
	reusedGet(false)

	if err := e.apply(t, 2, cfg("renamed", "http", "")); err != nil {
		t.Fatal(err)
	}
	if resp := reusedGet(true); resp.StatusCode != 200 {
		t.Fatalf("after rename: %d", resp.StatusCode)
	}

	tlsCfg := fmt.Sprintf(", tls: {certificates: [{certFile: %s, keyFile: %s}]}", crt, key)
	if err := e.apply(t, 3, cfg("renamed", "https", tlsCfg)); err != nil {
		t.Fatal(err)
	}
	// The open plaintext connection still works; new ones must speak TLS.
	if resp := reusedGet(true); resp.StatusCode != 200 {
		t.Fatalf("old connection after https switch: %d", resp.StatusCode)
	}
	tc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example.com"}}}
	resp, _ := get(t, tc, mustReq(t, "GET", "https://"+addr+"/", nil))
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("new TLS connection: %d %v", resp.StatusCode, resp.TLS)
	}

	// Removing the address: the open connection is answered, not dropped.
	gone := strings.Replace(cfg("x", "http", ""), fmt.Sprintf(`{name: x, address: "127.0.0.1:%d", protocol: http}, `, port), "", 1)
	if err := e.apply(t, 4, gone); err != nil {
		t.Fatal(err)
	}
	if resp := reusedGet(true); resp.StatusCode != 503 || resp.Header.Get("Edge-Agent-Reason") != "listener_removed" {
		t.Fatalf("after removal: %d %q", resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"))
	}
	if _, err := http.Get("http://" + addr + "/"); err == nil {
		t.Fatal("removed listener still accepts connections")
	}
}

// TestReloadRejectsUnbindableListener: a snapshot whose new address cannot
// be bound is rejected whole and the old one keeps serving.
func TestReloadRejectsUnbindableListener(t *testing.T) {
	b := newBackend(t, "b")
	e := simpleProxy(t, b.addr())
	err := e.apply(t, 2, fmt.Sprintf(`
listeners: [{name: http, address: "%s"}, {name: taken, address: "%s"}]
routes: [{name: r2, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, e.addr, b.addr(), b.addr()))
	if err == nil || !strings.Contains(err.Error(), `listener "taken"`) {
		t.Fatalf("apply: %v, want a bind error naming the listener", err)
	}
	if got := e.srv.State().Snapshot.Generation; got != 1 {
		t.Fatalf("generation %d after rejected apply", got)
	}
	if resp, _ := get(t, http.DefaultClient, mustReq(t, "GET", e.url("/"), nil)); resp.StatusCode != 200 {
		t.Fatalf("old config stopped serving: %d", resp.StatusCode)
	}
}
