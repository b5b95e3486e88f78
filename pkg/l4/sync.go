package l4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/pkg/l4/maglev"
)

// Protocol numbers of the L4 protocols the balancer handles.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Service is one L4 service: a VIP, port and protocol balanced over
// weighted backends.
type Service struct {
	Name     string
	VIP      netip.Addr
	Port     uint16
	Proto    uint8
	Backends []Backend
	// SNAT rewrites the client's source to the node's address on the way
	// to the backend, so replies return through the node on any topology.
	// Without it the backend sees the client's address and its replies
	// must be routed back through the node.
	SNAT bool
}

// Backend is one destination of a service.
type Backend struct {
	Addr   netip.AddrPort
	Weight uint32
}

// svcFlagSNAT is SVC_F_SNAT in bpf/include/lb_consts.h.
const svcFlagSNAT = 1

// MaxServices and MaxBackends are the map sizes in bpf/include/lb_consts.h.
const (
	MaxServices = 1024
	MaxBackends = 65536
)

// Sync makes the maps hold exactly services, by diffing against what they
// hold now (which may come from a previous agent): unchanged entries are not
// touched, a changed Maglev table is rewritten slot by slot in place, a new
// service gets its table before it becomes visible, and a removed one
// disappears before its table does. Nothing is flushed and refilled.
func (d *Datapath) Sync(services []Service) error {
	// Tables computed for this sync replace the cache, so it holds only
	// what the current services use.
	d.nextComputed = map[string][]uint32{}
	defer func() { d.computed, d.nextComputed = d.nextComputed, nil }()
	m := &d.objs.lbMaps
	curSvc, err := readMap[lbSvcKey, lbSvcValue](m.EaServices, "services")
	if err != nil {
		return err
	}
	curBe, err := readMap[uint32, lbBackend](m.EaBackends, "backends")
	if err != nil {
		return err
	}

	// Backend ids are stable per address: reuse the id a backend has.
	byAddr := map[lbBackend]uint32{}
	for id, b := range curBe {
		byAddr[b] = id
	}
	wantBe := map[uint32]lbBackend{}
	nextID := uint32(1)
	allocBackend := func(b lbBackend) (uint32, error) {
		if id, ok := byAddr[b]; ok {
			return id, nil
		}
		for ; nextID < MaxBackends; nextID++ {
			if _, used := curBe[nextID]; !used {
				if _, taken := wantBe[nextID]; !taken {
					id := nextID
					nextID++
					byAddr[b] = id
					return id, nil
				}
			}
		}
		return 0, errors.New("backend table full")
	}

	type plan struct {
		key   lbSvcKey
		value lbSvcValue
		table []uint32
	}
	var plans []plan
	wantSvc := map[lbSvcKey]bool{}
	usedIDs := map[uint32]bool{}
	for _, sv := range curSvc {
		usedIDs[sv.Id] = true
	}
	nextSvc := uint32(1)
	for _, s := range services {
		key, err := svcKey(s)
		if err != nil {
			return err
		}
		if wantSvc[key] {
			return fmt.Errorf("service %s: %s:%d/%d is listed twice", s.Name, s.VIP, s.Port, s.Proto)
		}
		wantSvc[key] = true
		var mb []maglev.Backend
		for _, b := range s.Backends {
			bb, err := backendValue(b.Addr)
			if err != nil {
				return fmt.Errorf("service %s: %w", s.Name, err)
			}
			id, err := allocBackend(bb)
			if err != nil {
				return err
			}
			wantBe[id] = bb
			w := b.Weight
			if w == 0 {
				w = 1
			}
			mb = append(mb, maglev.Backend{ID: id, Name: b.Addr.String(), Weight: w})
		}
		table, err := d.maglevTable(mb)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
		id := uint32(0)
		if cur, ok := curSvc[key]; ok {
			id = cur.Id
		} else {
			for ; nextSvc < MaxServices; nextSvc++ {
				if !usedIDs[nextSvc] {
					id = nextSvc
					usedIDs[id] = true
					nextSvc++
					break
				}
			}
			if id == 0 {
				return errors.New("service table full")
			}
		}
		var flags uint32
		if s.SNAT {
			flags |= svcFlagSNAT
		}
		plans = append(plans, plan{key: key, value: lbSvcValue{Id: id, Flags: flags}, table: table})
	}

	// 1. Backends first: a table never points at a missing backend.
	for id, b := range wantBe {
		if cur, ok := curBe[id]; ok && cur == b {
			continue
		}
		if err := m.EaBackends.Put(id, b); err != nil {
			return fmt.Errorf("put backend %d: %w", id, err)
		}
	}
	// 2. Tables, then the service entries that make them reachable.
	for _, p := range plans {
		if err := d.writeTable(p.value.Id, p.table); err != nil {
			return err
		}
		if cur, ok := curSvc[p.key]; ok && cur == p.value {
			continue
		}
		if err := m.EaServices.Put(p.key, p.value); err != nil {
			return fmt.Errorf("put service: %w", err)
		}
	}
	// 3. Removed services: unreachable first, then their tables.
	for key, sv := range curSvc {
		if wantSvc[key] {
			continue
		}
		if err := m.EaServices.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete service: %w", err)
		}
		if err := m.EaMaglev.Delete(sv.Id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete table %d: %w", sv.Id, err)
		}
		_ = os.Remove(d.tablePin(sv.Id))
		delete(d.tables, sv.Id)
		// The id may be reused: the next service starts its counters at 0.
		if n, err := ebpf.PossibleCPU(); err == nil {
			_ = m.EaSvcStats.Put(sv.Id, make([]lbSvcStats, n))
		}
	}
	// 4. Backends no service uses any more. Established flows keep working:
	// conntrack holds the backend's address itself.
	for id := range curBe {
		if _, ok := wantBe[id]; ok {
			continue
		}
		if err := m.EaBackends.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete backend %d: %w", id, err)
		}
		_ = m.EaBackendStats.Delete(id)
	}
	return nil
}

// maglevTable computes a table, or reuses the one computed for the same
// backends last time: most syncs change few services, and a table costs
// about a millisecond.
func (d *Datapath) maglevTable(bs []maglev.Backend) ([]uint32, error) {
	var sig strings.Builder
	for _, b := range bs {
		fmt.Fprintf(&sig, "%d=%s*%d;", b.ID, b.Name, b.Weight)
	}
	key := sig.String()
	if t, ok := d.computed[key]; ok {
		d.nextComputed[key] = t
		return t, nil
	}
	t, err := maglev.Table(bs, maglev.TableSize)
	if err != nil {
		return nil, err
	}
	d.nextComputed[key] = t
	return t, nil
}

func (d *Datapath) tablePin(id uint32) string {
	return filepath.Join(d.pinDir, "maglev", "ea_maglev_"+strconv.FormatUint(uint64(id), 10))
}

// writeTable makes service id's Maglev table hold table, writing only the
// slots that differ into an existing table, or creating, filling and pinning
// a new one before it is linked into ea_maglev.
func (d *Datapath) writeTable(id uint32, table []uint32) error {
	pin := d.tablePin(id)
	inner, err := ebpf.LoadPinnedMap(pin, nil)
	if err == nil {
		defer inner.Close()
		cur, cached := d.tables[id]
		if !cached {
			cur = make([]uint32, len(table))
			for slot := range table {
				if err := inner.Lookup(uint32(slot), &cur[slot]); err != nil {
					return fmt.Errorf("read table %d: %w", id, err)
				}
			}
		}
		changed := false
		for slot, b := range table {
			if cur[slot] != b {
				changed = true
				if err := inner.Put(uint32(slot), b); err != nil {
					delete(d.tables, id) // partly written: re-read next time
					return fmt.Errorf("write table %d: %w", id, err)
				}
			}
		}
		d.tables[id] = table
		if cached && !changed {
			return nil
		}
		// Make sure ea_maglev points at it (a crash may have left it out).
		return d.objs.EaMaglev.Put(id, inner)
	}
	spec := d.spec.Maps["ea_maglev"].InnerMap.Copy()
	spec.Name = fmt.Sprintf("ea_maglev_%d", id)
	inner, err = ebpf.NewMap(spec)
	if err != nil {
		return fmt.Errorf("create table %d: %w", id, err)
	}
	defer inner.Close()
	keys := make([]uint32, len(table))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := inner.BatchUpdate(keys, table, nil); err != nil {
		for slot, b := range table { // kernels without batch ops on arrays
			if err := inner.Put(uint32(slot), b); err != nil {
				return fmt.Errorf("fill table %d: %w", id, err)
			}
		}
	}
	if err := inner.Pin(pin); err != nil {
		return fmt.Errorf("pin table %d: %w", id, err)
	}
	if err := d.objs.EaMaglev.Put(id, inner); err != nil {
		return fmt.Errorf("link table %d: %w", id, err)
	}
	d.tables[id] = table
	return nil
}

// svcKey encodes a service's key with the VIP and port in network order,
// as the program compares them with packet bytes.
func svcKey(s Service) (lbSvcKey, error) {
	if !s.VIP.Is4() {
		return lbSvcKey{}, fmt.Errorf("service %s: VIP %s is not IPv4", s.Name, s.VIP)
	}
	if s.Proto != ProtoTCP && s.Proto != ProtoUDP {
		return lbSvcKey{}, fmt.Errorf("service %s: protocol %d is neither TCP nor UDP", s.Name, s.Proto)
	}
	return lbSvcKey{Vip: ip4(s.VIP), Port: port(s.Port), Proto: s.Proto}, nil
}

func backendValue(a netip.AddrPort) (lbBackend, error) {
	if !a.Addr().Is4() || a.Port() == 0 {
		return lbBackend{}, fmt.Errorf("backend %s: want IPv4:port", a)
	}
	return lbBackend{Ip: ip4(a.Addr()), Port: port(a.Port())}, nil
}

// ip4 returns the address as a uint32 whose in-memory bytes are the
// address's network-order bytes.
func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func port(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// fromIP4 and fromPort undo ip4 and port for display.
func fromIP4(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func fromPort(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

// SyncInterfaceAddrs records the node's IPv4 address on every interface of
// the calling thread's network namespace: the SNAT source for flows leaving
// through it. Stale entries are removed.
func (d *Datapath) SyncInterfaceAddrs() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	want := map[uint32]uint32{}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && !ip.IsLoopback() {
				want[uint32(l.Attrs().Index)] = ip4(ip)
				break
			}
		}
	}
	m := d.objs.EaIfaddrs
	var k, v uint32
	var stale []uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read interface addresses: %w", err)
	}
	for _, k := range stale {
		_ = m.Delete(k)
	}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("put interface address: %w", err)
		}
	}
	return nil
}
