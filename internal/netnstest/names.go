package netnstest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// namePrefix marks everything this package creates ("edge-agent test").
	namePrefix = "eat"
	// maxIfName is IFNAMSIZ-1: the kernel's limit on interface names.
	maxIfName = 15
	// maxSubnetAttempts bounds the search for a free /24.
	maxSubnetAttempts = 64
)

var (
	seq atomic.Uint64

	// reserved holds ranges New never uses, although nothing routes them:
	// 10.96.0.0/12 is Kubernetes' default Service range, and a backend
	// there could make a test that wrongly dials a ClusterIP pass.
	reserved = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
)

// nextID numbers hosts within this process.
func nextID() uint64 { return seq.Add(1) }

// hostName is unique across concurrent test processes because it holds the
// pid, and within a process because of id: "eat" + pid and id in base 36,
// at most 3+5+1+6 = 15 characters for any pid up to 2^22 (the kernel's
// maximum) and a billion hosts.
func hostName(id uint64) string {
	name := namePrefix + strconv.FormatInt(int64(os.Getpid()), 36) + "-" + strconv.FormatUint(id, 36)
	if len(name) > maxIfName {
		panic(fmt.Sprintf("netnstest: host name %q longer than %d", name, maxIfName))
	}
	return name
}

// candidate derives the attempt-th /24 to try for host id from the pid and
// id: stable for a given process and host, and spread over 10.0.0.0/8 so
// that concurrent processes rarely even try the same subnet.
func candidate(id uint64, attempt int) netip.Prefix {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%d/%d", os.Getpid(), id, attempt)
	v := h.Sum32()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(v >> 8), byte(v), 0}), 24)
}

// freeSubnet returns a /24 in 10.0.0.0/8 that overlaps no address or route
// in the root namespace. The caller holds lockSubnets until it has added
// its address, which is what makes the choice stick.
func freeSubnet(id uint64) (netip.Prefix, error) {
	used, err := usedPrefixes()
	if err != nil {
		return netip.Prefix{}, err
	}
	for attempt := range maxSubnetAttempts {
		p := candidate(id, attempt)
		if !overlapsAny(p, used) && !overlapsAny(p, reserved) {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.0.0.0/8 after %d attempts", maxSubnetAttempts)
}

// usedPrefixes lists the IPv4 prefixes of every address and every route,
// in all routing tables, of the root namespace, except default routes.
func usedPrefixes() ([]netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet.IP, a.IPNet.Mask); ok {
			used = append(used, p)
		}
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		// Table RT_TABLE_UNSPEC with the table filter means all tables.
		return netlink.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // default route
		}
		if p, ok := prefixOf(r.Dst.IP, r.Dst.Mask); ok && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	return used, nil
}

// retryDump repeats a netlink dump that other processes interrupted by
// changing addresses or routes meanwhile (they do: tests run in parallel).
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range 10 {
		var v []T
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, err
}

func prefixOf(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	ones, bits := mask.Size()
	if !ok || !a.Unmap().Is4() || bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func overlapsAny(p netip.Prefix, set []netip.Prefix) bool {
	for _, q := range set {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// lockSubnets takes an exclusive flock on the netns directory. Every process
// using this package takes it around choosing a subnet and adding the root
// address, so two processes cannot both find the same /24 free. The kernel
// drops the lock if the process dies, so it never goes stale, and locking the
// directory we use anyway leaves no extra file behind.
func lockSubnets() (unlock func(), err error) {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", netnsDir, err)
	}
	f, err := os.Open(netnsDir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", netnsDir, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", netnsDir, err)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}
