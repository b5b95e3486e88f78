// Package netnstest gives tests "remote hosts": network namespaces reached
// from the test's own (root) namespace over a veth pair.
//
// Backends in Kubernetes EndpointSlices may not use 127.0.0.0/8, so tests
// need backends on ordinary addresses (10.x.y.z) that exist only inside a
// namespace, while the proxy under test runs in the test process in the root
// namespace and dials them. Everything is done with netlink and per-thread
// setns, never with `ip netns exec`, which remounts /sys and hides
// /sys/fs/bpf and cgroup2 from the process (see DESIGN.md).
//
// Tests using this package must run as root.
package netnstest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// netnsDir is where named namespaces live, the same place `ip netns`
	// and the netns package use, so `ip netns list` shows ours for debugging.
	netnsDir = "/run/netns"
	// peerName is the namespace end of the veth. It is created directly
	// inside the namespace, so it cannot clash with root-namespace names.
	peerName = "eth0"
	// maxAddrs: .2 to .254 of the /24; .1 is the root end, .255 broadcast.
	maxAddrs = 253
	// maxNameAttempts bounds retries when a name is already taken, e.g. by
	// a namespace left behind by a killed process that had the same pid.
	maxNameAttempts = 16
	// carrierTimeout bounds the wait for the veth to come up; it normally
	// takes well under a second (see waitCarrier).
	carrierTimeout = 5 * time.Second
)

// errNameTaken means a namespace or link with the chosen name already
// exists; it belongs to someone else, so New picks another name.
var errNameTaken = errors.New("name already taken")

// Host is a network namespace linked to the root namespace by one veth pair.
type Host struct {
	Name     string       // netns name; also the name of the root end of the veth
	RootAddr netip.Addr   // the root-namespace end of the veth (x.y.z.1)
	Addrs    []netip.Addr // addresses inside the namespace (x.y.z.2, .3, ...)
}

// New creates a namespace with n (>=1) addresses inside it and registers
// t.Cleanup that deletes the namespace and the veth by name.
//
// The root end of the veth gets x.y.z.1/24, so the kernel adds the connected
// route the root namespace uses to reach the Host. Inside, lo is up, eth0
// holds x.y.z.2 ... x.y.z.(n+1)/24, and the default route points at x.y.z.1,
// so the namespace can answer any root-namespace address.
func New(t testing.TB, n int) *Host {
	t.Helper()
	if n < 1 || n > maxAddrs {
		t.Fatalf("netnstest.New: n = %d, want 1..%d", n, maxAddrs)
	}
	h, err := newHost(t, n)
	if err != nil {
		t.Fatalf("netnstest.New: %v", err)
	}
	return h
}

func newHost(t testing.TB, n int) (*Host, error) {
	// Hold the lock from choosing a subnet until its root address exists,
	// so that concurrent test processes never pick the same /24. create
	// drops it early, once the address is in place.
	unlockFn, err := lockSubnets()
	if err != nil {
		return nil, err
	}
	unlock := sync.OnceFunc(unlockFn)
	defer unlock()

	for range maxNameAttempts {
		id := nextID()
		subnet, err := freeSubnet(id)
		if err != nil {
			return nil, err
		}
		h := layout(hostName(id), subnet, n)
		r := &resources{name: h.Name}
		// Registered before anything exists, so a failure or panic half-way
		// still removes whatever was created. release is idempotent.
		t.Cleanup(func() {
			if err := r.release(); err != nil {
				t.Errorf("netnstest: cleanup of %s: %v", r.name, err)
			}
		})
		err = h.create(r, unlock)
		if err == nil {
			return h, nil
		}
		if relErr := r.release(); relErr != nil {
			err = errors.Join(err, relErr)
		}
		if !errors.Is(err, errNameTaken) {
			return nil, fmt.Errorf("create host %s (%s): %w", h.Name, subnet, err)
		}
	}
	return nil, fmt.Errorf("no free host name after %d attempts", maxNameAttempts)
}

// layout assigns .1 to the root end and .2 ... .(n+1) to the namespace.
func layout(name string, subnet netip.Prefix, n int) *Host {
	h := &Host{Name: name, RootAddr: subnet.Addr().Next()}
	a := h.RootAddr
	for range n {
		a = a.Next()
		h.Addrs = append(h.Addrs, a)
	}
	return h
}

func (h *Host) path() string { return filepath.Join(netnsDir, h.Name) }

// create builds the namespace and the veth, recording in r each thing it
// created so that r.release removes exactly those and nothing else. It
// calls subnetClaimed once the root address holds the subnet, so other
// processes need not wait for the rest.
func (h *Host) create(r *resources, subnetClaimed func()) error {
	// Claim the name with O_EXCL before creating anything: if the file
	// exists, the namespace is not ours and we must not touch it.
	f, err := os.OpenFile(h.path(), os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("netns %s: %w", h.Name, errNameTaken)
	}
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	r.nsFile = true

	// A fresh thread unshares into a new namespace and bind-mounts it onto
	// the file; the mount keeps the namespace alive after the thread goes
	// back to the root namespace.
	err = onNetnsThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
		if err := unix.Mount("/proc/thread-self/ns/net", h.path(), "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns: %w", err)
		}
		r.nsMounted = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("create netns: %w", err)
	}

	ns, err := netns.GetFromPath(h.path())
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer ns.Close()

	attrs := netlink.NewLinkAttrs()
	attrs.Name = h.Name
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: peerName, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("link %s: %w", h.Name, errNameTaken)
		}
		return fmt.Errorf("add veth: %w", err)
	}
	r.link = true

	if err := h.setupRoot(); err != nil {
		return fmt.Errorf("root side: %w", err)
	}
	subnetClaimed()

	nh, err := netlink.NewHandleAt(ns) // sockets in the namespace: no thread switching
	if err != nil {
		return fmt.Errorf("netlink handle in netns: %w", err)
	}
	defer nh.Close()
	if err := h.setupInside(nh); err != nil {
		return fmt.Errorf("namespace side: %w", err)
	}
	if err := h.waitCarrier(nh); err != nil {
		return err
	}
	return nil
}

// waitCarrier waits until both veth ends are operationally up.
//
// The end brought up first has no carrier at that moment (its peer is
// down), so the kernel leaves its transmit queue on the "noop" qdisc, which
// drops everything, until the linkwatch worker sees the carrier come on.
// Linkwatch batches events and can lag by up to a second when links come
// and go quickly, as they do in tests: measured here, half the first
// connections lost their ARP request (kfree_skb QDISC_DROP) and took 1 s.
// Linkwatch sets the operational state in the same pass that activates the
// queue, so "up" on both ends means packets flow.
func (h *Host) waitCarrier(nh *netlink.Handle) error {
	deadline := time.Now().Add(carrierTimeout)
	for {
		root, err := netlink.LinkByName(h.Name)
		if err != nil {
			return err
		}
		peer, err := nh.LinkByName(peerName)
		if err != nil {
			return err
		}
		rs, ps := root.Attrs().OperState, peer.Attrs().OperState
		if rs == netlink.OperUp && ps == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth not up after %v: %s is %s, %s is %s", carrierTimeout, h.Name, rs, peerName, ps)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *Host) setupRoot() error {
	link, err := netlink.LinkByName(h.Name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr24(h.RootAddr)); err != nil {
		return fmt.Errorf("add %s: %w", h.RootAddr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", h.Name, err)
	}
	return nil
}

func (h *Host) setupInside(nh *netlink.Handle) error {
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	peer, err := nh.LinkByName(peerName)
	if err != nil {
		return err
	}
	for _, a := range h.Addrs {
		if err := nh.AddrAdd(peer, addr24(a)); err != nil {
			return fmt.Errorf("add %s: %w", a, err)
		}
	}
	if err := nh.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", peerName, err)
	}
	// Without a default route the namespace could only answer addresses in
	// its own /24; with it, replies to any root-namespace address go back
	// over the veth.
	route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IP(h.RootAddr.AsSlice())}
	if err := nh.RouteAdd(route); err != nil {
		return fmt.Errorf("add default route via %s: %w", h.RootAddr, err)
	}
	return nil
}

func addr24(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}}
}

// resources records what New created, so cleanup deletes only those, by
// name, whatever state a failed or panicking test left them in.
type resources struct {
	name      string
	nsFile    bool // we created netnsDir/name
	nsMounted bool // we bind-mounted a namespace onto it
	link      bool // we created the root end of the veth
}

// release deletes what was created and forgets it, so it is safe to call
// more than once. It keeps going after an error to free as much as it can.
func (r *resources) release() error {
	var errs []error
	if r.link {
		// Deleting one end of a veth deletes both; doing it explicitly (not
		// by dropping the namespace) makes it synchronous.
		if err := deleteLink(r.name); err != nil {
			errs = append(errs, err)
		} else {
			r.link = false
		}
	}
	path := filepath.Join(netnsDir, r.name)
	if r.nsMounted {
		// MNT_DETACH: a listener still open in the namespace holds a
		// reference to it; the kernel frees the namespace when that closes.
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", path, err))
		} else {
			r.nsMounted = false
		}
	}
	if r.nsFile && !r.nsMounted {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove netns file: %w", err))
		} else {
			r.nsFile = false
		}
	}
	return errors.Join(errs...)
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil // already gone (the test deleted it): nothing to do
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}
