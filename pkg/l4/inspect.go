package l4

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Pinned gives read access to the pinned maps without loading the program:
// what `edge-agent bpf` and the metrics use.
type Pinned struct {
	dir  string
	maps lbMaps
}

// OpenPinned opens every map pinned in dir.
func OpenPinned(dir string) (*Pinned, error) {
	p := &Pinned{dir: dir}
	m := &p.maps
	for name, dst := range map[string]**ebpf.Map{
		"ea_services": &m.EaServices, "ea_backends": &m.EaBackends, "ea_maglev": &m.EaMaglev,
		"ea_conntrack": &m.EaConntrack, "ea_svc_stats": &m.EaSvcStats,
		"ea_backend_stats": &m.EaBackendStats, "ea_pass_stats": &m.EaPassStats, "ea_ifaddrs": &m.EaIfaddrs,
	} {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("open pinned map %s (is the L4 data path loaded?): %w", name, err)
		}
		*dst = mp
	}
	return p, nil
}

// Close releases the map handles.
func (p *Pinned) Close() error { return p.maps.Close() }

// Pinned returns a read view of a loaded datapath's maps.
func (d *Datapath) Pinned() *Pinned { return &Pinned{dir: d.pinDir, maps: d.objs.lbMaps} }

// ServiceInfo is one service as the kernel holds it, with its counters.
type ServiceInfo struct {
	ID       uint32
	VIP      netip.AddrPort
	Proto    uint8
	Backends []uint32 // distinct backend ids in its Maglev table
	Counters Counters
}

// Counters are summed over CPUs.
type Counters struct{ Packets, Bytes, NewFlows uint64 }

// Services lists the services, ordered by id.
func (p *Pinned) Services() ([]ServiceInfo, error) {
	var out []ServiceInfo
	var k lbSvcKey
	var v lbSvcValue
	it := p.maps.EaServices.Iterate()
	for it.Next(&k, &v) {
		si := ServiceInfo{ID: v.Id, VIP: netip.AddrPortFrom(fromIP4(k.Vip), fromPort(k.Port)), Proto: k.Proto}
		var per []lbSvcStats
		if err := p.maps.EaSvcStats.Lookup(v.Id, &per); err == nil {
			for _, s := range per {
				si.Counters.Packets += s.Packets
				si.Counters.Bytes += s.Bytes
				si.Counters.NewFlows += s.NewFlows
			}
		}
		ids, err := p.tableBackends(v.Id)
		if err != nil {
			return nil, err
		}
		si.Backends = ids
		out = append(out, si)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (p *Pinned) tableBackends(id uint32) ([]uint32, error) {
	var innerID uint32
	if err := p.maps.EaMaglev.Lookup(id, &innerID); err != nil {
		return nil, nil // no table yet
	}
	inner, err := ebpf.NewMapFromID(ebpf.MapID(innerID))
	if err != nil {
		return nil, fmt.Errorf("open table of service %d: %w", id, err)
	}
	defer inner.Close()
	seen := map[uint32]bool{}
	var slot, b uint32
	it := inner.Iterate()
	for it.Next(&slot, &b) {
		if b != 0 {
			seen[b] = true
		}
	}
	ids := make([]uint32, 0, len(seen))
	for b := range seen {
		ids = append(ids, b)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, it.Err()
}

// BackendInfo is one backend with its counters.
type BackendInfo struct {
	ID       uint32
	Addr     netip.AddrPort
	Counters Counters
}

// Backends lists the backends, ordered by id.
func (p *Pinned) Backends() ([]BackendInfo, error) {
	var out []BackendInfo
	var id uint32
	var b lbBackend
	it := p.maps.EaBackends.Iterate()
	for it.Next(&id, &b) {
		bi := BackendInfo{ID: id, Addr: netip.AddrPortFrom(fromIP4(b.Ip), fromPort(b.Port))}
		var per []lbBackendStats
		if err := p.maps.EaBackendStats.Lookup(id, &per); err == nil {
			for _, s := range per {
				bi.Counters.Packets += s.Packets
				bi.Counters.Bytes += s.Bytes
				bi.Counters.NewFlows += s.NewFlows
			}
		}
		out = append(out, bi)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read backends: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Flows lists the conntrack table.
func (p *Pinned) Flows() ([]Flow, error) {
	now, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	var out []Flow
	var k lbCtKey
	var v lbCtValue
	it := p.maps.EaConntrack.Iterate()
	for it.Next(&k, &v) {
		out = append(out, flowOf(k, v, now))
	}
	return out, it.Err()
}

// PassReasons names the ea_pass_stats slots.
var PassReasons = []string{"not_ipv4", "truncated", "malformed", "fragment", "not_tcp_udp", "no_service",
	"drop_no_backend", "drop_rewrite_failed", "drop_no_snat_addr", "drop_snat_ports_exhausted", "ttl_exceeded",
	"local_socket"}

// Passed returns the per-reason counts of packets left to the stack (or
// dropped), summed over CPUs.
func (p *Pinned) Passed() (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range PassReasons {
		var per []uint64
		if err := p.maps.EaPassStats.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read pass counters: %w", err)
		}
		for _, v := range per {
			out[name] += v
		}
	}
	return out, nil
}

// MapFill is one map's fill level.
type MapFill struct {
	Name       string
	Entries    int
	MaxEntries uint32
}

// Fill counts the entries of the maps that can fill up.
func (p *Pinned) Fill() ([]MapFill, error) {
	var out []MapFill
	for _, m := range []struct {
		name string
		m    *ebpf.Map
	}{{"ea_services", p.maps.EaServices}, {"ea_backends", p.maps.EaBackends}, {"ea_conntrack", p.maps.EaConntrack}} {
		n, err := count(m.m)
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", m.name, err)
		}
		out = append(out, MapFill{Name: m.name, Entries: n, MaxEntries: m.m.MaxEntries()})
	}
	return out, nil
}

func count(m *ebpf.Map) (int, error) {
	n := 0
	var k []byte
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n, it.Err()
}

// Attachment is one pinned link.
type Attachment struct {
	Pin       string
	Interface int
	ProgramID uint32
}

// Attachments lists the pinned links (where the program is attached).
func (p *Pinned) Attachments() ([]Attachment, error) {
	pins, err := filepath.Glob(filepath.Join(p.dir, "links", "*"))
	if err != nil {
		return nil, err
	}
	var out []Attachment
	var errs []error
	for _, pin := range pins {
		if strings.HasSuffix(pin, clsactSuffix) {
			id, err := clsactProgramID(pin)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", pin, err))
				continue
			}
			out = append(out, Attachment{Pin: filepath.Base(pin), ProgramID: id})
			continue
		}
		// Links open read-write only: the kernel refuses a read-only
		// BPF_OBJ_GET of a link with EINVAL.
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", pin, err))
			continue
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", pin, err))
			continue
		}
		a := Attachment{Pin: filepath.Base(pin), ProgramID: uint32(info.Program)}
		if tcx := info.TCX(); tcx != nil {
			a.Interface = int(tcx.Ifindex)
		}
		if xdp := info.XDP(); xdp != nil { // the deny list's links/<if>-xdp
			a.Interface = int(xdp.Ifindex)
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}
