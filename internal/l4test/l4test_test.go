package l4test_test

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
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/edge-agent/edge-agent/internal/l4test"
)

const ioTimeout = 5 * time.Second

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

// TestTopology builds three backends and checks plain routing through the
// node (no eBPF): the client reaches every backend over TCP, UDP and HTTP,
// and each backend sees the client's own address. The VIP goes nowhere.
// After cleanup, nothing is left.
func TestTopology(t *testing.T) {
	requireRoot(t)
	rootForward := readFile(t, "/proc/sys/net/ipv4/ip_forward")
	var names []string
	var held []netns.NsHandle // keep the namespaces alive to look inside after cleanup
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()

	t.Run("build", func(t *testing.T) {
		topo := l4test.New(t, 3)
		checkLayout(t, topo, 3)
		for _, ns := range all(topo) {
			names = append(names, ns.Name)
			h, err := netns.GetFromPath("/run/netns/" + ns.Name)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		t.Logf("client %s %s, VIP %s, node links %v %v", topo.Client.Name, topo.Client.Addr, topo.VIP, topo.NodeLinks, topo.NodeAddrs)

		for i, b := range topo.Backends {
			ln := b.Listen(t, netip.AddrPortFrom(b.Addr, 0).String())
			serveTCP(ln)
			c, err := topo.Client.Dial("tcp", ln.Addr().String(), ioTimeout)
			if err != nil {
				t.Fatalf("backend %d: %v", i+1, err)
			}
			seen := readAll(t, c)
			checkPeers(t, fmt.Sprintf("backend %d tcp", i+1), c, seen, topo.Client.Addr, b.Addr)

			pc := b.ListenUDP(t, netip.AddrPortFrom(b.Addr, 0).String())
			serveUDP(pc)
			u, err := topo.Client.Dial("udp", pc.LocalAddr().String(), ioTimeout)
			if err != nil {
				t.Fatalf("backend %d: %v", i+1, err)
			}
			seen = udpRoundTrip(t, u)
			checkPeers(t, fmt.Sprintf("backend %d udp", i+1), u, seen, topo.Client.Addr, b.Addr)
		}

		// HTTP through HTTPClient, on the last backend.
		b := topo.Backends[len(topo.Backends)-1]
		ln := b.Listen(t, netip.AddrPortFrom(b.Addr, 0).String())
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.RemoteAddr)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		for _, keepAlive := range []bool{false, true} {
			resp, err := topo.Client.HTTPClient(keepAlive).Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("GET (keepAlive %v): %v", keepAlive, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := netip.MustParseAddrPort(string(body)).Addr(); got != topo.Client.Addr {
				t.Errorf("HTTP: backend saw client %s, want %s", got, topo.Client.Addr)
			}
		}

		checkVIPUnreachable(t, topo)
		checkNodeSysctls(t, topo)
		checkTxChecksum(t, topo, false)
	})

	if got := readFile(t, "/proc/sys/net/ipv4/ip_forward"); got != rootForward {
		t.Errorf("root namespace ip_forward changed from %s to %s", rootForward, got)
	}
	for _, name := range names {
		assertNetnsGone(t, name)
	}
	// The veths were deleted by name, not left to the namespaces' teardown:
	// the namespaces we still hold have nothing but lo.
	for i, h := range held {
		nh, err := netlink.NewHandleAt(h)
		if err != nil {
			t.Fatal(err)
		}
		links, err := nh.LinkList()
		nh.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				t.Errorf("%s: link %s still exists after cleanup", names[i], l.Attrs().Name)
			}
		}
	}
}

// TestKeepTxChecksum checks that DisableTxChecksum: false leaves offload on.
func TestKeepTxChecksum(t *testing.T) {
	requireRoot(t)
	topo := l4test.NewWithOptions(t, 1, l4test.Options{DisableTxChecksum: false})
	checkTxChecksum(t, topo, true)
}

// TestTwoTopologiesCoexist builds two topologies side by side in one test
// and uses both.
func TestTwoTopologiesCoexist(t *testing.T) {
	requireRoot(t)
	a, b := l4test.New(t, 1), l4test.New(t, 2)
	seen := map[string]bool{}
	for _, topo := range []*l4test.Topology{a, b} {
		for _, ns := range all(topo) {
			if seen[ns.Name] {
				t.Errorf("namespace name %s used twice", ns.Name)
			}
			seen[ns.Name] = true
		}
	}
	for _, topo := range []*l4test.Topology{a, b} {
		checkEcho(t, topo)
	}
}

// TestParallelTopologies builds topologies from parallel tests, as t.Parallel
// tests and concurrent packages will.
func TestParallelTopologies(t *testing.T) {
	requireRoot(t)
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			topo := l4test.New(t, 2)
			checkLayout(t, topo, 2)
			checkEcho(t, topo)
		})
	}
}

// TestCleanupAfterPanic runs a test that panics with a topology in a child
// process, then checks that t.Cleanup still removed every namespace.
func TestCleanupAfterPanic(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicChild$", "-test.v")
	cmd.Env = append(os.Environ(), "L4TEST_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child did not fail:\n%s", out)
	}
	if !bytes.Contains(out, []byte("panic: on purpose")) {
		t.Fatalf("child did not panic as planned:\n%s", out)
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "NETNS="); ok {
			names = append(names, n)
		}
	}
	if len(names) != 4 {
		t.Fatalf("child reported %d namespaces, want 4:\n%s", len(names), out)
	}
	for _, name := range names {
		assertNetnsGone(t, name)
	}
}

func TestPanicChild(t *testing.T) {
	if os.Getenv("L4TEST_PANIC_CHILD") == "" {
		t.Skip("run by TestCleanupAfterPanic")
	}
	topo := l4test.New(t, 2)
	topo.Backends[0].Listen(t, netip.AddrPortFrom(topo.Backends[0].Addr, 0).String())
	for _, ns := range all(topo) {
		fmt.Printf("NETNS=%s\n", ns.Name)
	}
	panic("on purpose")
}

func all(topo *l4test.Topology) []*l4test.NS {
	return append([]*l4test.NS{topo.Node, topo.Client}, topo.Backends...)
}

func checkLayout(t *testing.T, topo *l4test.Topology, n int) {
	t.Helper()
	if len(topo.Backends) != n || len(topo.NodeLinks) != n+1 || len(topo.NodeAddrs) != n+1 {
		t.Fatalf("%d backends, %d node links, %d node addresses; want %d, %d, %d",
			len(topo.Backends), len(topo.NodeLinks), len(topo.NodeAddrs), n, n+1, n+1)
	}
	subnets := map[netip.Prefix]bool{}
	for i, peer := range append([]*l4test.NS{topo.Client}, topo.Backends...) {
		node := topo.NodeAddrs[i]
		p := netip.PrefixFrom(node, 24).Masked()
		if node.As4()[0] != 10 || node.As4()[3] != 1 || netip.MustParsePrefix("10.96.0.0/12").Overlaps(p) {
			t.Errorf("node address %s: want 10.x.y.1 outside 10.96.0.0/12", node)
		}
		if peer.Addr != node.Next() {
			t.Errorf("%s: address %s, want %s", peer.Name, peer.Addr, node.Next())
		}
		if subnets[p] {
			t.Errorf("subnet %s used twice", p)
		}
		subnets[p] = true
	}
	vipNet := netip.PrefixFrom(topo.VIP, 24).Masked()
	if subnets[vipNet] || topo.VIP.As4()[0] != 10 {
		t.Errorf("VIP %s: want 10.x.y.z in a /24 of its own", topo.VIP)
	}
}

// checkEcho dials every backend from the client over TCP.
func checkEcho(t *testing.T, topo *l4test.Topology) {
	t.Helper()
	for i, b := range topo.Backends {
		ln := b.Listen(t, netip.AddrPortFrom(b.Addr, 0).String())
		serveTCP(ln)
		c, err := topo.Client.Dial("tcp", ln.Addr().String(), ioTimeout)
		if err != nil {
			t.Fatalf("backend %d: %v", i+1, err)
		}
		checkPeers(t, fmt.Sprintf("%s tcp", b.Name), c, readAll(t, c), topo.Client.Addr, b.Addr)
	}
}

// checkVIPUnreachable: without eBPF on the node, nothing answers the VIP.
func checkVIPUnreachable(t *testing.T, topo *l4test.Topology) {
	t.Helper()
	vip := netip.AddrPortFrom(topo.VIP, 80).String()
	start := time.Now()
	c, err := topo.Client.Dial("tcp", vip, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("TCP to VIP %s connected without a load balancer", vip)
	}
	t.Logf("TCP to VIP after %v: %v", time.Since(start).Round(time.Millisecond), err)

	u, err := topo.Client.Dial("udp", vip, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := u.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := u.Read(buf); err == nil {
		t.Fatalf("UDP to VIP %s answered %q without a load balancer", vip, buf[:n])
	}
}

func checkNodeSysctls(t *testing.T, topo *l4test.Topology) {
	t.Helper()
	want := map[string]string{"ip_forward": "1", "conf/all/rp_filter": "0", "conf/default/rp_filter": "0"}
	for _, l := range topo.NodeLinks {
		want["conf/"+l+"/rp_filter"] = "0"
	}
	err := topo.Node.Run(func() error {
		for key, val := range want {
			b, err := os.ReadFile("/proc/sys/net/ipv4/" + key)
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(b)); got != val {
				return fmt.Errorf("net.ipv4.%s = %s, want %s", strings.ReplaceAll(key, "/", "."), got, val)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("node %s: %v", topo.Node.Name, err)
	}
}

// checkTxChecksum checks TX checksum offload on every veth end with the
// ioctl, and on the client's end with the ethtool binary too, run from a
// thread switched into the client's namespace (a child forked from a
// locked thread inherits that thread's network namespace).
func checkTxChecksum(t *testing.T, topo *l4test.Topology, wantOn bool) {
	t.Helper()
	check := func(ns *l4test.NS, dev string) {
		var on bool
		err := ns.Run(func() (err error) {
			on, err = l4test.TxChecksum(dev)
			return err
		})
		if err != nil {
			t.Errorf("%s %s: %v", ns.Name, dev, err)
		} else if on != wantOn {
			t.Errorf("%s %s: tx checksum offload on = %v, want %v", ns.Name, dev, on, wantOn)
		}
	}
	for _, l := range topo.NodeLinks {
		check(topo.Node, l)
	}
	for _, ns := range append([]*l4test.NS{topo.Client}, topo.Backends...) {
		check(ns, ns.Link)
	}

	ethtool, err := exec.LookPath("ethtool")
	if err != nil {
		t.Logf("no ethtool binary; checked with the ioctl only")
		return
	}
	var out []byte
	err = topo.Client.Run(func() (err error) {
		out, err = exec.Command(ethtool, "-k", topo.Client.Link).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("ethtool -k in %s: %v\n%s", topo.Client.Name, err, out)
	}
	want := "tx-checksumming: " + map[bool]string{true: "on", false: "off"}[wantOn]
	if !bytes.Contains(out, []byte(want)) {
		t.Errorf("ethtool -k %s in %s: want %q in\n%s", topo.Client.Link, topo.Client.Name, want, out)
	}
}

// serveTCP answers every connection with the client's address as the
// server sees it, then closes it.
func serveTCP(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.RemoteAddr().String())
			c.Close()
		}
	}()
}

// serveUDP answers every datagram with its source address.
func serveUDP(pc *net.UDPConn) {
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort([]byte(from.String()), from)
		}
	}()
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", c.RemoteAddr(), err)
	}
	return string(b)
}

func udpRoundTrip(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read from %s: %v", c.RemoteAddr(), err)
	}
	return string(buf[:n])
}

// checkPeers closes c and checks both directions: the server saw the
// client's own address (source preserved through the node) and the answer
// came from the backend's address.
func checkPeers(t *testing.T, what string, c net.Conn, seen string, client, backend netip.Addr) {
	t.Helper()
	defer c.Close()
	ap, err := netip.ParseAddrPort(seen)
	if err != nil {
		t.Fatalf("%s: server answered %q, want ip:port", what, seen)
	}
	if ap.Addr() != client {
		t.Errorf("%s: server saw client %s, want %s", what, ap.Addr(), client)
	}
	if local := netip.MustParseAddrPort(c.LocalAddr().String()); local != ap {
		t.Errorf("%s: client socket is %s, server saw %s", what, local, ap)
	}
	if remote := netip.MustParseAddrPort(c.RemoteAddr().String()).Addr(); remote != backend {
		t.Errorf("%s: connected to %s, want %s", what, remote, backend)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func assertNetnsGone(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/run/netns/%s: %v, want it gone", name, err)
	}
}
