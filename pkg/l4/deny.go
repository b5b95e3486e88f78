package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// MaxDenyRules is MAX_DENY_RULES in bpf/deny.c: the size of the CIDR trie
// and of the per-rule counters.
const MaxDenyRules = 16384

// Pinned names of the deny list's maps (in the pin directory) and the
// suffix of its links (in links/, "<ifname>-xdp").
const (
	denyCIDRsMap = "ea_deny_cidrs"
	denyStatsMap = "ea_deny_stats"
	xdpSuffix    = "-xdp"
)

// XDPMode is how the deny program is attached to an interface.
type XDPMode string

const (
	// XDPNative runs in the driver's receive path (veth, most physical NICs).
	XDPNative XDPMode = "native"
	// XDPGeneric runs after the skb is built (any interface): slower than
	// native, still before the IP stack and TC.
	XDPGeneric XDPMode = "generic"
	// XDPOffload runs on the NIC (never chosen by the agent).
	XDPOffload XDPMode = "offload"
)

// Deny is the loaded XDP deny program (bpf/deny.c) and its pinned maps.
type Deny struct {
	pinDir string
	objs   denyObjects
	// forceGeneric attaches in generic mode even where native works (tests
	// of the fallback).
	forceGeneric bool
}

// RuleStats is one deny rule with what it dropped, summed over CPUs.
type RuleStats struct {
	// Index is the rule's position in security.denyList.cidrs.
	Index   uint32
	CIDR    netip.Prefix
	Packets uint64
	Bytes   uint64
}

// LoadDeny loads the program, reusing the maps pinned in pinDir (so the
// rules and their counters survive an agent restart) and pinning new ones.
// Nothing is attached yet.
func LoadDeny(log *slog.Logger, pinDir string) (*Deny, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := preparePinDir(pinDir, "links"); err != nil {
		return nil, err
	}
	spec, err := loadDeny()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	d := &Deny{pinDir: pinDir}
	if err := loadPinned(log, spec, pinDir, &d.objs); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load XDP deny program: %+v", ve)
		}
		return nil, fmt.Errorf("load XDP deny program: %w", err)
	}
	return d, nil
}

// Close releases this process's handles. The pinned links and maps stay:
// the interfaces keep dropping while the agent restarts.
func (d *Deny) Close() error { return d.objs.Close() }

func denyLinkPin(pinDir, ifname string) string {
	return filepath.Join(pinDir, "links", ifname+xdpSuffix)
}

// Attach attaches the program to ifindex and pins the link as
// links/<ifname>-xdp. A link already pinned there (a restart) gets the new
// program swapped in atomically: no packet passes undropped in between. A
// new attachment tries native mode first and falls back to generic (skb)
// mode where the driver has no XDP support. It returns the mode the
// program runs in. The caller's thread must be in the interface's network
// namespace.
func (d *Deny) Attach(ifname string, ifindex int) (XDPMode, error) {
	pin := denyLinkPin(d.pinDir, ifname)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		info, ierr := l.Info()
		if ierr == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
			err := l.Update(d.objs.EaDeny)
			l.Close()
			if err != nil {
				return "", fmt.Errorf("replace XDP program on %s: %w", ifname, err)
			}
			return xdpModeOf(ifindex), nil
		}
		// The interface went away (and may be back with a new index):
		// the link is defunct, attach afresh.
		_ = l.Unpin()
		l.Close()
	}
	type try struct {
		mode  XDPMode
		flags link.XDPAttachFlags
	}
	tries := []try{{XDPNative, link.XDPDriverMode}, {XDPGeneric, link.XDPGenericMode}}
	if d.forceGeneric {
		tries = tries[1:]
	}
	var errs []error
	for _, t := range tries {
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.EaDeny, Interface: ifindex, Flags: t.flags})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.mode, err))
			continue
		}
		err = l.Pin(pin)
		l.Close() // unpinned, this detaches again
		if err != nil {
			return "", fmt.Errorf("pin XDP link for %s: %w", ifname, err)
		}
		return t.mode, nil
	}
	return "", fmt.Errorf("attach XDP on %s: %w", ifname, errors.Join(errs...))
}

// xdpModeOf asks the kernel how the XDP program on ifindex runs.
func xdpModeOf(ifindex int) XDPMode {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Xdp == nil {
		return ""
	}
	switch l.Attrs().Xdp.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return XDPNative
	case nl.XDP_ATTACHED_SKB:
		return XDPGeneric
	case nl.XDP_ATTACHED_HW:
		return XDPOffload
	}
	return ""
}

// Detach removes the program from ifname by unpinning its link.
func (d *Deny) Detach(ifname string) error { return unpinXDPLink(denyLinkPin(d.pinDir, ifname)) }

func unpinXDPLink(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", pin, err)
	}
	defer l.Close()
	// Unpinning the last reference detaches the program.
	if err := l.Unpin(); err != nil {
		return fmt.Errorf("%s: %w", pin, err)
	}
	return nil
}

// denyLinks lists the interfaces with a pinned deny link in pinDir.
func denyLinks(pinDir string) ([]string, error) {
	pins, err := filepath.Glob(filepath.Join(pinDir, "links", "*"+xdpSuffix))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pins {
		out = append(out, strings.TrimSuffix(filepath.Base(p), xdpSuffix))
	}
	sort.Strings(out)
	return out, nil
}

// CleanupDeny detaches the deny program from every interface and removes
// its pinned maps, by name: links/*-xdp, ea_deny_cidrs and ea_deny_stats.
// The L4 program's pins are left alone. Nothing pinned is not an error.
func CleanupDeny(pinDir string) error {
	ifnames, err := denyLinks(pinDir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range ifnames {
		errs = append(errs, unpinXDPLink(denyLinkPin(pinDir, name)))
	}
	for _, m := range []string{denyCIDRsMap, denyStatsMap} {
		if err := os.Remove(filepath.Join(pinDir, m)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseDenyCIDRs parses the configured deny list: IPv4 CIDRs or addresses
// (as /32), host bits cleared.
func ParseDenyCIDRs(cidrs []string) ([]netip.Prefix, error) {
	if len(cidrs) > MaxDenyRules {
		return nil, fmt.Errorf("deny list: %d CIDRs, at most %d", len(cidrs), MaxDenyRules)
	}
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, s := range cidrs {
		p, err := config.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("deny list [%d]: %w", i, err)
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("deny list [%d]: %s is not IPv4", i, s)
		}
		out = append(out, p)
	}
	return out, nil
}

func denyKey(p netip.Prefix) denyDenyKey {
	p = p.Masked()
	return denyDenyKey{Prefixlen: uint32(p.Bits()), Addr: ip4(p.Addr())}
}

func (k denyDenyKey) prefix() netip.Prefix {
	return netip.PrefixFrom(fromIP4(k.Addr), int(k.Prefixlen))
}

// Sync makes the trie hold exactly cidrs, rule i pointing at counter slot
// i, by diffing against what it holds now (perhaps a previous agent's):
// removed CIDRs are deleted, new ones added, unchanged ones not touched, so
// no packet from a CIDR listed before and after slips through. A slot whose
// CIDR changes (a rule added, removed or moved above it) starts its counters
// at 0. A CIDR listed twice is counted in its first slot.
func (d *Deny) Sync(cidrs []netip.Prefix) error {
	if len(cidrs) > MaxDenyRules {
		return fmt.Errorf("deny list: %d CIDRs, at most %d", len(cidrs), MaxDenyRules)
	}
	want := map[denyDenyKey]uint32{}
	owner := map[uint32]denyDenyKey{} // slot -> the CIDR it counts for
	for i, p := range cidrs {
		if !p.Addr().Is4() {
			return fmt.Errorf("deny list: %s is not IPv4", p)
		}
		k := denyKey(p)
		if _, dup := want[k]; !dup {
			want[k] = uint32(i)
			owner[uint32(i)] = k
		}
	}
	trie := d.objs.EaDenyCidrs
	cur, err := readMap[denyDenyKey, uint32](trie, "deny list")
	if err != nil {
		return err
	}
	curOwner := map[uint32]denyDenyKey{}
	for k, v := range cur {
		curOwner[v] = k
	}
	// 1. Removed CIDRs pass again.
	for k := range cur {
		if _, ok := want[k]; !ok {
			if err := trie.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete %s from the deny list: %w", k.prefix(), err)
			}
		}
	}
	// 2. Slots that change CIDR start at 0 before their new CIDR counts there.
	for slot, k := range owner {
		if old, ok := curOwner[slot]; ok && old != k {
			if err := d.zeroStats(slot); err != nil {
				return err
			}
		}
	}
	// 3. New and moved CIDRs.
	for k, slot := range want {
		if old, ok := cur[k]; ok && old == slot {
			continue
		}
		if err := trie.Put(k, slot); err != nil {
			return fmt.Errorf("add %s to the deny list: %w", k.prefix(), err)
		}
	}
	// 4. Slots no CIDR counts in any more.
	for slot := range curOwner {
		if _, ok := owner[slot]; !ok {
			if err := d.zeroStats(slot); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Deny) zeroStats(slot uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	if err := d.objs.EaDenyStats.Put(slot, make([]denyDenyStats, n)); err != nil {
		return fmt.Errorf("reset deny counters %d: %w", slot, err)
	}
	return nil
}

// Stats returns every rule the trie holds with its counters, by index.
func (d *Deny) Stats() ([]RuleStats, error) {
	return denyStats(d.objs.EaDenyCidrs, d.objs.EaDenyStats)
}

func denyStats(trie, stats *ebpf.Map) ([]RuleStats, error) {
	var out []RuleStats
	var k denyDenyKey
	var slot uint32
	it := trie.Iterate()
	for it.Next(&k, &slot) {
		rs := RuleStats{Index: slot, CIDR: k.prefix()}
		var per []denyDenyStats
		if err := stats.Lookup(slot, &per); err != nil {
			return nil, fmt.Errorf("read deny counters %d: %w", slot, err)
		}
		for _, s := range per {
			rs.Packets += s.Packets
			rs.Bytes += s.Bytes
		}
		out = append(out, rs)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read deny list: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// ReadDenyStats reads the rules and counters from the maps pinned in
// pinDir, without loading anything: for metrics and `edge-agent bpf deny`.
// It returns an error wrapping os.ErrNotExist when no deny list is pinned.
func ReadDenyStats(pinDir string) ([]RuleStats, error) {
	opts := &ebpf.LoadPinOptions{ReadOnly: true}
	trie, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, denyCIDRsMap), opts)
	if err != nil {
		return nil, err
	}
	defer trie.Close()
	stats, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, denyStatsMap), opts)
	if err != nil {
		return nil, err
	}
	defer stats.Close()
	return denyStats(trie, stats)
}

// DenyAttachment is one interface the deny program is attached to.
type DenyAttachment struct {
	Interface string
	Ifindex   int
	Mode      XDPMode
	ProgramID uint32
	LinkID    uint32
}

// DenyAttachments lists the pinned deny links in pinDir. The mode is read
// from the interface in the caller's network namespace.
func DenyAttachments(pinDir string) ([]DenyAttachment, error) {
	names, err := denyLinks(pinDir)
	if err != nil {
		return nil, err
	}
	var out []DenyAttachment
	var errs []error
	for _, name := range names {
		// Links open read-write only (the kernel refuses BPF_F_RDONLY).
		l, err := link.LoadPinnedLink(denyLinkPin(pinDir, name), nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		a := DenyAttachment{Interface: name, ProgramID: uint32(info.Program), LinkID: uint32(info.ID)}
		if x := info.XDP(); x != nil && x.Ifindex != 0 {
			a.Ifindex = int(x.Ifindex)
			a.Mode = xdpModeOf(a.Ifindex)
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}
