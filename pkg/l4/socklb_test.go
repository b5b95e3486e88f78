package l4

import (
	"errors"
	"fmt"
	"io"
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
	fmt.Printf("RESULT peer=%s backend=%v\n", c.RemoteAddr(), strings.Contains(string(body), "from-backend"))
}

func TestSocketLB(t *testing.T) {
	requireBPF(t)
	root, err := CgroupV2Root()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
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
	cg := filepath.Join(root, fmt.Sprintf("edge-agent-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(cg) })
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
