package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/l4"
)

func TestBPFCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-cmdtest-%d", os.Getpid()))
	d, err := l4.Load(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); _ = l4.Cleanup(dir) })
	err = d.Sync([]l4.Service{{Name: "web", VIP: netip.MustParseAddr("198.51.100.7"), Port: 443, Proto: l4.ProtoTCP,
		Backends: []l4.Backend{{Addr: netip.MustParseAddrPort("10.9.0.2:8443"), Weight: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	for cmd, want := range map[string]string{
		"services":  "198.51.100.7:443",
		"backends":  "10.9.0.2:8443",
		"status":    "ea_conntrack",
		"conntrack": "PROTO",
	} {
		var out, errOut bytes.Buffer
		if rc := realMain([]string{"bpf", cmd, "--pin-dir", dir}, &out, &errOut); rc != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("bpf %s: rc %d, output lacks %q:\n%s%s", cmd, rc, want, out.String(), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if rc := realMain([]string{"bpf", "services", "--pin-dir", filepath.Join(dir, "nope")}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "is the L4 data path loaded?") {
		t.Errorf("missing pins: rc %d: %s", rc, errOut.String())
	}
	errOut.Reset()
	if rc := realMain([]string{"bpf", "status", "--pin-dir", filepath.Join(t.TempDir(), "edge-agent")}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "cannot run here") || !strings.Contains(errOut.String(), "not a BPF filesystem") {
		t.Errorf("status without bpffs: rc %d: %s", rc, errOut.String())
	}
	errOut.Reset()
	if rc := realMain([]string{"bpf", "status", "--pin-dir", filepath.Join(dir, "unused")}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "eBPF works here") {
		t.Errorf("status with nothing loaded: rc %d: %s", rc, errOut.String())
	}
	if rc := realMain([]string{"bpf", "cleanup", "--pin-dir", dir}, &out, &errOut); rc != 0 {
		t.Fatalf("cleanup: rc %d: %s", rc, errOut.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("pin dir still there after cleanup: %v", err)
	}
}
