package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Steering is the sk_lookup program that hands connections for L7
// addresses to the proxy's one listening socket.
type Steering struct {
	pinDir string
	objs   steerObjects
}

// SteerTarget is an (IP, port) to steer; an unspecified IP (0.0.0.0)
// steers the port on every address.
type SteerTarget struct {
	Addr  netip.AddrPort
	Proto uint8
}

// LoadSteering loads the program, reusing the pinned SOCKMAP and steering
// table in pinDir (a restarted agent finds the current socket there).
func LoadSteering(pinDir string) (*Steering, error) {
	if err := preparePinDir(pinDir, "links"); err != nil {
		return nil, err
	}
	s := &Steering{pinDir: pinDir}
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	if err := loadPinned(slog.Default(), spec, pinDir, &s.objs); err != nil {
		return nil, fmt.Errorf("load steering program: %w", err)
	}
	return s, nil
}

// Close releases handles; the pinned link and maps keep steering.
func (s *Steering) Close() error { return s.objs.Close() }

func (s *Steering) linkPin() string { return filepath.Join(s.pinDir, "links", "sk_lookup") }

// AttachNetns attaches the program to the network namespace at netnsPath
// (/proc/self/ns/net for the agent's own), or swaps it into the pinned link
// of a previous agent.
func (s *Steering) AttachNetns(netnsPath string) error {
	if l, err := link.LoadPinnedLink(s.linkPin(), nil); err == nil {
		defer l.Close()
		if err := l.Update(s.objs.Steer); err != nil {
			return fmt.Errorf("replace sk_lookup program: %w", err)
		}
		return nil
	}
	f, err := os.Open(netnsPath)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer f.Close()
	l, err := link.AttachNetNs(int(f.Fd()), s.objs.Steer)
	if err != nil {
		return fmt.Errorf("attach sk_lookup: %w", err)
	}
	defer l.Close()
	if err := l.Pin(s.linkPin()); err != nil {
		return fmt.Errorf("pin sk_lookup link: %w", err)
	}
	return nil
}

// SetProxySocket makes ln the socket steered connections go to. It must be
// a plain TCP socket (a SOCKMAP refuses MPTCP ones: listen with
// net.ListenConfig.SetMultipathTCP(false)).
func (s *Steering) SetProxySocket(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("listener exposes no socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		perr = s.objs.EaProxySock.Update(uint32(0), uint64(fd), ebpf.UpdateAny)
	}); err != nil {
		return err
	}
	if perr != nil {
		return fmt.Errorf("put the proxy socket into the SOCKMAP: %w", perr)
	}
	return nil
}

// SyncTargets makes the steering table hold exactly targets.
func (s *Steering) SyncTargets(targets []SteerTarget) error {
	want := map[steerSteerKey]bool{}
	for _, t := range targets {
		if !t.Addr.Addr().Is4() {
			return fmt.Errorf("steer %s: IPv4 only", t.Addr)
		}
		var ip uint32
		if !t.Addr.Addr().IsUnspecified() {
			ip = ip4(t.Addr.Addr())
		}
		// bpf_sk_lookup carries the local port in host order.
		want[steerSteerKey{Ip: ip, Port: t.Addr.Port(), Proto: t.Proto}] = true
	}
	var k steerSteerKey
	var v uint32
	var stale []steerSteerKey
	it := s.objs.EaSteer.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
		delete(want, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read steering table: %w", err)
	}
	for k := range want {
		if err := s.objs.EaSteer.Put(k, uint32(0)); err != nil {
			return fmt.Errorf("steer: %w", err)
		}
	}
	for _, k := range stale {
		if err := s.objs.EaSteer.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unsteer: %w", err)
		}
	}
	return nil
}

// SteerCounts returns connections steered, marked but without a proxy
// socket, and failed assignments, summed over CPUs.
func (s *Steering) SteerCounts() (steered, noSocket, failed uint64, err error) {
	return steerCounts(s.objs.EaSteerStats)
}

func steerCounts(m *ebpf.Map) (steered, noSocket, failed uint64, err error) {
	out := [3]uint64{}
	for i := range out {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return 0, 0, 0, err
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out[0], out[1], out[2], nil
}

// SteeringTable is what the steering maps hold, for `bpf status`.
type SteeringTable struct {
	Targets []SteerTarget
	// SocketCookie identifies the current proxy socket (0: none).
	SocketCookie uint64
	// Connections steered, marked but with no proxy socket, and whose
	// assignment failed, since the maps were pinned.
	Steered, NoSocket, Failed uint64
}

// ReadSteering reads the pinned steering maps in pinDir, or returns
// os.ErrNotExist when steering was never loaded there.
func ReadSteering(pinDir string) (*SteeringTable, error) {
	opts := &ebpf.LoadPinOptions{ReadOnly: true}
	steer, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "ea_steer"), opts)
	if err != nil {
		return nil, err
	}
	defer steer.Close()
	out := &SteeringTable{}
	var k steerSteerKey
	var v uint32
	it := steer.Iterate()
	for it.Next(&k, &v) {
		ip := netip.IPv4Unspecified()
		if k.Ip != 0 {
			ip = fromIP4(k.Ip)
		}
		out.Targets = append(out.Targets, SteerTarget{Addr: netip.AddrPortFrom(ip, k.Port), Proto: k.Proto})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read steering table: %w", err)
	}
	if sm, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "ea_proxy_sock"), opts); err == nil {
		// A SOCKMAP lookup from user space yields the socket's cookie.
		_ = sm.Lookup(uint32(0), &out.SocketCookie)
		sm.Close()
	}
	if stats, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "ea_steer_stats"), opts); err == nil {
		out.Steered, out.NoSocket, out.Failed, err = steerCounts(stats)
		stats.Close()
		if err != nil {
			return nil, fmt.Errorf("read steering counters: %w", err)
		}
	}
	return out, nil
}
