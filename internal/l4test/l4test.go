// Package l4test builds the network an L4 load balancer test needs: a
// client, a node that forwards, and backends, each in a network namespace of
// its own, joined by veth pairs through the node.
//
//	client ns ──veth── node ns ──veth── backend1 ns
//	                      │ ─────veth── backend2 ns
//	                      └─────veth── backend3 ns
//
// Each link is a /24 of its own in 10.0.0.0/8; the node end is .1, the other
// end (always "eth0") .2. The client and every backend route everything
// through the node, so a backend answers a client's address back through the
// node (the source is preserved). The node forwards (ip_forward=1, rp_filter
// off) but has only its connected routes: a packet for the VIP, which exists
// on no interface, is dropped there (ICMP net unreachable) until an eBPF
// program on the node rewrites its destination to a backend.
//
// Nothing is created in the root namespace, and nothing here leaves the
// root mount namespace: NS.Run switches only the network namespace of one
// locked thread, so /sys/fs/bpf and cgroup2 stay visible (see DESIGN.md).
// Attach TC programs from inside Node.Run: ifindexes and device names
// resolve in the network namespace of the calling thread.
//
// Tests using this package must run as root.
package l4test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

const (
	// peerLink is the name of the non-node end of every veth.
	peerLink = "eth0"
	// maxBackends bounds n; each backend costs a namespace, a veth and a /24.
	maxBackends = 64
	// vipHost is the host part of the VIP in its own /24.
	vipHost = 100
	// maxNameAttempts bounds retries when a namespace name is taken, e.g. by
	// one left behind by a killed process that had the same pid.
	maxNameAttempts = 16
	// carrierTimeout bounds the wait for the veths to come up.
	carrierTimeout = 5 * time.Second
)

var seq atomic.Uint64

// NS is one network namespace of the topology.
type NS struct {
	Name string     // netns name (/run/netns/Name)
	Addr netip.Addr // its address on its link to the node; unset for the node
	// Link is its interface facing the node ("eth0"); empty for the node,
	// whose interfaces are Topology.NodeLinks.
	Link string
}

// Topology is what New built.
type Topology struct {
	Client   *NS
	Node     *NS
	Backends []*NS
	VIP      netip.Addr // on no interface; the client routes it to the node
	// NodeLinks are the node-side interface names: NodeLinks[0] faces the
	// client, NodeLinks[1..n] face backends 1..n.
	NodeLinks []string
	NodeAddrs []netip.Addr // node's address on each of those links (same order)
}

// Options changes how New builds the topology. Start from DefaultOptions.
type Options struct {
	// DisableTxChecksum turns TX checksum offload off on every veth end
	// (node, client and backend sides), like `ethtool -K DEV tx off`.
	// Needed for TCP whenever XDP redirect is involved (see DESIGN.md);
	// default true.
	DisableTxChecksum bool
}

// DefaultOptions are the options New uses.
func DefaultOptions() Options { return Options{DisableTxChecksum: true} }

// New builds the topology with n (>= 1) backends using DefaultOptions and
// registers t.Cleanup that deletes every link and namespace by name.
func New(t testing.TB, n int) *Topology {
	t.Helper()
	return NewWithOptions(t, n, DefaultOptions())
}

// NewWithOptions is New with explicit options.
func NewWithOptions(t testing.TB, n int, opts Options) *Topology {
	t.Helper()
	if n < 1 || n > maxBackends {
		t.Fatalf("l4test.New: n = %d, want 1..%d", n, maxBackends)
	}
	topo, err := build(t, n, opts)
	if err != nil {
		t.Fatalf("l4test.New: %v", err)
	}
	return topo
}

func build(t testing.TB, n int, opts Options) (*Topology, error) {
	// One /24 per link plus one for the VIP. They exist only inside our
	// namespaces, so nothing needs claiming in the root namespace.
	subnets, err := netnstest.FreeSubnets(n + 2)
	if err != nil {
		return nil, err
	}
	id := seq.Add(1)
	newNS := func(role string) (*NS, error) { return createNS(t, id, role) }

	topo := &Topology{VIP: hostAddr(subnets[n+1], vipHost)}
	if topo.Node, err = newNS("node"); err != nil {
		return nil, err
	}
	if topo.Client, err = newNS("client"); err != nil {
		return nil, err
	}
	for i := range n {
		b, err := newNS("backend" + strconv.Itoa(i+1))
		if err != nil {
			return nil, err
		}
		topo.Backends = append(topo.Backends, b)
	}
	peers := append([]*NS{topo.Client}, topo.Backends...)
	for i, p := range peers {
		topo.NodeLinks = append(topo.NodeLinks, nodeLinkName(i))
		topo.NodeAddrs = append(topo.NodeAddrs, hostAddr(subnets[i], 1))
		p.Addr, p.Link = hostAddr(subnets[i], 2), peerLink
	}

	// Registered after the namespaces, so it runs before their cleanup:
	// deleting the node end of a veth deletes both ends, synchronously,
	// while dropping the namespace would leave it to the kernel, later.
	nodeName := topo.Node.Name
	links := topo.NodeLinks
	t.Cleanup(func() {
		if err := deleteLinks(nodeName, links); err != nil {
			t.Errorf("l4test: cleanup of links in %s: %v", nodeName, err)
		}
	})

	handles, err := openHandles(append([]*NS{topo.Node}, peers...))
	if err != nil {
		return nil, err
	}
	defer handles.close()
	node := handles.h[topo.Node.Name]
	if err := setLinkUp(node, "lo"); err != nil {
		return nil, fmt.Errorf("%s: %w", topo.Node.Name, err)
	}
	for i, p := range peers {
		if err := connect(handles, topo.Node, topo.NodeLinks[i], topo.NodeAddrs[i], p, opts); err != nil {
			return nil, fmt.Errorf("link %s to %s: %w", topo.Node.Name, p.Name, err)
		}
	}
	if err := setupForwarding(topo.Node, topo.NodeLinks); err != nil {
		return nil, fmt.Errorf("%s: %w", topo.Node.Name, err)
	}
	for i, p := range peers {
		if err := waitCarrier(handles.h[topo.Node.Name], topo.NodeLinks[i], handles.h[p.Name], p.Link); err != nil {
			return nil, fmt.Errorf("link %s to %s: %w", topo.Node.Name, p.Name, err)
		}
	}
	return topo, nil
}

// createNS creates the namespace for role, named "eat<pid>-lb<id>-<role>"
// (pid and id in base 36): "eat" like netnstest's hosts, unique across
// processes by the pid and within one by id. A name already taken (a
// leftover of a dead process with the same pid) is retried with a new id.
func createNS(t testing.TB, id uint64, role string) (*NS, error) {
	for range maxNameAttempts {
		name := "eat" + strconv.FormatInt(int64(os.Getpid()), 36) + "-lb" + strconv.FormatUint(id, 36) + "-" + role
		err := netnstest.NewNetns(t, name)
		if err == nil {
			return &NS{Name: name}, nil
		}
		if !errors.Is(err, netnstest.ErrNameTaken) {
			return nil, err
		}
		id = seq.Add(1)
	}
	return nil, fmt.Errorf("no free netns name for %s after %d attempts", role, maxNameAttempts)
}

// nodeLinkName names the node's interface to peer i: "client" for i == 0,
// "backend<i>" after. Only the node holds these names, so they are
// unique without any pid or id.
func nodeLinkName(i int) string {
	if i == 0 {
		return "client"
	}
	return "backend" + strconv.Itoa(i)
}

// hostAddr is the address with host part h in the /24 p.
func hostAddr(p netip.Prefix, h byte) netip.Addr {
	a := p.Masked().Addr().As4()
	a[3] = h
	return netip.AddrFrom4(a)
}

func addr24(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}
}

// handles holds a netlink socket and a namespace handle per namespace.
// netlink.NewHandleAt opens each socket inside its namespace, so no thread
// needs switching to configure it.
type handles struct {
	h   map[string]*netlink.Handle
	fds map[string]netns.NsHandle
}

func openHandles(nss []*NS) (*handles, error) {
	hs := &handles{h: map[string]*netlink.Handle{}, fds: map[string]netns.NsHandle{}}
	for _, ns := range nss {
		fd, err := netns.GetFromPath(netnstest.NetnsPath(ns.Name))
		if err != nil {
			hs.close()
			return nil, fmt.Errorf("open netns %s: %w", ns.Name, err)
		}
		hs.fds[ns.Name] = fd
		h, err := netlink.NewHandleAt(fd)
		if err != nil {
			hs.close()
			return nil, fmt.Errorf("netlink handle in %s: %w", ns.Name, err)
		}
		hs.h[ns.Name] = h
	}
	return hs, nil
}

func (hs *handles) close() {
	for _, h := range hs.h {
		h.Close()
	}
	for _, fd := range hs.fds {
		fd.Close()
	}
}

// connect creates the veth between the node (end nodeLink, address
// nodeAddr) and peer (end peer.Link, address peer.Addr), and sets up the
// peer: lo up and a default route via the node.
func connect(hs *handles, node *NS, nodeLink string, nodeAddr netip.Addr, peer *NS, opts Options) error {
	nh, ph := hs.h[node.Name], hs.h[peer.Name]
	// Created from the node's netlink socket, with the peer end placed
	// straight into the peer namespace: neither end ever exists in the root
	// namespace, so neither name can clash with anything there.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = nodeLink
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: peer.Link, PeerNamespace: netlink.NsFd(hs.fds[peer.Name])}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if opts.DisableTxChecksum {
		if err := netnstest.RunIn(node.Name, func() error { return setTxChecksum(nodeLink, false) }); err != nil {
			return err
		}
		if err := netnstest.RunIn(peer.Name, func() error { return setTxChecksum(peer.Link, false) }); err != nil {
			return err
		}
	}
	if err := addAddrUp(nh, nodeLink, nodeAddr); err != nil {
		return fmt.Errorf("%s: %w", node.Name, err)
	}
	if err := setLinkUp(ph, "lo"); err != nil {
		return fmt.Errorf("%s: %w", peer.Name, err)
	}
	if err := addAddrUp(ph, peer.Link, peer.Addr); err != nil {
		return fmt.Errorf("%s: %w", peer.Name, err)
	}
	link, err := ph.LinkByName(peer.Link)
	if err != nil {
		return fmt.Errorf("%s: %w", peer.Name, err)
	}
	// Everything, the client's VIP and the backends' replies to the client
	// included, goes to the node.
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(nodeAddr.AsSlice())}
	if err := ph.RouteAdd(route); err != nil {
		return fmt.Errorf("%s: add default route via %s: %w", peer.Name, nodeAddr, err)
	}
	return nil
}

func setLinkUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func addAddrUp(h *netlink.Handle, name string, a netip.Addr) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(link, addr24(a)); err != nil {
		return fmt.Errorf("add %s to %s: %w", a, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// setupForwarding makes the node a router: ip_forward on, and reverse-path
// filtering off everywhere (a new namespace inherits "all" and "default"
// from the root namespace, where rp_filter may well be 1 or 2; the value
// that applies to an interface is the larger of "all" and its own).
//
// /proc/sys/net shows the network namespace of the thread that opens a
// file, so the writes happen on a thread switched into the node. Before
// writing, it checks that it really sees the node's interfaces there, so a
// kernel that behaved otherwise would fail here rather than turn on
// forwarding in the root namespace.
func setupForwarding(node *NS, links []string) error {
	return netnstest.RunIn(node.Name, func() error {
		if err := checkSysctlView(links); err != nil {
			return err
		}
		writes := []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter", "net/ipv4/conf/lo/rp_filter"}
		for _, l := range links {
			writes = append(writes, "net/ipv4/conf/"+l+"/rp_filter")
		}
		for _, key := range writes {
			val := "0"
			if key == "net/ipv4/ip_forward" {
				val = "1"
			}
			if err := writeSysctl(key, val); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkSysctlView checks that /proc/sys/net/ipv4/conf lists exactly the
// node's interfaces, i.e. that this thread sees the node's sysctls.
func checkSysctlView(links []string) error {
	entries, err := os.ReadDir("/proc/sys/net/ipv4/conf")
	if err != nil {
		return err
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := append([]string{"all", "default", "lo"}, links...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("/proc/sys/net/ipv4/conf lists %v, want the node's %v: refusing to write sysctls", got, want)
	}
	return nil
}

func writeSysctl(key, val string) error {
	path := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), val, err)
	}
	return nil
}

// waitCarrier waits until both ends of a veth are operationally up. Until
// the kernel's linkwatch worker has seen the carrier, the end brought up
// first transmits into the "noop" qdisc, which drops everything, and
// linkwatch can lag by a second when links come and go quickly (see
// netnstest's waitCarrier for the measurement).
func waitCarrier(h1 *netlink.Handle, name1 string, h2 *netlink.Handle, name2 string) error {
	deadline := time.Now().Add(carrierTimeout)
	for {
		l1, err := h1.LinkByName(name1)
		if err != nil {
			return err
		}
		l2, err := h2.LinkByName(name2)
		if err != nil {
			return err
		}
		s1, s2 := l1.Attrs().OperState, l2.Attrs().OperState
		if s1 == netlink.OperUp && s2 == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth not up after %v: %s is %s, %s is %s", carrierTimeout, name1, s1, name2, s2)
		}
		time.Sleep(time.Millisecond)
	}
}

// deleteLinks deletes the node's ends of the veths by name (which deletes
// the peer ends too). Links already gone are fine, and so is a node
// namespace that was never created.
func deleteLinks(node string, links []string) error {
	fd, err := netns.GetFromPath(netnstest.NetnsPath(node))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open netns: %w", err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	var errs []error
	for _, name := range links {
		link, err := h.LinkByName(name)
		if err != nil {
			if _, ok := errors.AsType[netlink.LinkNotFoundError](err); !ok {
				errs = append(errs, fmt.Errorf("find link %s: %w", name, err))
			}
			continue
		}
		if err := h.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
