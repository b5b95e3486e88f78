package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// Manager runs the L4 data path for the agent: it loads the program the
// first time the config has L4 services, attaches it, syncs the maps on
// every config and expires idle flows. When eBPF is not available it says
// why once and stays out of the way: L7 keeps serving.
type Manager struct {
	log    *slog.Logger
	pinDir string

	mu       sync.Mutex
	d        *Datapath
	failed   error
	attached map[string]bool
	// sock balances local clients at connect() (nil when off); sockCgroup
	// is where it is attached.
	sock       *SocketLB
	sockCgroup string
	stop       context.CancelFunc
	done       chan struct{}
}

// NewManager returns a manager pinning under pinDir (DefaultPinDir in production).
func NewManager(log *slog.Logger, pinDir string) *Manager {
	return &Manager{log: log, pinDir: pinDir, attached: map[string]bool{}}
}

// Status says whether the data path runs, and if not, why.
type Status struct {
	Available  bool     `json:"available"`
	Reason     string   `json:"reason,omitempty"`
	PinDir     string   `json:"pinDir"`
	Interfaces []string `json:"interfaces,omitempty"`
	// SocketLBCgroup is where socket-level balancing is attached (empty: off).
	SocketLBCgroup string `json:"socketLBCgroup,omitempty"`
}

// Status reports the manager's state for /debug/config and `bpf status`.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Available: m.d != nil, PinDir: m.pinDir, SocketLBCgroup: m.sockCgroup}
	if m.failed != nil {
		s.Reason = m.failed.Error()
	}
	for name := range m.attached {
		s.Interfaces = append(s.Interfaces, name)
	}
	return s
}

// Apply makes the data path serve cfg. Without L4 services and nothing
// loaded it does nothing; a data path that cannot load is reported once
// and not retried on every reload.
func (m *Manager) Apply(cfg config.L4) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.d == nil {
		if len(cfg.Services) == 0 || m.failed != nil {
			return nil
		}
		d, err := Load(m.log, m.pinDir)
		if err != nil {
			m.failed = err
			m.log.Error("eBPF L4 data path unavailable: L4 services are not served; L7 keeps serving", "err", err.Error())
			return nil
		}
		m.d = d
		ctx, cancel := context.WithCancel(context.Background())
		m.stop, m.done = cancel, make(chan struct{})
		go m.expireLoop(ctx)
	}
	ifaces := cfg.Interfaces
	if len(ifaces) == 0 {
		name, err := defaultRouteInterface()
		if err != nil {
			return fmt.Errorf("l4: %w", err)
		}
		ifaces = []string{name}
	}
	want := map[string]bool{}
	for _, name := range ifaces {
		want[name] = true
		if m.attached[name] {
			continue
		}
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("l4: interface %s: %w", name, err)
		}
		if err := m.d.Attach(name, ifc.Index); err != nil {
			return fmt.Errorf("l4: %w", err)
		}
		m.attached[name] = true
		m.log.Info("L4 data path attached", "interface", name)
	}
	for name := range m.attached {
		if !want[name] {
			if err := m.d.Detach(name); err != nil {
				m.log.Warn("L4 detach failed", "interface", name, "err", err)
			}
			delete(m.attached, name)
		}
	}
	if err := m.d.SyncInterfaceAddrs(); err != nil {
		return fmt.Errorf("l4: %w", err)
	}
	svcs, err := ServicesFromConfig(cfg)
	if err != nil {
		return err
	}
	if err := m.d.Sync(svcs); err != nil {
		return fmt.Errorf("l4 sync: %w", err)
	}
	return m.applySocketLB(cfg.SocketLB)
}

// applySocketLB attaches or detaches the cgroup programs; they share the
// data path's maps, so they follow the same services.
func (m *Manager) applySocketLB(cfg config.SocketLB) error {
	if !cfg.Enabled {
		// Also detaches what a previous agent attached.
		if err := detachCgroupPins(m.pinDir); err != nil {
			return fmt.Errorf("l4 socket LB: %w", err)
		}
		if m.sock != nil {
			m.sock.Close()
			m.log.Info("socket-level balancing detached", "cgroup", m.sockCgroup)
			m.sock, m.sockCgroup = nil, ""
		}
		return nil
	}
	var cg string
	var err error
	if cfg.Cgroup == "" {
		cg, err = CgroupV2Root()
	} else {
		cg, err = ResolveCgroup(cfg.Cgroup)
	}
	if err != nil {
		return fmt.Errorf("l4 socket LB: %w", err)
	}
	if m.sock != nil && m.sockCgroup == cg {
		return nil
	}
	if m.sock == nil {
		s, err := LoadSocketLB(m.pinDir)
		if err != nil {
			return fmt.Errorf("l4 socket LB: %w", err)
		}
		m.sock = s
	} else if err := m.sock.DetachCgroup(); err != nil {
		return fmt.Errorf("l4 socket LB: %w", err)
	}
	if err := m.sock.AttachCgroup(cg); err != nil {
		return fmt.Errorf("l4 socket LB: %w", err)
	}
	m.sockCgroup = cg
	m.log.Info("socket-level balancing attached", "cgroup", cg)
	return nil
}

// Pinned gives read access to the maps, or nil when nothing is loaded.
func (m *Manager) Pinned() *Pinned {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.d == nil {
		return nil
	}
	return m.d.Pinned()
}

// Close stops expiry and releases handles; pinned state stays so traffic
// keeps flowing across a restart.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.d == nil {
		return nil
	}
	m.stop()
	<-m.done
	if m.sock != nil {
		m.sock.Close()
		m.sock = nil
	}
	err := m.d.Close()
	m.d = nil
	return err
}

func (m *Manager) expireLoop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		d := m.d
		m.mu.Unlock()
		if d == nil {
			continue
		}
		if n, err := d.Expire(DefaultTimeouts); err != nil {
			m.log.Warn("conntrack expiry failed", "err", err)
		} else if n > 0 {
			m.log.Debug("conntrack entries expired", "count", n)
		}
	}
}

// ServicesFromConfig converts the validated config into the map model.
func ServicesFromConfig(cfg config.L4) ([]Service, error) {
	out := make([]Service, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		vip, err := netip.ParseAddrPort(s.Address)
		if err != nil {
			return nil, fmt.Errorf("l4 service %s: %w", s.Name, err)
		}
		proto := ProtoTCP
		if s.Protocol == config.L4UDP {
			proto = ProtoUDP
		}
		svc := Service{Name: s.Name, VIP: vip.Addr(), Port: vip.Port(), Proto: proto, SNAT: !s.PreserveSource}
		for _, b := range s.Backends {
			ap, err := netip.ParseAddrPort(b.Address)
			if err != nil {
				return nil, fmt.Errorf("l4 service %s: %w", s.Name, err)
			}
			svc.Backends = append(svc.Backends, Backend{Addr: ap, Weight: uint32(b.Weight)})
		}
		out = append(out, svc)
	}
	return out, nil
}

// defaultRouteInterface is the interface of the IPv4 default route.
func defaultRouteInterface() (string, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
	if err != nil {
		return "", fmt.Errorf("read routes: %w", err)
	}
	for _, r := range routes {
		if r.LinkIndex > 0 {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("default route interface %s: %w", strconv.Itoa(r.LinkIndex), err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errors.New("no IPv4 default route: set l4.interfaces")
}
