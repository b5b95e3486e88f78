package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// DenyManager runs the node-wide XDP deny list for the agent: it loads the
// program the first time the config denies a CIDR, keeps the trie in step
// with every snapshot, attaches to the configured interfaces, and detaches
// and unpins everything (by name) when the list becomes empty. It pins in
// the same directory as the L4 data path.
type DenyManager struct {
	log    *slog.Logger
	pinDir string

	mu       sync.Mutex
	d        *Deny
	attached map[string]XDPMode
	rules    int
	lastErr  error
	// forceGeneric attaches in generic mode (tests of the fallback).
	forceGeneric bool
}

// NewDenyManager returns a manager pinning under pinDir (DefaultPinDir in
// production).
func NewDenyManager(log *slog.Logger, pinDir string) *DenyManager {
	if log == nil {
		log = slog.Default()
	}
	return &DenyManager{log: log, pinDir: pinDir, attached: map[string]XDPMode{}}
}

// DenyStatus says what the deny list enforces, for /debug/config.
type DenyStatus struct {
	Loaded bool `json:"loaded"`
	Rules  int  `json:"rules"`
	// Interfaces maps each interface to its XDP mode (native or generic).
	Interfaces map[string]XDPMode `json:"interfaces,omitempty"`
	Error      string             `json:"error,omitempty"`
}

// Status reports the manager's state.
func (m *DenyManager) Status() DenyStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := DenyStatus{Loaded: m.d != nil, Rules: m.rules}
	if len(m.attached) > 0 {
		s.Interfaces = map[string]XDPMode{}
		for k, v := range m.attached {
			s.Interfaces[k] = v
		}
	}
	if m.lastErr != nil {
		s.Error = m.lastErr.Error()
	}
	return s
}

// Apply makes the kernel enforce cfg. l4Interfaces (config.L4.Interfaces)
// are the interfaces used when cfg names none; with neither, the default
// route's interface. The caller's thread must be in the interfaces'
// network namespace. An error leaves what was enforced before in place as
// far as possible (a trie that synced stays synced); the next snapshot
// tries again.
func (m *DenyManager) Apply(cfg config.DenyList, l4Interfaces []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.apply(cfg, l4Interfaces)
	m.lastErr = err
	return err
}

func (m *DenyManager) apply(cfg config.DenyList, l4Interfaces []string) error {
	cidrs, err := ParseDenyCIDRs(cfg.CIDRs)
	if err != nil {
		return err
	}
	if len(cidrs) == 0 {
		if m.d != nil {
			m.d.Close()
			m.d, m.rules = nil, 0
			m.attached = map[string]XDPMode{}
			m.log.Info("XDP deny list empty: detached")
		}
		// Also removes what a previous agent pinned.
		if err := CleanupDeny(m.pinDir); err != nil {
			return fmt.Errorf("xdp deny list cleanup: %w", err)
		}
		return nil
	}
	ifaces := cfg.Interfaces
	if len(ifaces) == 0 {
		ifaces = l4Interfaces
	}
	if len(ifaces) == 0 {
		name, err := defaultRouteInterface()
		if err != nil {
			return fmt.Errorf("xdp deny list: %w", err)
		}
		ifaces = []string{name}
	}
	if m.d == nil {
		d, err := LoadDeny(m.log, m.pinDir)
		if err != nil {
			return fmt.Errorf("xdp deny list: %w", err)
		}
		d.forceGeneric = m.forceGeneric
		m.d = d
	}
	// The trie first: a program attached below drops from its first packet.
	if err := m.d.Sync(cidrs); err != nil {
		return fmt.Errorf("xdp deny list sync: %w", err)
	}
	m.rules = len(cidrs)
	want := map[string]bool{}
	var errs []error
	for _, name := range ifaces {
		want[name] = true
		if _, ok := m.attached[name]; ok {
			continue
		}
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("xdp deny list: interface %s: %w", name, err))
			continue
		}
		mode, err := m.d.Attach(name, ifc.Index)
		if err != nil {
			errs = append(errs, fmt.Errorf("xdp deny list: %w", err))
			continue
		}
		m.attached[name] = mode
		m.log.Info("XDP deny list attached", "interface", name, "mode", string(mode), "rules", len(cidrs))
	}
	// Interfaces no longer listed, this agent's or a previous one's.
	pinned, err := denyLinks(m.pinDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range pinned {
		if want[name] {
			continue
		}
		if err := m.d.Detach(name); err != nil {
			errs = append(errs, fmt.Errorf("xdp deny list: detach %s: %w", name, err))
			continue
		}
		delete(m.attached, name)
		m.log.Info("XDP deny list detached", "interface", name)
	}
	return errors.Join(errs...)
}

// Stats returns the rules with their counters, or nil when nothing is loaded.
func (m *DenyManager) Stats() ([]RuleStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.d == nil {
		return nil, nil
	}
	return m.d.Stats()
}

// Interfaces lists the attached interfaces, sorted.
func (m *DenyManager) Interfaces() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.attached))
	for k := range m.attached {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Close releases handles; the pinned links and maps keep dropping across a
// restart.
func (m *DenyManager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.d == nil {
		return nil
	}
	err := m.d.Close()
	m.d = nil
	m.attached = map[string]XDPMode{}
	return err
}
