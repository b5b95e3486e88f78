package l4

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/internal/l4test"
)

// A Service switches between L7 (the node's proxy socket terminates its
// connections) and L4 (the TC program balances them over backends) without
// breaking a connection: each finishes on the data path it started on, and
// new connections take the new mode.
//
// The VIP is an address of the node (on its lo), so a proxy-like listener
// on the node serves it in L7 mode. Every listener answers each line with
// its name, so every exchange says which data path carried it.
func TestModeSwitchKeepsEstablishedConnections(t *testing.T) {
	for _, snat := range []bool{false, true} {
		t.Run(fmt.Sprintf("snat=%v", snat), func(t *testing.T) { testModeSwitch(t, snat) })
	}
}

const nodeName = "node"

func testModeSwitch(t *testing.T, snat bool) {
	requireBPF(t)
	w := &lbWorld{t: t, topo: l4test.New(t, 2)}
	topo := w.topo
	err := topo.Node.Run(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: topo.VIP.AsSlice(), Mask: net.CIDRMask(32, 32)}})
	})
	if err != nil {
		t.Fatalf("VIP on the node's lo: %v", err)
	}
	w.d = testDatapath(t)
	w.attach(w.d)
	vipPort := netip.AddrPortFrom(topo.VIP, 80)
	serveLines(t, topo.Node.Listen(t, vipPort.String()), nodeName)
	var backends []Backend
	for i, b := range topo.Backends {
		a := netip.AddrPortFrom(b.Addr, httpPort)
		serveLines(t, b.Listen(t, a.String()), fmt.Sprintf("backend-%d", i+1))
		backends = append(backends, Backend{Addr: a, Weight: 1})
	}
	l4 := []Service{{Name: "web", VIP: topo.VIP, Port: 80, Proto: ProtoTCP, Backends: backends, SNAT: snat}}
	localSocket := func() uint64 {
		t.Helper()
		passed, err := w.d.Pinned().Passed()
		if err != nil {
			t.Fatal(err)
		}
		return passed["local_socket"]
	}
	sync := func(svcs []Service) {
		t.Helper()
		if err := w.d.Sync(svcs); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}

	// (a) L7: no L4 service; the node's listener terminates conn A.
	a := dialLines(t, topo.Client, vipPort, 0)
	a.expect(t, "a1", nodeName)
	if n := localSocket(); n != 0 {
		t.Fatalf("L7 mode: local_socket = %d, want 0 (no lookups without a service)", n)
	}

	// (b) L4: conn A stays with the node's listener; conn B is balanced.
	sync(l4)
	for i := range 3 {
		a.expect(t, fmt.Sprintf("a2.%d", i), nodeName)
	}
	b := dialLines(t, topo.Client, vipPort, 0)
	bName := b.ask(t, "b1")
	if !strings.HasPrefix(bName, "backend-") {
		t.Fatalf("L4 mode: a new connection was answered by %q, want a backend", bName)
	}
	a.expect(t, "a2.3", nodeName)
	if n := localSocket(); n == 0 {
		t.Fatal("L4 mode: conn A went to the node's listener but local_socket is 0")
	}
	svcs, err := w.d.Pinned().Services()
	if err != nil || len(svcs) != 1 || svcs[0].Counters.NewFlows != 1 {
		t.Fatalf("L4 mode: services %+v, %v; want one service with 1 new flow (conn B only)", svcs, err)
	}
	if f := flowsFrom(t, w.d, a.local); len(f) != 0 {
		t.Fatalf("L4 mode: conntrack holds conn A (the proxy's): %+v", f)
	}
	if f := flowsFrom(t, w.d, b.local); len(f) != 1 {
		t.Fatalf("L4 mode: conntrack for conn B: %+v", f)
	}

	// (c) L7 again: conn B stays on its backend; conn C goes to the node.
	sync(nil)
	lookups := localSocket()
	for i := range 3 {
		b.expect(t, fmt.Sprintf("b2.%d", i), bName)
	}
	a.expect(t, "a3", nodeName)
	c := dialLines(t, topo.Client, vipPort, 0)
	c.expect(t, "c1", nodeName)
	b.expect(t, "b3", bName)
	if n := localSocket(); n != lookups {
		t.Fatalf("L7 mode again: local_socket %d -> %d, want no lookups without a service", lookups, n)
	}

	// (d) A new connection reusing conn B's 5-tuple is L7's: the backend
	// closes B first (so the client's port is free at once), and conn D
	// from the same port reaches the node, not B's stale conntrack entry.
	b.expect(t, "bye", bName)
	_ = b.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := b.br.ReadByte(); err != io.EOF {
		t.Fatalf("conn B after bye: %v, want EOF", err)
	}
	b.c.Close()
	if f := flowsFrom(t, w.d, b.local); len(f) != 1 || !f[0].Closing {
		t.Fatalf("conntrack for closed conn B: %+v", f)
	}
	d := dialLines(t, topo.Client, vipPort, b.local.Port())
	for i := range 2 {
		d.expect(t, fmt.Sprintf("d%d", i), nodeName)
	}
	if f := flowsFrom(t, w.d, b.local); len(f) != 0 {
		t.Fatalf("conntrack still holds conn B's entry after conn D reused its tuple: %+v", f)
	}
}

// serveLines answers every line on ln's connections with "name line", and
// closes a connection after answering "bye". Connections are closed on
// cleanup (the listener already is).
func serveLines(t *testing.T, ln net.Listener, name string) {
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					if _, err := fmt.Fprintf(c, "%s %s\n", name, s.Text()); err != nil || s.Text() == "bye" {
						return
					}
				}
			}()
		}
	}()
}

// lineConn is a client connection to the VIP exchanging lines.
type lineConn struct {
	c     net.Conn
	br    *bufio.Reader
	local netip.AddrPort
}

// dialLines connects from ns to to, from localPort if not 0 (retrying
// while the port is still held by a closing connection).
func dialLines(t *testing.T, ns *l4test.NS, to netip.AddrPort, localPort uint16) *lineConn {
	t.Helper()
	var c net.Conn
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := ns.Run(func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			d.SetMultipathTCP(false)
			if localPort != 0 {
				d.LocalAddr = &net.TCPAddr{IP: ns.Addr.AsSlice(), Port: int(localPort)}
			}
			var err error
			c, err = d.Dial("tcp4", to.String())
			return err
		})
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("dial %s from port %d: %v", to, localPort, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{c: c, br: bufio.NewReader(c), local: netip.MustParseAddrPort(c.LocalAddr().String())}
}

// ask sends line and returns the name of whoever answered it.
func (c *lineConn) ask(t *testing.T, line string) string {
	t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		t.Fatalf("conn from %s: send %q: %v", c.local, line, err)
	}
	reply, err := c.br.ReadString('\n')
	if err != nil {
		t.Fatalf("conn from %s: answer to %q: %v", c.local, line, err)
	}
	name, echoed, _ := strings.Cut(strings.TrimSuffix(reply, "\n"), " ")
	if echoed != line {
		t.Fatalf("conn from %s: answer %q to %q", c.local, reply, line)
	}
	return name
}

// expect sends line and checks that want answered it.
func (c *lineConn) expect(t *testing.T, line, want string) {
	t.Helper()
	if got := c.ask(t, line); got != want {
		t.Fatalf("conn from %s: %q answered by %s, want %s", c.local, line, got, want)
	}
}

// flowsFrom lists the conntrack entries whose source is src.
func flowsFrom(t *testing.T, d *Datapath, src netip.AddrPort) []Flow {
	t.Helper()
	flows, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	var out []Flow
	for _, f := range flows {
		if f.Src == src {
			out = append(out, f)
		}
	}
	return out
}
