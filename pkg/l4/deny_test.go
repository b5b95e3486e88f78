package l4

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/internal/l4test"
	"github.com/edge-agent/edge-agent/pkg/config"
)

// XDP return codes (uapi enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
)

func testPinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	t.Cleanup(func() {
		if err := CleanupDeny(dir); err != nil {
			t.Errorf("cleanup deny pins: %v", err)
		}
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
		}
	})
	return dir
}

func testDeny(t *testing.T) *Deny {
	t.Helper()
	requireBPF(t)
	d, err := LoadDeny(nil, testPinDir(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func prefixes(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	p, err := ParseDenyCIDRs(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runXDP(t *testing.T, d *Deny, frame []byte) uint32 {
	t.Helper()
	ret, err := d.objs.EaDeny.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret
}

// withVLAN inserts an 802.1Q tag after the MAC addresses.
func withVLAN(frame []byte) []byte {
	out := append([]byte{}, frame[:12]...)
	out = append(out, 0x81, 0x00, 0x00, 0x2a)
	return append(out, frame[12:]...)
}

func TestDenyPackets(t *testing.T) {
	d := testDeny(t)
	if err := d.Sync(prefixes(t, "203.0.113.0/24", "192.0.2.10", "198.51.100.0/25")); err != nil {
		t.Fatal(err)
	}
	from := func(src string) pkt {
		return pkt{src: netip.AddrPortFrom(netip.MustParseAddr(src), 40000), dst: backend1, proto: ProtoTCP, tcpFlags: 2}
	}
	v6 := from("203.0.113.7").build()
	v6[12], v6[13] = 0x86, 0xdd
	for _, c := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"denied /24", from("203.0.113.7").build(), xdpDrop},
		{"denied /32", from("192.0.2.10").build(), xdpDrop},
		{"next to the /32", from("192.0.2.11").build(), xdpPass},
		{"denied /25", from("198.51.100.127").build(), xdpDrop},
		{"outside the /25", from("198.51.100.128").build(), xdpPass},
		{"denied behind a VLAN tag", withVLAN(from("203.0.113.7").build()), xdpDrop},
		{"allowed behind a VLAN tag", withVLAN(from("10.9.9.9").build()), xdpPass},
		{"IPv6 ethertype", v6, xdpPass},
		{"ARP", pkt{src: netip.MustParseAddrPort("203.0.113.7:1"), dst: backend1, proto: ProtoUDP, etherType: 0x0806}.build(), xdpPass},
		{"truncated IPv4 header", from("203.0.113.7").build()[:14+19], xdpPass},
		{"truncated VLAN tag", withVLAN(from("203.0.113.7").build())[:16], xdpPass},
	} {
		if got := runXDP(t, d, c.frame); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	stats, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 3 || stats[0].Packets != 2 || stats[1].Packets != 1 || stats[2].Packets != 1 ||
		stats[1].Bytes != uint64(len(from("192.0.2.10").build())) {
		t.Fatalf("stats %+v", stats)
	}
}

func TestDenySyncDiffs(t *testing.T) {
	d := testDeny(t)
	if _, err := ParseDenyCIDRs([]string{"2001:db8::/32"}); err == nil {
		t.Fatal("IPv6 CIDR accepted")
	}
	if err := d.Sync(prefixes(t, "10.0.0.0/8", "10.1.2.3/24", "172.16.0.0/12")); err != nil {
		t.Fatal(err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Pretend every rule dropped something.
	for slot := range uint32(3) {
		per := make([]denyDenyStats, ncpu)
		per[0] = denyDenyStats{Packets: uint64(slot) + 1, Bytes: 100}
		if err := d.objs.EaDenyStats.Put(slot, per); err != nil {
			t.Fatal(err)
		}
	}
	stats, _ := d.Stats()
	if len(stats) != 3 || stats[1].CIDR.String() != "10.1.2.0/24" || stats[1].Packets != 2 {
		t.Fatalf("stats %+v", stats)
	}
	// The first rule goes: the others move up a slot and restart at 0; a
	// duplicate counts in its first slot only.
	if err := d.Sync(prefixes(t, "10.1.2.0/24", "172.16.0.0/12", "10.1.2.3/24")); err != nil {
		t.Fatal(err)
	}
	stats, err = d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleStats{{0, netip.MustParsePrefix("10.1.2.0/24"), 0, 0}, {1, netip.MustParsePrefix("172.16.0.0/12"), 0, 0}}
	if len(stats) != len(want) || stats[0] != want[0] || stats[1] != want[1] {
		t.Fatalf("after removing the first: %+v, want %+v", stats, want)
	}
	var per []denyDenyStats
	if err := d.objs.EaDenyStats.Lookup(uint32(2), &per); err != nil || per[0].Packets != 0 {
		t.Fatalf("slot 2 not reset: %+v %v", per, err)
	}
	// An unchanged sync changes nothing, counters included.
	per = make([]denyDenyStats, ncpu)
	per[0].Packets = 7
	if err := d.objs.EaDenyStats.Put(uint32(1), per); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(prefixes(t, "10.1.2.0/24", "172.16.0.0/12")); err != nil {
		t.Fatal(err)
	}
	if stats, _ := d.Stats(); len(stats) != 2 || stats[1].Packets != 7 {
		t.Fatalf("after an unchanged sync: %+v", stats)
	}
	if err := d.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if stats, _ := d.Stats(); len(stats) != 0 {
		t.Fatalf("after emptying: %+v", stats)
	}
}

// denyWorld: a client namespace ("client") and a second one ("backend1" in
// l4test's naming, used as a client here), each on its own veth to the
// node, where a TCP server listens and the deny program runs on both
// node-side veths.
type denyWorld struct {
	t       *testing.T
	topo    *l4test.Topology
	pinDir  string
	denied  *l4test.NS // its /24 is denied
	allowed *l4test.NS
	// target[ns] is the node's address on ns's link, with the server port.
	target map[*l4test.NS]netip.AddrPort
}

const denyServerPort = 9090

func newDenyWorld(t *testing.T) *denyWorld {
	requireBPF(t)
	topo := l4test.New(t, 1)
	w := &denyWorld{t: t, topo: topo, pinDir: testPinDir(t), denied: topo.Client, allowed: topo.Backends[0]}
	w.target = map[*l4test.NS]netip.AddrPort{
		w.denied:  netip.AddrPortFrom(topo.NodeAddrs[0], denyServerPort),
		w.allowed: netip.AddrPortFrom(topo.NodeAddrs[1], denyServerPort),
	}
	ln := topo.Node.Listen(t, fmt.Sprintf("0.0.0.0:%d", denyServerPort))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	return w
}

func (w *denyWorld) deniedCIDR() netip.Prefix { return netip.PrefixFrom(w.denied.Addr, 24).Masked() }

// unusedCIDR matches no address of the topology.
var unusedCIDR = netip.MustParsePrefix("192.0.2.0/24")

func (w *denyWorld) apply(m *DenyManager, cidrs ...netip.Prefix) {
	w.t.Helper()
	cfg := config.DenyList{Interfaces: w.topo.NodeLinks}
	for _, p := range cidrs {
		cfg.CIDRs = append(cfg.CIDRs, p.String())
	}
	if err := w.topo.Node.Run(func() error { return m.Apply(cfg, nil) }); err != nil {
		w.t.Fatalf("apply %v: %v", cidrs, err)
	}
}

// hello connects from ns to the node's server and reads its greeting.
func (w *denyWorld) hello(ns *l4test.NS) error {
	c, err := ns.Dial("tcp", w.target[ns].String(), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "hello "+ns.Addr.String()+":") {
		return fmt.Errorf("greeting %q", line)
	}
	return nil
}

func (w *denyWorld) expectDropped(what string) {
	w.t.Helper()
	err := w.hello(w.denied)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		w.t.Fatalf("%s: denied client: %v, want a timeout", what, err)
	}
	if err := w.hello(w.allowed); err != nil {
		w.t.Fatalf("%s: allowed client: %v", what, err)
	}
}

func (w *denyWorld) expectOpen(what string) {
	w.t.Helper()
	for _, ns := range []*l4test.NS{w.denied, w.allowed} {
		if err := w.hello(ns); err != nil {
			w.t.Fatalf("%s: %s: %v", what, ns.Name, err)
		}
	}
}

func (w *denyWorld) stats() map[netip.Prefix]RuleStats {
	w.t.Helper()
	rules, err := ReadDenyStats(w.pinDir)
	if err != nil {
		w.t.Fatalf("read deny stats: %v", err)
	}
	out := map[netip.Prefix]RuleStats{}
	for _, r := range rules {
		out[r.CIDR] = r
	}
	return out
}

// links returns the pinned deny links by interface.
func (w *denyWorld) links() map[string]DenyAttachment {
	w.t.Helper()
	var att []DenyAttachment
	err := w.topo.Node.Run(func() error {
		var err error
		att, err = DenyAttachments(w.pinDir)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]DenyAttachment{}
	for _, a := range att {
		out[a.Interface] = a
	}
	return out
}

// xdpAttached says whether an XDP program is on the node-side link.
func (w *denyWorld) xdpAttached(name string) bool {
	w.t.Helper()
	var on bool
	err := w.topo.Node.Run(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		on = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return on
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDenyListEndToEnd(t *testing.T) {
	for _, mode := range []XDPMode{XDPNative, XDPGeneric} {
		t.Run(string(mode), func(t *testing.T) { testDenyListEndToEnd(t, mode) })
	}
}

func testDenyListEndToEnd(t *testing.T, mode XDPMode) {
	w := newDenyWorld(t)
	w.expectOpen("before the deny list")

	m := NewDenyManager(quietLog(), w.pinDir)
	m.forceGeneric = mode == XDPGeneric
	t.Cleanup(func() { m.Close() })
	w.apply(m, w.deniedCIDR(), unusedCIDR)
	st := m.Status()
	if !st.Loaded || st.Rules != 2 || len(st.Interfaces) != 2 {
		t.Fatalf("status %+v", st)
	}
	for _, name := range w.topo.NodeLinks {
		if st.Interfaces[name] != mode {
			t.Fatalf("%s attached in mode %q, want %q (status %+v)", name, st.Interfaces[name], mode, st)
		}
	}
	w.expectDropped("denied")
	stats := w.stats()
	if r := stats[w.deniedCIDR()]; r.Index != 0 || r.Packets == 0 || r.Bytes < r.Packets*54 {
		t.Fatalf("denied rule counters %+v", r)
	}
	if r := stats[unusedCIDR]; r.Index != 1 || r.Packets != 0 || r.Bytes != 0 {
		t.Fatalf("unused rule counters %+v", r)
	}
	// `edge-agent bpf status` lists the XDP links with their interfaces.
	att, err := (&Pinned{dir: w.pinDir}).Attachments()
	if err != nil || len(att) != len(w.topo.NodeLinks) || att[0].Interface == 0 || !strings.HasSuffix(att[0].Pin, "-xdp") {
		t.Fatalf("attachments %+v, %v", att, err)
	}
	// The same counters as metrics.
	got := gatherDeny(t, w.pinDir)
	if got["packets,"+w.deniedCIDR().String()] != float64(stats[w.deniedCIDR()].Packets) ||
		got["bytes,"+unusedCIDR.String()] != 0 || len(got) != 4 {
		t.Fatalf("metrics %v", got)
	}

	// A restart: the Go objects go, the pins stay and keep dropping.
	before := w.links()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	w.expectDropped("with no agent running")
	m2 := NewDenyManager(quietLog(), w.pinDir)
	t.Cleanup(func() { m2.Close() })
	w.apply(m2, w.deniedCIDR(), unusedCIDR)
	after := w.links()
	for _, name := range w.topo.NodeLinks {
		b, a := before[name], after[name]
		// The same link, the new program swapped into it, the mode kept.
		if a.LinkID != b.LinkID || a.ProgramID == b.ProgramID || a.Mode != mode || m2.Status().Interfaces[name] != mode {
			t.Fatalf("%s: link before %+v, after %+v", name, b, a)
		}
	}
	dropped := w.stats()[w.deniedCIDR()].Packets
	w.expectDropped("after the restart")
	if n := w.stats()[w.deniedCIDR()].Packets; n <= dropped {
		t.Fatalf("counter after the restart %d, before %d: not carried over or not counting", n, dropped)
	}

	// Removing the CIDR lets its client through; the remaining rule moves
	// to slot 0.
	w.apply(m2, unusedCIDR)
	w.expectOpen("after removing the CIDR")
	stats = w.stats()
	if len(stats) != 1 || stats[unusedCIDR].Index != 0 || stats[unusedCIDR].Packets != 0 {
		t.Fatalf("stats after removal %+v", stats)
	}

	// Fewer interfaces: the other one is detached.
	cfg := config.DenyList{CIDRs: []string{w.deniedCIDR().String()}, Interfaces: w.topo.NodeLinks[1:]}
	if err := w.topo.Node.Run(func() error { return m2.Apply(cfg, nil) }); err != nil {
		t.Fatal(err)
	}
	if w.xdpAttached(w.topo.NodeLinks[0]) || !w.xdpAttached(w.topo.NodeLinks[1]) {
		t.Fatalf("after shrinking the interfaces: %+v", w.links())
	}
	w.expectOpen("denied CIDR on a link without the program")

	// An empty list detaches and unpins everything it pinned, by name.
	w.apply(m2)
	if st := m2.Status(); st.Loaded || len(st.Interfaces) != 0 {
		t.Fatalf("status after emptying %+v", st)
	}
	for _, name := range w.topo.NodeLinks {
		if w.xdpAttached(name) {
			t.Fatalf("XDP still attached to %s", name)
		}
	}
	if _, err := ReadDenyStats(w.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deny maps still pinned: %v", err)
	}
	if pins, _ := filepath.Glob(filepath.Join(w.pinDir, "links", "*")); len(pins) != 0 {
		t.Fatalf("links left pinned: %v", pins)
	}
	w.expectOpen("after emptying the list")
}

// A defunct pinned link (its interface was deleted) is replaced, not updated.
func TestDenyReattachesDefunctLink(t *testing.T) {
	w := newDenyWorld(t)
	m := NewDenyManager(quietLog(), w.pinDir)
	t.Cleanup(func() { m.Close() })
	w.apply(m, w.deniedCIDR())
	m.Close()
	// Simulate an interface that went away: detach the link by hand while
	// keeping its pin (a defunct XDP link reports ifindex 0).
	l, err := link.LoadPinnedLink(denyLinkPin(w.pinDir, w.topo.NodeLinks[0]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Skipf("link detach not supported: %v", err)
	}
	l.Close()
	if w.hello(w.denied) != nil {
		t.Fatal("still dropping after the link was detached")
	}
	m2 := NewDenyManager(quietLog(), w.pinDir)
	t.Cleanup(func() { m2.Close() })
	w.apply(m2, w.deniedCIDR())
	w.expectDropped("after reattaching")
}

func gatherDeny(t *testing.T, pinDir string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(NewManager(quietLog(), pinDir)))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		kind, ok := strings.CutPrefix(f.GetName(), "edge_agent_xdp_denied_")
		if !ok {
			continue
		}
		kind = strings.TrimSuffix(kind, "_total")
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "cidr" {
					got[kind+","+l.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}
