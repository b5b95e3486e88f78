package netnstest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

// TestServeFromNamespace serves HTTP on two of three addresses inside a Host
// and fetches from the root namespace, as the proxy under test will.
func TestServeFromNamespace(t *testing.T) {
	requireRoot(t)
	var name string
	t.Run("serve", func(t *testing.T) {
		h := netnstest.New(t, 3)
		name = h.Name
		checkLayout(t, h, 3)

		for _, a := range h.Addrs[:2] {
			ln := h.Listen(t, netip.AddrPortFrom(a, 0).String())
			serve(t, ln)
			local, remote := get(t, "http://"+ln.Addr().String()+"/")
			if local != ln.Addr().String() {
				t.Errorf("GET %s: served by %s, want %s", ln.Addr(), local, ln.Addr())
			}
			// The request must have crossed the veth, not some other path.
			if got := netip.MustParseAddrPort(remote).Addr(); got != h.RootAddr {
				t.Errorf("GET %s: client address %s, want %s", ln.Addr(), got, h.RootAddr)
			}
		}

		// The third address answers, with a reset: it exists but has no server.
		_, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addrs[2], 80).String(), 5*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s:80: %v, want connection refused", h.Addrs[2], err)
		}
	})
	assertGone(t, name)
}

// TestRunDialsFromInside dials a root-namespace listener from inside a Host.
func TestRunDialsFromInside(t *testing.T) {
	requireRoot(t)
	h := netnstest.New(t, 1)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(h.RootAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c.RemoteAddr()
		c.Close()
	}()

	err = h.Run(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("dial from inside: %v", err)
	}
	from := <-accepted
	if from == nil {
		t.Fatal("accept failed")
	}
	if got := netip.MustParseAddrPort(from.String()).Addr(); got != h.Addrs[0] {
		t.Errorf("connection came from %s, want %s", got, h.Addrs[0])
	}
}

// TestRunPanicReachesCaller checks that a panic inside Run surfaces on the
// test's goroutine, where t.Cleanup can still run, instead of killing the
// binary from Run's goroutine.
func TestRunPanicReachesCaller(t *testing.T) {
	requireRoot(t)
	h := netnstest.New(t, 1)
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "inside") {
			t.Errorf("recovered %v, want the panic from inside Run", p)
		}
	}()
	h.Run(func() error { panic("inside") })
	t.Error("Run returned after fn panicked")
}

// TestTwoHostsCoexist checks that hosts get their own names and subnets and
// that each is reached over its own veth.
func TestTwoHostsCoexist(t *testing.T) {
	requireRoot(t)
	a, b := netnstest.New(t, 1), netnstest.New(t, 2)
	checkLayout(t, a, 1)
	checkLayout(t, b, 2)
	if a.Name == b.Name {
		t.Fatalf("both hosts are named %s", a.Name)
	}
	pa, pb := netip.PrefixFrom(a.RootAddr, 24), netip.PrefixFrom(b.RootAddr, 24)
	if pa.Overlaps(pb) {
		t.Fatalf("subnets overlap: %s and %s", pa.Masked(), pb.Masked())
	}
	for _, h := range []*netnstest.Host{a, b} {
		ln := h.Listen(t, netip.AddrPortFrom(h.Addrs[0], 0).String())
		serve(t, ln)
		local, remote := get(t, "http://"+ln.Addr().String()+"/")
		if local != ln.Addr().String() {
			t.Errorf("%s: served by %s, want %s", h.Name, local, ln.Addr())
		}
		if got := netip.MustParseAddrPort(remote).Addr(); got != h.RootAddr {
			t.Errorf("%s: client address %s, want %s", h.Name, got, h.RootAddr)
		}
	}
}

// TestParallelHosts creates hosts from parallel tests, as packages and
// t.Parallel tests will, and checks each gets its own subnet and works.
func TestParallelHosts(t *testing.T) {
	requireRoot(t)
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			h := netnstest.New(t, 1)
			checkLayout(t, h, 1)
			ln := h.Listen(t, netip.AddrPortFrom(h.Addrs[0], 0).String())
			serve(t, ln)
			if local, _ := get(t, "http://"+ln.Addr().String()+"/"); local != ln.Addr().String() {
				t.Errorf("%s: served by %s, want %s", h.Name, local, ln.Addr())
			}
		})
	}
}

// TestCleanupAfterPanic runs a test that panics with a Host in a child
// process, then checks that t.Cleanup still removed the Host.
func TestCleanupAfterPanic(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicChild$", "-test.v")
	cmd.Env = append(os.Environ(), "NETNSTEST_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child did not fail:\n%s", out)
	}
	if !bytes.Contains(out, []byte("panic: on purpose")) {
		t.Fatalf("child did not panic as planned:\n%s", out)
	}
	var name string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "HOST="); ok {
			name = n
		}
	}
	if name == "" {
		t.Fatalf("child reported no host:\n%s", out)
	}
	assertGone(t, name)
}

func TestPanicChild(t *testing.T) {
	if os.Getenv("NETNSTEST_PANIC_CHILD") == "" {
		t.Skip("run by TestCleanupAfterPanic")
	}
	h := netnstest.New(t, 1)
	h.Listen(t, netip.AddrPortFrom(h.Addrs[0], 0).String())
	fmt.Printf("HOST=%s\n", h.Name)
	panic("on purpose")
}

func checkLayout(t *testing.T, h *netnstest.Host, n int) {
	t.Helper()
	if len(h.Name) > 15 {
		t.Errorf("name %q is longer than an interface name may be", h.Name)
	}
	if !h.RootAddr.Is4() || h.RootAddr.As4()[0] != 10 || h.RootAddr.As4()[3] != 1 {
		t.Errorf("RootAddr = %s, want 10.x.y.1", h.RootAddr)
	}
	if len(h.Addrs) != n {
		t.Fatalf("got %d addresses, want %d", len(h.Addrs), n)
	}
	want := h.RootAddr
	for _, a := range h.Addrs {
		want = want.Next()
		if a != want {
			t.Errorf("Addrs = %v, want consecutive addresses after %s", h.Addrs, h.RootAddr)
			break
		}
	}
}

// get fetches url with a fresh connection and returns the server's and
// the client's address as the server saw them.
func get(t *testing.T, url string) (local, remote string) {
	t.Helper()
	// A Transport of our own: no proxy from the environment, no reuse.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	local, remote, ok := strings.Cut(string(body), " ")
	if !ok {
		t.Fatalf("GET %s: body %q, want \"local remote\"", url, body)
	}
	return local, remote
}

// serve answers every request on ln with "local remote": the addresses of
// the connection as the server sees them.
func serve(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "%s %s", local, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// assertGone checks that nothing named name is left: no veth end in the
// root namespace and no namespace file.
func assertGone(t *testing.T, name string) {
	t.Helper()
	if name == "" {
		t.Fatal("no host name recorded")
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("link %s still exists after cleanup", name)
	} else if _, ok := errors.AsType[netlink.LinkNotFoundError](err); !ok {
		t.Errorf("look up link %s: %v", name, err)
	}
	if _, err := os.Stat("/var/run/netns/" + name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/var/run/netns/%s: %v, want it gone", name, err)
	}
}
