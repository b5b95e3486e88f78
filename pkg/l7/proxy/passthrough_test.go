package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// sniBackend serves HTTPS with its own certificate for name.
func sniBackend(t *testing.T, name string) (addr string, pool *x509.CertPool) {
	t.Helper()
	crt, key, pool := writeCert(t, t.TempDir(), "backend", name)
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "terminated by the backend for "+r.TLS.ServerName)
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "https://"), pool
}

func httpsGet(t *testing.T, addr, sni string, pool *x509.CertPool, h2 bool) (string, *tls.ConnectionState, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: pool}, ForceAttemptHTTP2: h2}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.TLS, nil
}

// TLS passthrough and termination share one port, by SNI: the client of a
// passed-through name sees the backend's certificate.
func TestTLSPassthroughBySNI(t *testing.T) {
	dbAddr, dbPool := sniBackend(t, "db.example.com")
	b := newBackend(t, "web")
	dir := t.TempDir()
	crt, key, shopPool := writeCert(t, dir, "shop", "shop.example.com")
	port := freePort(t)
	e := startProxy(t, fmt.Sprintf(`listeners:
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls:
      certificates: [{certFile: %s, keyFile: %s}]
      passthrough:
        - {serverNames: [db.example.com, "*.db.example.com"], cluster: db}
routes: [{name: web, backends: [{cluster: web}]}]
clusters:
  - {name: web, endpoints: [{address: %s}]}
  - {name: db, endpoints: [{address: %s}]}
`, port, crt, key, b.addr(), dbAddr))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, sni := range []string{"db.example.com"} {
		body, cs, err := httpsGet(t, addr, sni, dbPool, true)
		if err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		if body != "terminated by the backend for "+sni || cs.PeerCertificates[0].DNSNames[0] != "db.example.com" {
			t.Errorf("%s: %q, certificate %v", sni, body, cs.PeerCertificates[0].DNSNames)
		}
	}
	// The terminated name gets the proxy's certificate and the route.
	body, cs, err := httpsGet(t, addr, "shop.example.com", shopPool, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `"backend":"web"`) || cs.PeerCertificates[0].DNSNames[0] != "shop.example.com" {
		t.Errorf("terminated: %q %v", body, cs.PeerCertificates[0].DNSNames)
	}
	if v := metricValue(t, e, "edge_agent_tcp_connections_total", "https"); v != 1 {
		t.Errorf("passthrough connections counted: %v", v)
	}
}

// An auto listener tells TLS, the HTTP/2 preface and HTTP/1.1 apart on
// one port.
func TestAutoListenerDetectsProtocol(t *testing.T) {
	b := newBackend(t, "web")
	crt, key, pool := writeCert(t, t.TempDir(), "shop", "shop.example.com")
	port := freePort(t)
	startProxy(t, fmt.Sprintf(`listeners:
  - name: any
    address: 127.0.0.1:%d
    protocol: auto
    tls: {certificates: [{certFile: %s, keyFile: %s}]}
routes: [{name: web, backends: [{cluster: web}]}]
clusters: [{name: web, endpoints: [{address: %s}]}]
`, port, crt, key, b.addr()))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct {
		name  string
		c     *http.Client
		url   string
		proto string
		xfp   string
	}{
		{"http/1.1", &http.Client{}, "http://" + addr + "/", "HTTP/1.1", "http"},
		{"h2c", h2cClient(), "http://" + addr + "/", "HTTP/2.0", "http"},
		{"tls h2", &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example.com"}}}, "https://" + addr + "/", "HTTP/2.0", "https"},
		{"tls http/1.1", &http.Client{Transport: &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example.com"}}}, "https://" + addr + "/", "HTTP/1.1", "https"},
	} {
		resp, e := get(t, tc.c, mustReq(t, "GET", tc.url, nil))
		if resp.Proto != tc.proto || e.Backend != "web" || e.Header.Get("X-Forwarded-Proto") != tc.xfp {
			t.Errorf("%s: proto %s, backend %q, X-Forwarded-Proto %q", tc.name, resp.Proto, e.Backend, e.Header.Get("X-Forwarded-Proto"))
		}
	}
}
