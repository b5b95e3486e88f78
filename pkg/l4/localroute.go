package l4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the local routes the agent adds (`ip route show table
// local proto 234`), so it finds and removes only its own.
const RouteProtocol = 234

// SyncLocalRoutes makes the node accept traffic for steered addresses that
// are not its own (service VIPs): sk_lookup runs only for packets the
// stack delivers locally, so each such address gets a local route (table
// local, like an address on lo, without answering ARP). It adds a route for
// every address in want that is not already local, and removes the agent's
// routes for addresses in neither want nor keep. keep holds addresses that
// may still carry connections the proxy accepted (a destination that just
// became an L4 service): removing their route would forward those
// connections' packets away.
func SyncLocalRoutes(want, keep []netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("local routes: %w", err)
	}
	ours, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list local routes: %w", err)
	}
	have := map[netip.Addr]netlink.Route{}
	for _, r := range ours {
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok {
			have[a] = r
		}
	}
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		if !a.Is4() || a.IsUnspecified() {
			continue
		}
		wanted[a] = true
		if _, ok := have[a]; ok {
			continue
		}
		if local, err := isLocal(a); err != nil {
			return err
		} else if local {
			continue // an address of the node already
		}
		r := localRoute(a, lo.Attrs().Index)
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("add local route %s: %w", a, err)
		}
	}
	kept := map[netip.Addr]bool{}
	for _, a := range keep {
		kept[a] = true
	}
	for a, r := range have {
		if wanted[a] || kept[a] {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove local route %s: %w", a, err)
		}
	}
	return nil
}

func localRoute(a netip.Addr, loIndex int) netlink.Route {
	return netlink.Route{
		LinkIndex: loIndex,
		Dst:       &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Table:     unix.RT_TABLE_LOCAL,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Protocol:  RouteProtocol,
	}
}

// isLocal reports whether the stack delivers packets for a locally.
func isLocal(a netip.Addr) (bool, error) {
	rs, err := netlink.RouteGet(a.AsSlice())
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) {
			return false, nil
		}
		return false, fmt.Errorf("route to %s: %w", a, err)
	}
	for _, r := range rs {
		if r.Type == unix.RTN_LOCAL {
			return true, nil
		}
	}
	return false, nil
}
