package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/l4test"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

// keepAliveConn sends HTTP/1.1 requests on one TCP connection and says who
// answered: "proxy" when the response carries the route's X-Via header,
// else the backend's name.
type keepAliveConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (k *keepAliveConn) ask() (string, error) {
	_ = k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.Header.Get("X-Via") == "edge-agent" {
		return "proxy", nil
	}
	return strings.Fields(string(body) + " ?")[0], nil
}

// TestModeSwitchKeepsConnections moves a VIP between the kernel balancer
// (l4.services) and the proxy (a listener's steer list) by editing the
// running agent's config, with connections open across each switch: each
// keeps being answered where it started, and new connections go the new
// way.
func TestModeSwitchKeepsConnections(t *testing.T) {
	requireRoot(t)
	topo := l4test.New(t, 2)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-modetest-%d", os.Getpid()))
	t.Cleanup(func() { _ = l4.Cleanup(dir) })
	const port = 8080
	for i, b := range topo.Backends {
		name := fmt.Sprintf("backend-%d", i)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
		go srv.Serve(b.Listen(t, netip.AddrPortFrom(b.Addr, port).String()))
		t.Cleanup(func() { srv.Close() })
	}
	vip := netip.AddrPortFrom(topo.VIP, 80)
	admin := netip.AddrPortFrom(topo.NodeAddrs[0], 9901)
	tmp := t.TempDir()
	cfgPath := filepath.Join(tmp, "edge-agent.yaml")
	write := func(l4mode bool) {
		t.Helper()
		l4svc, steer := "", "[]"
		if l4mode {
			l4svc = fmt.Sprintf(`
  services:
    - name: web
      address: %s
      backends: [{address: "%s"}, {address: "%s"}]`, vip, netip.AddrPortFrom(topo.Backends[0].Addr, port), netip.AddrPortFrom(topo.Backends[1].Addr, port))
		} else {
			steer = fmt.Sprintf(`["%s"]`, vip)
		}
		cfg := fmt.Sprintf(`admin:
  address: %s
server:
  accessLog: false
listeners:
  - name: web
    address: "%s"
    steer: %s
routes:
  - name: all
    backends: [{cluster: app}]
    responseHeaders:
      set: [{name: X-Via, value: edge-agent}]
clusters:
  - name: app
    endpoints: [{address: "%s"}]
steering:
  enabled: true
  handoverSocket: %s
l4:
  interfaces: [%s]%s
`, admin, netip.AddrPortFrom(topo.NodeAddrs[0], 8081), steer, netip.AddrPortFrom(topo.Backends[0].Addr, port),
			filepath.Join(tmp, "handover.sock"), strings.Join(topo.NodeLinks, ", "), l4svc)
		if err := os.WriteFile(cfgPath+".tmp", []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	adminClient := topo.Client.HTTPClient(false)
	generation := func() int {
		resp, err := adminClient.Get("http://" + admin.String() + "/debug/config")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var v struct {
			Generation int `json:"generation"`
		}
		if json.NewDecoder(resp.Body).Decode(&v) != nil {
			return -1
		}
		return v.Generation
	}
	waitGeneration := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for generation() < want {
			if time.Now().After(deadline) {
				t.Fatalf("config generation %d not reached (at %d)", want, generation())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	open := func() *keepAliveConn {
		t.Helper()
		c, err := topo.Client.Dial("tcp", vip.String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", vip, err)
		}
		t.Cleanup(func() { c.Close() })
		return &keepAliveConn{c: c, br: bufio.NewReader(c)}
	}
	expect := func(what string, k *keepAliveConn, want func(string) bool) string {
		t.Helper()
		got, err := k.ask()
		if err != nil || !want(got) {
			t.Fatalf("%s: answered by %q (%v)", what, got, err)
		}
		return got
	}
	isBackend := func(s string) bool { return strings.HasPrefix(s, "backend-") }
	isProxy := func(s string) bool { return s == "proxy" }

	write(true)
	agents := newNetnsAgents(t, topo.Node.Name, cfgPath, dir, admin)
	agents.client = adminClient
	p := agents.start(0)
	agents.waitReady(p)
	gen := generation()

	// L4: the kernel balances the VIP.
	c1 := open()
	b1 := expect("L4: new connection", c1, isBackend)

	// L4 -> L7.
	write(false)
	waitGeneration(gen + 1)
	expect("L4 connection after the switch to L7", c1, func(s string) bool { return s == b1 })
	c2 := open()
	expect("L7: new connection", c2, isProxy)

	// L7 -> L4.
	write(true)
	waitGeneration(gen + 2)
	expect("L7 connection after the switch to L4", c2, isProxy)
	expect("first L4 connection, still", c1, func(s string) bool { return s == b1 })
	c3 := open()
	expect("L4 again: new connection", c3, isBackend)
	if p.Tail(200) != "" && strings.Contains(p.Tail(200), `"level":"ERROR"`) {
		t.Errorf("agent logged errors:\n%s", p.Tail(40))
	}
}
