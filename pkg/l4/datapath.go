// Package l4 loads and manages edge-agent's in-kernel L4 load balancer: the
// TC program from bpf/lb.c, its maps pinned under the pin directory, the
// links that attach it to interfaces, and the service and backend tables it
// reads, kept in step with the config by diffing.
package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where production pins every map and link.
const DefaultPinDir = "/sys/fs/bpf/edge-agent"

// Datapath is the loaded program and its pinned maps.
type Datapath struct {
	log    *slog.Logger
	pinDir string
	objs   lbObjects
	spec   *ebpf.CollectionSpec
	// forceClsact attaches with clsact even where tcx works (tests of the
	// fallback).
	forceClsact bool
	// tables caches what each service's Maglev table holds, so a sync
	// compares in memory instead of reading 16381 slots per service; it is
	// filled from the kernel the first time (after a restart).
	tables map[uint32][]uint32
	// computed caches Maglev tables by backend set across syncs.
	computed, nextComputed map[string][]uint32
}

// Load loads the program, reusing maps already pinned in pinDir (so flows,
// services and counters survive an agent restart) and pinning new ones.
func Load(log *slog.Logger, pinDir string) (*Datapath, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := preparePinDir(pinDir, "links", "maglev"); err != nil {
		return nil, err
	}
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	d := &Datapath{log: log, pinDir: pinDir, spec: spec, tables: map[uint32][]uint32{}}
	err = loadPinned(log, spec, pinDir, &d.objs)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF program: %+v", ve)
		}
		return nil, fmt.Errorf("load BPF program: %w", err)
	}
	return d, nil
}

// preparePinDir makes sure pinDir sits on a BPF filesystem and has subdirs.
func preparePinDir(pinDir string, subdirs ...string) error {
	if err := ensureBPFFS(filepath.Dir(pinDir)); err != nil {
		return err
	}
	for _, d := range subdirs {
		if err := os.MkdirAll(filepath.Join(pinDir, d), 0o700); err != nil {
			return fmt.Errorf("pin directory: %w", err)
		}
	}
	return nil
}

// ensureBPFFS mounts a BPF filesystem at /sys/fs/bpf when none is there
// (as Cilium does; a DaemonSet normally mounts the host's), and checks dir.
func ensureBPFFS(dir string) error {
	if checkBPFFS(dir) == nil {
		return nil
	}
	if dir == "/sys/fs/bpf" {
		if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", dir, err)
		}
	}
	return checkBPFFS(dir)
}

// checkBPFFS says clearly when dir is not on a BPF filesystem: without one
// nothing can be pinned and a restart would lose every flow.
func checkBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("bpffs at %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("%s is not a BPF filesystem (mount -t bpf bpf %s)", dir, dir)
	}
	return nil
}

// Close releases this process's handles. Pinned maps and links stay, so the
// program keeps balancing while the agent restarts.
func (d *Datapath) Close() error { return d.objs.Close() }

// PinDir is where the maps and links are pinned.
func (d *Datapath) PinDir() string { return d.pinDir }

// hook is one attach point of the program on an interface.
type hook struct {
	name string // "ingress" or "egress"
	tcx  ebpf.AttachType
	prog func(*lbPrograms) *ebpf.Program
}

// hooks: ingress balances and reverse-NATs replies arriving here; egress
// reverse-NATs replies the stack routes out of here.
var hooks = []hook{
	{"ingress", ebpf.AttachTCXIngress, func(p *lbPrograms) *ebpf.Program { return p.LbIngress }},
	{"egress", ebpf.AttachTCXEgress, func(p *lbPrograms) *ebpf.Program { return p.LbEgress }},
}

// linkPin names the pinned link of one attach point.
func (d *Datapath) linkPin(ifname, hook string) string {
	return filepath.Join(d.pinDir, "links", ifname+"-"+hook)
}

// Attach attaches the program to ifindex's ingress and egress with tcx
// and pins the links. If links are already pinned there (a restart), the
// new programs replace the old ones atomically: not one packet misses the
// balancer. Kernels without tcx get clsact filters. The caller's thread
// must be in the interface's network namespace.
func (d *Datapath) Attach(ifname string, ifindex int) error {
	for _, h := range hooks {
		if err := d.attachHook(ifname, ifindex, h); err != nil {
			return err
		}
	}
	return nil
}

func (d *Datapath) attachHook(ifname string, ifindex int, h hook) error {
	prog := h.prog(&d.objs.lbPrograms)
	pin := d.linkPin(ifname, h.name)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("replace %s program on %s: %w", h.name, ifname, err)
		}
		return nil
	}
	if d.forceClsact {
		return d.attachClsact(ifname, ifindex, h.name, prog)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: h.tcx})
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Kernels before 6.6 have no tcx: a clsact qdisc with a
		// direct-action filter does the same job.
		return d.attachClsact(ifname, ifindex, h.name, prog)
	}
	if err != nil {
		return fmt.Errorf("attach tcx %s on %s: %w", h.name, ifname, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin %s link for %s: %w", h.name, ifname, err)
	}
	return nil
}

// Detach removes the program from ifname (unpinning its links, or deleting
// its clsact filters).
func (d *Datapath) Detach(ifname string) error {
	var errs []error
	for _, h := range hooks {
		if pin := d.clsactPin(ifname, h.name); exists(pin) {
			errs = append(errs, detachClsact(pin, ifname, h.name))
			continue
		}
		l, err := link.LoadPinnedLink(d.linkPin(ifname, h.name), nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("no pinned %s link for %s: %w", h.name, ifname, err))
			continue
		}
		errs = append(errs, l.Unpin())
		l.Close()
	}
	return errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Cleanup detaches every pinned link and removes every pinned map: `edge-agent
// bpf cleanup`. It works without a loaded program, from the pins alone.
func Cleanup(pinDir string) error {
	links, _ := filepath.Glob(filepath.Join(pinDir, "links", "*"))
	var errs []error
	for _, p := range links {
		if ifname, hook, ok := parseClsactPin(filepath.Base(p)); ok {
			if err := detachClsact(p, ifname, hook); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			_ = os.Remove(p)
			continue
		}
		// Unpinning the last reference detaches the program.
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
		l.Close()
	}
	if err := os.RemoveAll(pinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Probe says whether this process can run the data path here: a BPF
// filesystem for the pins, and the privilege to create maps and load
// programs. It returns nil when it can, else the reason.
func Probe(pinDir string) error {
	if err := ensureBPFFS(filepath.Dir(pinDir)); err != nil {
		return err
	}
	spec, err := loadLb()
	if err != nil {
		return fmt.Errorf("read BPF object: %w", err)
	}
	// Load without pinning: nothing is attached or left behind.
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load BPF program: %w", err)
	}
	coll.Close()
	return nil
}

// loadPinned loads spec into objs with its maps pinned by name in pinDir,
// first replacing pins whose layout spec changed.
func loadPinned(log *slog.Logger, spec *ebpf.CollectionSpec, pinDir string, objs any) error {
	if err := replaceIncompatiblePins(log, spec, pinDir); err != nil {
		return err
	}
	return spec.LoadAndAssign(objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}})
}

// replaceIncompatiblePins removes pinned maps whose layout differs from
// spec's (an upgrade changed a map: more counters, a bigger table), so the
// load below creates them afresh instead of failing. Their contents are
// lost, which is logged; compatible maps, conntrack among them in a normal
// upgrade, carry over.
func replaceIncompatiblePins(log *slog.Logger, spec *ebpf.CollectionSpec, pinDir string) error {
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(pinDir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue // not pinned yet (or unreadable: the load reports it)
		}
		err = ms.Compatible(m)
		m.Close()
		if err == nil {
			continue
		}
		log.Warn("pinned map changed layout in this version; recreating it, its contents are lost", "map", name, "reason", err.Error())
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace pinned map %s: %w", name, err)
		}
	}
	return nil
}
