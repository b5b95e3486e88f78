package l4

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SocketLB balances node-local clients at the socket: cgroup connect4 and
// sendmsg4 send a socket aimed at a service VIP to a backend, getpeername4
// and recvmsg4 show the VIP again. It reads lb.c's maps through their pins.
type SocketLB struct {
	pinDir string
	objs   sockObjects
}

// LoadSocketLB loads the programs, sharing the maps pinned in pinDir.
func LoadSocketLB(pinDir string) (*SocketLB, error) {
	if err := preparePinDir(pinDir, "links"); err != nil {
		return nil, err
	}
	s := &SocketLB{pinDir: pinDir}
	spec, err := loadSock()
	if err != nil {
		return nil, fmt.Errorf("read BPF object: %w", err)
	}
	if err := loadPinned(slog.Default(), spec, pinDir, &s.objs); err != nil {
		return nil, fmt.Errorf("load socket LB programs: %w", err)
	}
	return s, nil
}

// Close releases handles; pinned links keep the programs attached.
func (s *SocketLB) Close() error { return s.objs.Close() }

// AttachCgroup attaches the four programs to the cgroup v2 directory cg
// (the root in production: every process on the node), pinning the links;
// after a restart the pinned links get the new programs in place.
func (s *SocketLB) AttachCgroup(cg string) error {
	for _, a := range []struct {
		name string
		typ  ebpf.AttachType
		prog *ebpf.Program
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect, s.objs.SockConnect4},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, s.objs.SockSendmsg4},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, s.objs.SockGetpeername4},
		{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, s.objs.SockRecvmsg4},
	} {
		pin := filepath.Join(s.pinDir, "links", "cgroup-"+a.name)
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			err = l.Update(a.prog)
			l.Close()
			if err != nil {
				return fmt.Errorf("replace %s program: %w", a.name, err)
			}
			continue
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: a.typ, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.name, cg, err)
		}
		err = l.Pin(pin)
		l.Close()
		if err != nil {
			return fmt.Errorf("pin %s link: %w", a.name, err)
		}
	}
	return nil
}

// DetachCgroup detaches the programs (removes their pinned links).
func (s *SocketLB) DetachCgroup() error { return detachCgroupPins(s.pinDir) }

// detachCgroupPins removes the pinned cgroup links in pinDir, which
// detaches the programs even when a previous agent attached them.
func detachCgroupPins(pinDir string) error {
	for _, name := range []string{"connect4", "sendmsg4", "getpeername4", "recvmsg4"} {
		pin := filepath.Join(pinDir, "links", "cgroup-"+name)
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("detach %s: %w", name, err)
		}
	}
	return nil
}

// ResolveCgroup returns dir when it is a cgroup v2 directory, else the
// cgroup v2 hierarchy mounted below it: a pod mounts the host's
// /sys/fs/cgroup at, say, /host/sys/fs/cgroup, and the hierarchy sits there
// (unified hosts) or in its unified/ subdirectory (hybrid ones).
func ResolveCgroup(dir string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return dir, nil
	}
	mounts, err := cgroup2Mounts()
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if strings.HasPrefix(m, strings.TrimSuffix(dir, "/")+"/") {
			return m, nil
		}
	}
	return "", fmt.Errorf("cgroup %s: neither a cgroup v2 directory nor above a cgroup2 mount", dir)
}

// CgroupV2Root finds where the cgroup v2 hierarchy is mounted: it differs
// between hosts (/sys/fs/cgroup, /sys/fs/cgroup/unified, ...).
func CgroupV2Root() (string, error) {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", errors.New("no cgroup2 mount")
	}
	return mounts[0], nil
}

// cgroup2Mounts lists cgroup2 mount points in mount order.
func cgroup2Mounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				out = append(out, fields[4])
			}
		}
	}
	return out, sc.Err()
}
