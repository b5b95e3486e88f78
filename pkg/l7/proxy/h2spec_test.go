package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/internal/h2spectest"
)

// TestH2Spec runs h2spec (every HTTP/2 and HPACK case) against the h2c
// and the TLS listener.
func TestH2Spec(t *testing.T) {
	h2spectest.Path(t)
	b := newBackend(t, "b")
	dir := t.TempDir()
	crt, key, _ := writeCert(t, dir, "h2spec", "localhost")
	tlsPort := freePort(t)
	e := startProxy(t, fmt.Sprintf(`server: {accessLog: false}
listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls: {certificates: [{certFile: %s, keyFile: %s}]}
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, tlsPort, crt, key, b.addr()))
	for _, tc := range []struct {
		name string
		port string
		args []string
	}{
		{"h2c", e.addr[strings.LastIndexByte(e.addr, ':')+1:], nil},
		{"tls", fmt.Sprint(tlsPort), []string{"-t", "-k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h2spectest.Run(t, tc.name, "127.0.0.1", tc.port, tc.args...)
		})
	}
}
