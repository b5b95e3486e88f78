package netnstest

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Building blocks for packages that build topologies of their own (several
// namespaces linked to each other rather than to the root namespace), using
// the same naming, subnet choice, cleanup and thread switching as New.

// ErrNameTaken is wrapped by the error NewNetns returns when a namespace of
// that name already exists; it belongs to someone else, so pick another.
var ErrNameTaken = errNameTaken

// NewNetns creates an empty network namespace (only lo, down) named name
// under /run/netns and registers t.Cleanup that deletes it by name.
//
// The name is claimed with O_EXCL before anything is created, so an existing
// namespace is never touched (the error then wraps ErrNameTaken). Cleanup is
// registered first, so a failure or panic half-way still removes whatever was
// created. Cleanup unmounts with MNT_DETACH: sockets still open in the
// namespace keep it alive until they close, then the kernel frees it along
// with its links. Delete links explicitly, by name, if that must be
// synchronous; register that cleanup after calling NewNetns so it runs first.
func NewNetns(t testing.TB, name string) error {
	t.Helper()
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("netns name %q is not a plain file name", name)
	}
	r := &resources{name: name}
	t.Cleanup(func() {
		if err := r.release(); err != nil {
			t.Errorf("netnstest: cleanup of netns %s: %v", name, err)
		}
	})
	if err := createNetns(r); err != nil {
		if relErr := r.release(); relErr != nil {
			err = errors.Join(err, relErr)
		}
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	return nil
}

// createNetns creates the namespace file and mounts a fresh namespace on it,
// as Host.create does, recording each step in r.
func createNetns(r *resources) error {
	path := filepath.Join(netnsDir, r.name)
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, fs.ErrExist) {
		return errNameTaken
	}
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	r.nsFile = true
	return onNetnsThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns: %w", err)
		}
		r.nsMounted = true
		return nil
	})
}

// NetnsPath is the file of the namespace called name (/run/netns/name).
func NetnsPath(name string) string { return filepath.Join(netnsDir, name) }

// RunIn runs fn on a locked OS thread switched into the namespace called
// name, exactly like Host.Run: same rules for fn, and a panic in fn is
// re-raised in the caller. Only the network namespace changes; the mount
// namespace stays the process's, so /sys/fs/bpf and cgroup2 stay visible.
func RunIn(name string, fn func() error) error {
	ns, err := netns.GetFromPath(NetnsPath(name))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer ns.Close()
	return onNetnsThread(func() error { return netns.Set(ns) }, fn)
}

// FreeSubnets returns n distinct /24s in 10.0.0.0/8 that overlap no address
// or route in the root namespace and not 10.96.0.0/12, chosen the way New
// chooses its subnet and under the same lock (so a subnet a concurrent New
// has chosen but not yet added is seen).
//
// Unlike New it claims nothing in the root namespace, so a later New, here or
// in another process, may pick one of them for a root-namespace veth. Use
// them only inside namespaces that are not linked to the root namespace,
// where that is harmless.
func FreeSubnets(n int) ([]netip.Prefix, error) {
	if n < 1 {
		return nil, fmt.Errorf("FreeSubnets(%d): want n >= 1", n)
	}
	unlock, err := lockSubnets()
	if err != nil {
		return nil, err
	}
	defer unlock()
	used, err := usedPrefixes()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for len(out) < n {
		id := nextID()
		found := false
		for attempt := range maxSubnetAttempts {
			p := candidate(id, attempt)
			if !overlapsAny(p, used) && !overlapsAny(p, reserved) && !overlapsAny(p, out) {
				out, found = append(out, p), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no free /24 in 10.0.0.0/8 after %d attempts", maxSubnetAttempts)
		}
	}
	return out, nil
}
