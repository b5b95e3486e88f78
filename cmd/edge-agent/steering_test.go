package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/netnstest"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

// namedUpstream answers every request with its name.
func namedUpstream(t *testing.T, netns, name string) net.Addr {
	ln := netnstest.ListenIn(t, netns, "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr()
}

// TestSteeredListenersByDestination runs the agent with steering: it binds
// one socket, yet connections to 20 (IP, port) pairs of two listeners reach
// it and are served by the listener their original destination belongs
// to; a pair no listener names is refused.
func TestSteeredListenersByDestination(t *testing.T) {
	requireRoot(t)
	h := netnstest.New(t, 3)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-steertest-%d", os.Getpid()))
	t.Cleanup(func() { _ = l4.Cleanup(dir) })
	a := namedUpstream(t, h.Name, "upstream-a")
	b := namedUpstream(t, h.Name, "upstream-b")

	web := netip.AddrPortFrom(h.Addrs[0], 8080)
	api := netip.AddrPortFrom(netip.IPv4Unspecified(), 9000)
	admin := netip.AddrPortFrom(h.Addrs[2], 9901)
	want := map[netip.AddrPort]string{
		web: "upstream-a",
		// api's address is every node address.
		netip.AddrPortFrom(h.Addrs[0], 9000): "upstream-b",
		netip.AddrPortFrom(h.Addrs[1], 9000): "upstream-b",
	}
	var webSteer, apiSteer []string
	for i := range 9 {
		ap := netip.AddrPortFrom(h.Addrs[0], uint16(8081+i))
		webSteer, want[ap] = append(webSteer, `"`+ap.String()+`"`), "upstream-a"
	}
	for i := range 8 {
		ap := netip.AddrPortFrom(h.Addrs[1], uint16(80+i))
		apiSteer, want[ap] = append(apiSteer, `"`+ap.String()+`"`), "upstream-b"
	}
	if len(want) != 20 {
		t.Fatalf("%d pairs, want 20", len(want))
	}
	// A service VIP that is no address of the node: the agent routes it
	// locally, or the stack would not deliver it to any socket.
	remoteVIP := netip.MustParseAddrPort("198.51.100.50:80")
	webSteer = append(webSteer, `"`+remoteVIP.String()+`"`)
	tmp := t.TempDir()
	cfg := fmt.Sprintf(`admin:
  address: %s
server:
  accessLog: false
listeners:
  - name: web
    address: %s
    steer: [%s]
  - name: api
    address: "%s"
    steer: [%s]
routes:
  - name: web
    listeners: [web]
    backends: [{cluster: a}]
  - name: api
    listeners: [api]
    backends: [{cluster: b}]
clusters:
  - name: a
    endpoints: [{address: "%s"}]
  - name: b
    endpoints: [{address: "%s"}]
steering:
  enabled: true
  handoverSocket: %s
`, admin, web, strings.Join(webSteer, ", "), api, strings.Join(apiSteer, ", "), a, b, filepath.Join(tmp, "handover.sock"))
	cfgPath := filepath.Join(tmp, "edge-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agents := newNetnsAgents(t, h.Name, cfgPath, dir, admin)
	p := agents.start(0)
	agents.waitReady(p)

	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for ap, name := range want {
		if err := fetch(c, "http://"+ap.String()+"/", name); err != nil {
			t.Errorf("%s: %v", ap, err)
		}
	}
	// From inside the namespace (as a client on the node would; nothing
	// outside routes the VIP to it).
	err := h.Run(func() error {
		c, err := net.DialTimeout("tcp", remoteVIP.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(string(b), "upstream-a") {
			return fmt.Errorf("answer %q, want upstream-a", b)
		}
		return nil
	})
	if err != nil {
		t.Errorf("non-local VIP %s: %v", remoteVIP, err)
	}
	if out, err := exec.Command("ip", "-n", h.Name, "route", "show", "table", "local", "proto", fmt.Sprint(l4.RouteProtocol)).CombinedOutput(); err != nil || !strings.Contains(string(out), "local "+remoteVIP.Addr().String()) || strings.Contains(string(out), h.Addrs[0].String()) {
		t.Errorf("local routes the agent added: %v\n%s", err, out)
	}
	// Nothing is bound at these, and no listener names them.
	for _, ap := range []netip.AddrPort{netip.AddrPortFrom(h.Addrs[0], 7000), netip.AddrPortFrom(h.Addrs[2], 80)} {
		conn, err := net.DialTimeout("tcp", ap.String(), 2*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("%s: connected, want refused", ap)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: %v, want connection refused", ap, err)
		}
	}

	// bpf status shows the table and the agent's socket.
	var out, errOut bytes.Buffer
	var st *l4.SteeringTable
	if rc := realMain([]string{"bpf", "status", "--pin-dir", dir}, &out, &errOut); rc != 0 {
		t.Fatalf("bpf status: rc %d: %s", rc, errOut.String())
	}
	st, err = l4.ReadSteering(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.SocketCookie == 0 || !strings.Contains(out.String(), fmt.Sprintf("proxy socket cookie %d", st.SocketCookie)) {
		t.Errorf("bpf status does not show the proxy socket (cookie %d):\n%s", st.SocketCookie, out.String())
	}
	for _, s := range []string{web.String(), "0.0.0.0:9000", netip.AddrPortFrom(h.Addrs[1], 87).String()} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("bpf status lacks steered %s:\n%s", s, out.String())
		}
	}
	if st.Steered < 21 || !strings.Contains(out.String(), fmt.Sprintf("CONNECTIONS STEERED  %d", st.Steered)) {
		t.Errorf("steered %d connections, want >= 20; bpf status:\n%s", st.Steered, out.String())
	}
	if len(st.Targets) != 20 { // api's two node addresses are one entry, plus remoteVIP
		t.Errorf("steering table has %d entries, want 20: %v", len(st.Targets), st.Targets)
	}
}

// TestTakeOverWithAdminTaken: the admin address is held by something that
// does not answer the handover socket (a hung predecessor). The new agent
// still takes the traffic (an agent that gave up after taking the SOCKMAP
// would leave the node with no socket), and binds the admin address once
// it is free.
func TestTakeOverWithAdminTaken(t *testing.T) {
	requireRoot(t)
	h := netnstest.New(t, 2)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-admintest-%d", os.Getpid()))
	t.Cleanup(func() { _ = l4.Cleanup(dir) })
	up := namedUpstream(t, h.Name, "upstream")
	web := netip.AddrPortFrom(h.Addrs[0], 8080)
	admin := netip.AddrPortFrom(h.Addrs[1], 9901)
	squatter := netnstest.ListenIn(t, h.Name, admin.String())
	tmp := t.TempDir()
	cfg := fmt.Sprintf(`admin:
  address: %s
server:
  accessLog: false
listeners:
  - name: web
    address: %s
routes:
  - name: all
    backends: [{cluster: up}]
clusters:
  - name: up
    endpoints: [{address: "%s"}]
steering:
  enabled: true
  handoverSocket: %s
  handoverTimeout: 1s
`, admin, web, up, filepath.Join(tmp, "handover.sock"))
	cfgPath := filepath.Join(tmp, "edge-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agents := newNetnsAgents(t, h.Name, cfgPath, dir, admin)
	p := agents.start(0)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fetch(c, "http://"+web.String()+"/", "upstream")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic served while the admin address is taken: %v\n%s", err, p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(p.Tail(50), "admin address still taken") }) {
		t.Fatalf("no log about the admin address:\n%s", p.Tail(20))
	}
	squatter.Close()
	agents.waitReady(p)
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
