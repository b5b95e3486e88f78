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
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientCA is a CA that signs client certificates.
type clientCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newClientCA(t *testing.T, dir, name string) *clientCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &clientCA{cert: cert, key: key, file: file}
}

// issue makes a client certificate with a SPIFFE-style URI SAN.
func (ca *clientCA) issue(t *testing.T, cn, uri string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Payments"}},
		URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mTLS on a listener: optional by default, required for one host; the
// verified identity reaches routing and the upstream (X-Forwarded-Client-
// Cert), and a client cannot forge it.
func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := newClientCA(t, dir, "clients")
	rogue := newClientCA(t, dir, "rogue")
	crt, key, pool := writeCert(t, dir, "srv", "shop.example.com", "secure.example.com")
	web, pay := newBackend(t, "web"), newBackend(t, "payments")
	port := freePort(t)
	startProxy(t, fmt.Sprintf(`listeners:
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls:
      certificates: [{certFile: %s, keyFile: %s}]
      clientAuth: {caFile: %s, mode: optional, requireForHosts: [secure.example.com]}
routes:
  - name: payments-only
    match: {headers: [{name: X-Forwarded-Client-Cert, regex: ".*;URI=spiffe://test/ns/payments(;.*)?"}]}
    backends: [{cluster: payments}]
  - {name: web, backends: [{cluster: web}]}
clusters:
  - {name: web, endpoints: [{address: %s}]}
  - {name: payments, endpoints: [{address: %s}]}
`, port, crt, key, ca.file, web.addr(), pay.addr()))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := func(sni string, certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: sni, Certificates: certs}}}
	}
	payments := ca.issue(t, "pay-1", "spiffe://test/ns/payments")
	other := ca.issue(t, "other-1", "spiffe://test/ns/other")

	// No certificate on an optional host: served, no identity upstream, and
	// a forged header is dropped.
	req := mustReq(t, "GET", "https://"+addr+"/", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "URI=spiffe://test/ns/payments")
	_, e := get(t, client("shop.example.com"), req)
	if e.Backend != "web" || e.Header.Get("X-Forwarded-Client-Cert") != "" {
		t.Errorf("no cert, forged header: backend %q, XFCC %q", e.Backend, e.Header.Get("X-Forwarded-Client-Cert"))
	}
	// A verified certificate routes by its identity and is described upstream.
	for _, tc := range []struct {
		cert    tls.Certificate
		backend string
		uri     string
	}{{payments, "payments", "spiffe://test/ns/payments"}, {other, "web", "spiffe://test/ns/other"}} {
		for _, h2 := range []bool{true, false} {
			c := client("shop.example.com", tc.cert)
			if !h2 {
				c.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			_, e := get(t, c, mustReq(t, "GET", "https://"+addr+"/", nil))
			xfcc := e.Header.Get("X-Forwarded-Client-Cert")
			if e.Backend != tc.backend || !strings.Contains(xfcc, ";URI="+tc.uri) || !strings.Contains(xfcc, "Hash=") || !strings.Contains(xfcc, "O=Payments") {
				t.Errorf("%s (h2 %v): backend %q, XFCC %q", tc.uri, h2, e.Backend, xfcc)
			}
		}
	}
	// Required host: no certificate, or one from another CA, is refused.
	for name, c := range map[string]*http.Client{
		"no certificate":   client("secure.example.com"),
		"untrusted issuer": client("secure.example.com", rogue.issue(t, "x", "spiffe://test/ns/payments")),
	} {
		if resp, err := c.Get("https://" + addr + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("%s: got %d, want the handshake refused", name, resp.StatusCode)
		}
	}
	// An untrusted certificate on an optional host carries no identity (Go
	// clients do not even offer one the server's CA list excludes).
	if _, e := get(t, client("shop.example.com", rogue.issue(t, "x", "spiffe://test/ns/payments")), mustReq(t, "GET", "https://"+addr+"/", nil)); e.Backend != "web" || e.Header.Get("X-Forwarded-Client-Cert") != "" {
		t.Errorf("untrusted certificate, optional host: backend %q, XFCC %q", e.Backend, e.Header.Get("X-Forwarded-Client-Cert"))
	}
	if _, e := get(t, client("secure.example.com", payments), mustReq(t, "GET", "https://"+addr+"/", nil)); e.Backend != "payments" {
		t.Errorf("required host with a certificate: %q", e.Backend)
	}
}
