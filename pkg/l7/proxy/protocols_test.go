package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHTTP1KeepAliveAndUpstreamPooling(t *testing.T) {
	b := newBackend(t, "b")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, b.addr()))
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	reused := 0
	for i := range 50 {
		req := mustReq(t, "GET", e.url(fmt.Sprintf("/n/%d", i)), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		resp, got := get(t, c, req)
		if resp.StatusCode != 200 || got.Path != fmt.Sprintf("/n/%d", i) || got.Proto != "HTTP/1.1" {
			t.Fatalf("request %d: %d %+v", i, resp.StatusCode, got)
		}
	}
	if reused != 49 {
		t.Errorf("client connection reused %d times, want 49 (keep-alive)", reused)
	}
	if n := b.connCount(); n != 1 {
		t.Errorf("upstream saw %d connections for 50 sequential requests, want 1 (pooling)", n)
	}
}

func TestH2CPriorKnowledgeAndH2CUpstream(t *testing.T) {
	h1 := newBackend(t, "h1")
	h2 := newH2CBackend(t, "h2c")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: to-h2c, match: {path: {prefix: /h2}}, backends: [{cluster: h2c}]}
  - {name: to-h1, backends: [{cluster: h1}]}
clusters:
  - {name: h1, endpoints: [{address: %s}]}
  - {name: h2c, protocol: h2c, endpoints: [{address: %s}]}
`, h1.addr(), h2.addr()))
	for _, tc := range []struct {
		client    *http.Client
		path      string
		wantProto string // the client's protocol
		wantUp    string // the upstream's protocol
	}{
		{h2cClient(), "/x", "HTTP/2.0", "HTTP/1.1"},
		{h2cClient(), "/h2/x", "HTTP/2.0", "HTTP/2.0"},
		{http.DefaultClient, "/h2/y", "HTTP/1.1", "HTTP/2.0"},
	} {
		resp, got := get(t, tc.client, mustReq(t, "POST", e.url(tc.path), strings.NewReader("hello")))
		if resp.StatusCode != 200 || resp.Proto != tc.wantProto || got.Proto != tc.wantUp || got.Body != 5 || got.Path != tc.path {
			t.Errorf("%s via %s: status %d, client proto %s, upstream %+v", tc.path, tc.wantProto, resp.StatusCode, resp.Proto, got)
		}
	}
	if h2.hitCount() != 2 || h1.hitCount() != 1 {
		t.Errorf("hits: h2c backend %d (want 2), h1 backend %d (want 1)", h2.hitCount(), h1.hitCount())
	}
}

// writeCert makes a self-signed certificate for names and writes PEM files.
func writeCert(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSTerminationSNIAndALPN(t *testing.T) {
	dir := t.TempDir()
	shopCrt, shopKey, shopPool := writeCert(t, dir, "shop", "shop.example.com")
	wildCrt, wildKey, wildPool := writeCert(t, dir, "wild", "*.api.example.com")
	b := newBackend(t, "b")
	port := freePort(t)
	e := startProxy(t, fmt.Sprintf(`
listeners:
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls:
      certificates:
        - {certFile: %s, keyFile: %s}
        - {certFile: %s, keyFile: %s}
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, port, shopCrt, shopKey, wildCrt, wildKey, b.addr()))
	_ = e
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct {
		sni   string
		pool  *x509.CertPool
		h2    bool
		proto string
	}{
		{"shop.example.com", shopPool, true, "HTTP/2.0"},
		{"shop.example.com", shopPool, false, "HTTP/1.1"},
		{"v1.api.example.com", wildPool, true, "HTTP/2.0"},
	} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: tc.pool, ServerName: tc.sni},
			ForceAttemptHTTP2: tc.h2,
		}
		if !tc.h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		req := mustReq(t, "GET", "https://"+addr+"/tls", nil)
		req.Host = tc.sni
		resp, got := get(t, &http.Client{Transport: tr}, req)
		if resp.StatusCode != 200 || resp.Proto != tc.proto || got.Header.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("%s h2=%v: status %d proto %s xfp %q", tc.sni, tc.h2, resp.StatusCode, resp.Proto, got.Header.Get("X-Forwarded-Proto"))
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("%s: TLS state %+v", tc.sni, resp.TLS)
		}
	}
	// TLS 1.1 is refused: the minimum is 1.2.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "shop.example.com", RootCAs: shopPool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("TLS 1.1 handshake succeeded, want failure")
	}
}

// TestCurlClients uses curl as an independent HTTP/1.1, h2c and h2 client.
func TestCurlClients(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is required in CI (hack/install-deps.sh installs it)")
		}
		t.Skip("curl not installed")
	}
	dir := t.TempDir()
	crt, key, _ := writeCert(t, dir, "shop", "shop.example.com")
	b := newBackend(t, "b")
	tlsPort := freePort(t)
	e := startProxy(t, fmt.Sprintf(`
listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
  - {name: https, address: "127.0.0.1:%d", protocol: https, tls: {certificates: [{certFile: %s, keyFile: %s}]}}
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, tlsPort, crt, key, b.addr()))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"http1.1", []string{"--http1.1", e.url("/curl")}, "HTTP/1.1"},
		{"h2c prior knowledge", []string{"--http2-prior-knowledge", e.url("/curl")}, "HTTP/2"},
		{"h2 over TLS", []string{"--http2", "--cacert", crt, "--resolve", fmt.Sprintf("shop.example.com:%d:127.0.0.1", tlsPort),
			fmt.Sprintf("https://shop.example.com:%d/curl", tlsPort)}, "HTTP/2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"}, tc.args...)
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			want := strings.TrimPrefix(tc.want, "HTTP/") + " 200"
			if strings.TrimSpace(string(out)) != want {
				t.Fatalf("curl printed %q, want %q", out, want)
			}
		})
	}
}
