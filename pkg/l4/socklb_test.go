package l4

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/netnstest"
	"github.com/edge-agent/edge-agent/pkg/config"
)

// The child side of TestSocketLB: it joins the cgroup, then connects to
// the VIP as any process on the node would.
func TestSocketLBChild(t *testing.T) {
	cg, vipAddr := os.Getenv("EA_SOCKLB_CGROUP"), os.Getenv("EA_SOCKLB_VIP")
	if cg == "" {
		t.Skip("run by TestSocketLB")
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", vipAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
	body, _ := io.ReadAll(c)
	// Go fills RemoteAddr with getpeername after connecting.
	want := os.Getenv("EA_SOCKLB_WANT")
	if want == "" {
		want = "from-backend"
	}
	fmt.Printf("RESULT peer=%s backend=%v\n", c.RemoteAddr(), strings.Contains(string(body), want))
}

// testCgroup creates a cgroup v2 directory for one test.
func testCgroup(t *testing.T) string {
	t.Helper()
	root, err := CgroupV2Root()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cg := filepath.Join(root, fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(cg) })
	return cg
}

// The agent's path: l4.socketLB in the config makes the manager attach
// the cgroup programs; a process in that cgroup on the node connects to
// the VIP and reaches a backend directly, and disabling detaches them.
func TestL4ManagerSocketLB(t *testing.T) {
	w := newLBWorld(t)
	cg := testCgroup(t)
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	t.Cleanup(func() { _ = Cleanup(pinDir) })
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), pinDir)
	t.Cleanup(func() { _ = m.Close() })
	vip := netip.AddrPortFrom(w.topo.VIP, 80)
	cfg := config.L4{Interfaces: w.topo.NodeLinks[:1], SocketLB: config.SocketLB{Enabled: true, Cgroup: cg}}
	cfg.Services = []config.L4Service{{Name: "web", Address: vip.String(), Protocol: config.L4TCP}}
	for _, b := range w.topo.Backends {
		cfg.Services[0].Backends = append(cfg.Services[0].Backends, config.Endpoint{Address: netip.AddrPortFrom(b.Addr, httpPort).String(), Weight: 1})
	}
	apply := func() {
		t.Helper()
		if err := w.topo.Node.Run(func() error { return m.Apply(cfg) }); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	apply()
	if st := m.Status(); st.SocketLBCgroup != cg {
		t.Fatalf("status %+v, want socket LB on %s", st, cg)
	}
	// A process on the node (its network namespace) inside the cgroup.
	cmd := exec.Command("nsenter", "--net="+netnstest.NetnsPath(w.topo.Node.Name), os.Args[0], "-test.run=^TestSocketLBChild$", "-test.v")
	cmd.Env = append(os.Environ(), "EA_SOCKLB_CGROUP="+cg, "EA_SOCKLB_VIP="+vip.String(), "EA_SOCKLB_WANT=backend-")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "RESULT peer="+vip.String()+" backend=true") {
		t.Fatalf("child inside the cgroup: %s", out)
	}
	links := filepath.Join(pinDir, "links", "cgroup-connect4")
	if _, err := os.Stat(links); err != nil {
		t.Fatalf("no pinned cgroup link: %v", err)
	}
	cfg.SocketLB.Enabled = false
	apply()
	if _, err := os.Stat(links); !os.IsNotExist(err) {
		t.Fatalf("cgroup link still pinned after disabling: %v", err)
	}
	if st := m.Status(); st.SocketLBCgroup != "" {
		t.Fatalf("status %+v after disabling", st)
	}
	// Without the programs the node's own connect to the VIP gets nowhere
	// (the TC program balances arriving packets only).
	cmd = exec.Command(cmd.Path, cmd.Args[1:]...)
	cmd.Env = append(os.Environ(), "EA_SOCKLB_CGROUP="+cg, "EA_SOCKLB_VIP="+vip.String(), "EA_SOCKLB_WANT=backend-")
	if out, err := cmd.CombinedOutput(); err == nil && strings.Contains(string(out), "backend=true") {
		t.Fatalf("child reached a backend with socket LB detached: %s", out)
	}
}

func TestSocketLB(t *testing.T) {
	requireBPF(t)
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from-backend")
	})}
	go srv.Serve(backend)
	t.Cleanup(func() { srv.Close() })

	d := testDatapath(t) // creates the shared maps
	// A loopback VIP with nothing listening: outside the cgroup a connect
	// is refused at once, and no packet leaves the machine.
	vipAP := netip.MustParseAddrPort("127.77.0.1:80")
	be := netip.MustParseAddrPort(backend.Addr().String())
	if err := d.Sync([]Service{{Name: "web", VIP: vipAP.Addr(), Port: vipAP.Port(), Proto: ProtoTCP, Backends: []Backend{{Addr: be, Weight: 1}}}}); err != nil {
		t.Fatal(err)
	}
	cg := testCgroup(t)
	s, err := LoadSocketLB(d.PinDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AttachCgroup(cg); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestSocketLBChild$", "-test.v")
	cmd.Env = append(os.Environ(), "EA_SOCKLB_CGROUP="+cg, "EA_SOCKLB_VIP="+vipAP.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "RESULT peer="+vipAP.String()+" backend=true") {
		t.Fatalf("child inside the cgroup: %s", out)
	}
	// This process is outside the cgroup: its connect goes to the VIP.
	if _, err := net.DialTimeout("tcp", vipAP.String(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("outside the cgroup: %v, want connection refused", err)
	}
}
