package l4

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// clsactSuffix marks a clsact attachment in links/ ("<if>-<hook>-clsact"):
// the program is pinned there as the record (a filter, unlike a link,
// cannot be pinned).
const clsactSuffix = "-clsact"

func parseClsactPin(base string) (ifname, hook string, ok bool) {
	rest, ok := strings.CutSuffix(base, clsactSuffix)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "-")
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

func clsactParent(hook string) uint32 {
	if hook == "egress" {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

// filterName tags our filter, so replacing or deleting never touches
// another program's.
const filterName = "edge-agent-lb"

func (d *Datapath) clsactPin(ifname, hook string) string {
	return filepath.Join(d.pinDir, "links", ifname+"-"+hook+clsactSuffix)
}

func clsactFilter(ifindex int, hook string, progFD int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    clsactParent(hook),
			Handle:    1,
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           progFD,
		Name:         filterName,
		DirectAction: true,
	}
}

// attachClsact adds (or keeps) a clsact qdisc and replaces our filter on
// hook with prog: a restart swaps the program in place.
func (d *Datapath) attachClsact(ifname string, ifindex int, hook string, prog *ebpf.Program) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return fmt.Errorf("clsact qdisc on %s: %w", ifname, err)
	}
	if err := netlink.FilterReplace(clsactFilter(ifindex, hook, prog.FD())); err != nil {
		return fmt.Errorf("clsact %s filter on %s: %w", hook, ifname, err)
	}
	pin := d.clsactPin(ifname, hook)
	_ = os.Remove(pin) // the record of an older program
	// Pin a duplicate handle: pinning the program itself again would move
	// its one pin from the previous interface's record.
	rec, err := prog.Clone()
	if err != nil {
		return fmt.Errorf("record clsact attachment of %s: %w", ifname, err)
	}
	defer rec.Close()
	if err := rec.Pin(pin); err != nil {
		return fmt.Errorf("record clsact attachment of %s: %w", ifname, err)
	}
	return nil
}

// detachClsact deletes our filter on hook from ifname (in the calling
// thread's network namespace) and the record. The qdisc stays: others may
// use it.
func detachClsact(pin, ifname, hook string) error {
	defer os.Remove(pin)
	l, err := netlink.LinkByName(ifname)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil // gone with its interface (or its namespace)
	}
	if err != nil {
		return fmt.Errorf("detach clsact from %s: %w", ifname, err)
	}
	filters, err := netlink.FilterList(l, clsactParent(hook))
	if err != nil {
		return fmt.Errorf("list filters of %s: %w", ifname, err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Name == filterName {
			if err := netlink.FilterDel(bf); err != nil {
				return fmt.Errorf("delete filter on %s: %w", ifname, err)
			}
		}
	}
	return nil
}

// clsactProgramID reads the program id a clsact record points at.
func clsactProgramID(pin string) (uint32, error) {
	p, err := ebpf.LoadPinnedProgram(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return uint32(id), nil
}
