package l4

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

func TestSyncLocalRoutes(t *testing.T) {
	requireBPF(t) // root
	name := fmt.Sprintf("ea-lr-%d", os.Getpid())
	if err := netnstest.NewNetns(t, name); err != nil {
		t.Fatal(err)
	}
	vip1, vip2 := netip.MustParseAddr("198.51.100.61"), netip.MustParseAddr("198.51.100.62")
	loopback := netip.MustParseAddr("127.0.0.1")
	ours := func() map[netip.Addr]bool {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 255, Protocol: RouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		out := map[netip.Addr]bool{}
		for _, r := range rs {
			a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			out[a] = true
		}
		return out
	}
	err := netnstest.RunIn(name, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		// 127.0.0.1 is local already: no route of ours for it.
		if err := SyncLocalRoutes([]netip.Addr{vip1, vip2, loopback, netip.IPv4Unspecified()}, nil); err != nil {
			return err
		}
		if got := ours(); len(got) != 2 || !got[vip1] || !got[vip2] {
			return fmt.Errorf("after adding: %v", got)
		}
		if local, err := isLocal(vip1); err != nil || !local {
			return fmt.Errorf("vip1 local = %v, %v", local, err)
		}
		// Idempotent.
		if err := SyncLocalRoutes([]netip.Addr{vip1, vip2}, nil); err != nil {
			return err
		}
		// vip2 leaves but is kept (it became an L4 service); vip1 goes.
		if err := SyncLocalRoutes(nil, []netip.Addr{vip2}); err != nil {
			return err
		}
		if got := ours(); len(got) != 1 || !got[vip2] {
			return fmt.Errorf("after keep: %v", got)
		}
		if err := SyncLocalRoutes(nil, nil); err != nil {
			return err
		}
		if got := ours(); len(got) != 0 {
			return fmt.Errorf("after removing all: %v", got)
		}
		if local, _ := isLocal(vip1); local {
			return fmt.Errorf("vip1 still local")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
