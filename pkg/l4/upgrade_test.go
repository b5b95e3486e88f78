package l4

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
)

// TestLoadOverOlderPins loads the data path over pins an older version
// left: a map whose layout changed is recreated, one that did not carries
// its contents over.
func TestLoadOverOlderPins(t *testing.T) {
	requireBPF(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	t.Cleanup(func() { _ = Cleanup(dir) })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	// An older, smaller pass-counter array.
	old := spec.Maps["ea_pass_stats"].Copy()
	old.MaxEntries--
	old.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(filepath.Join(dir, "ea_pass_stats")); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// A compatible map with state in it.
	same := spec.Maps["ea_ifaddrs"].Copy()
	same.Pinning = ebpf.PinNone
	keep, err := ebpf.NewMap(same)
	if err != nil {
		t.Fatal(err)
	}
	if err := keep.Pin(filepath.Join(dir, "ea_ifaddrs")); err != nil {
		t.Fatal(err)
	}
	keepInfo, err := keep.Info()
	if err != nil {
		t.Fatal(err)
	}
	keepID, _ := keepInfo.ID()
	keep.Close()

	d, err := Load(nil, dir)
	if err != nil {
		t.Fatalf("load over older pins: %v", err)
	}
	defer d.Close()
	if got := d.objs.EaPassStats.MaxEntries(); got != spec.Maps["ea_pass_stats"].MaxEntries {
		t.Errorf("ea_pass_stats has %d entries, want the new layout's %d", got, spec.Maps["ea_pass_stats"].MaxEntries)
	}
	info, err := d.objs.EaIfaddrs.Info()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := info.ID(); id != keepID {
		t.Errorf("compatible pinned map ea_ifaddrs was replaced (id %d, was %d)", id, keepID)
	}
}
