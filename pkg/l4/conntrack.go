package l4

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Timeouts after which idle conntrack entries are removed. The LRU map
// evicts under pressure anyway; these keep it from filling with dead flows.
type Timeouts struct {
	TCP     time.Duration // established TCP
	Closing time.Duration // TCP after FIN or RST
	UDP     time.Duration
}

// DefaultTimeouts follow what Linux conntrack and Cilium use, rounded.
var DefaultTimeouts = Timeouts{TCP: 6 * time.Hour, Closing: 10 * time.Second, UDP: 60 * time.Second}

// Flow is one conntrack entry in readable form.
type Flow struct {
	Proto    uint8
	Src, Dst netip.AddrPort // as the packet carries them
	NAT      netip.AddrPort // forward: the backend; reverse: the VIP
	// Peer is the SNAT source (forward) or the client restored (reverse);
	// invalid without SNAT.
	Peer      netip.AddrPort
	Reverse   bool
	Closing   bool
	ServiceID uint32
	BackendID uint32
	Idle      time.Duration
}

// monotonicNow is the clock bpf_ktime_get_ns reads.
func monotonicNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}

// Flows lists the conntrack table.
func (d *Datapath) Flows() ([]Flow, error) { return d.Pinned().Flows() }

func flowOf(k lbCtKey, v lbCtValue, now uint64) Flow {
	f := Flow{
		Proto:     k.Proto,
		Src:       netip.AddrPortFrom(fromIP4(k.Saddr), fromPort(k.Sport)),
		Dst:       netip.AddrPortFrom(fromIP4(k.Daddr), fromPort(k.Dport)),
		NAT:       netip.AddrPortFrom(fromIP4(v.NatIp), fromPort(v.NatPort)),
		Reverse:   v.Dir == 1,
		Closing:   v.Flags&1 != 0,
		ServiceID: v.SvcId,
		Peer:      peerOf(v),
		BackendID: v.BackendId,
	}
	if now > v.LastSeen {
		f.Idle = time.Duration(now - v.LastSeen)
	}
	return f
}

// Expire deletes conntrack entries idle longer than their timeout and
// returns how many it removed.
func (d *Datapath) Expire(t Timeouts) (int, error) {
	now, err := monotonicNow()
	if err != nil {
		return 0, err
	}
	var dead []lbCtKey
	var k lbCtKey
	var v lbCtValue
	it := d.objs.EaConntrack.Iterate()
	for it.Next(&k, &v) {
		limit := t.UDP
		if k.Proto == ProtoTCP {
			limit = t.TCP
			if v.Flags&1 != 0 {
				limit = t.Closing
			}
		}
		if now > v.LastSeen && time.Duration(now-v.LastSeen) > limit {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read conntrack: %w", err)
	}
	n := 0
	for _, k := range dead {
		if err := d.objs.EaConntrack.Delete(k); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("expire conntrack: %w", err)
		}
	}
	return n, nil
}

func peerOf(v lbCtValue) netip.AddrPort {
	if v.PeerIp == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(fromIP4(v.PeerIp), fromPort(v.PeerPort))
}
