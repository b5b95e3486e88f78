package l4

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// clsactSuffix marks a clsact attachment in links/: the program is pinned
// there as the record (a filter, unlike a link, cannot be pinned).
const clsactSuffix = "-ingress-clsact"

// filterName tags our filter, so replacing or deleting never touches
// another program's.
const filterName = "edge-agent-lb"

func (d *Datapath) clsactPin(ifname string) string {
	return filepath.Join(d.pinDir, "links", ifname+clsactSuffix)
}

func clsactFilter(ifindex, progFD int) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    1,
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           progFD,
		Name:         filterName,
		DirectAction: true,
	}
}

// attachClsact adds (or keeps) a clsact qdisc and replaces our ingress
// filter with the current program: a restart swaps the program in place.
func (d *Datapath) attachClsact(ifname string, ifindex int) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return fmt.Errorf("clsact qdisc on %s: %w", ifname, err)
	}
	if err := netlink.FilterReplace(clsactFilter(ifindex, d.objs.LbIngress.FD())); err != nil {
		return fmt.Errorf("clsact filter on %s: %w", ifname, err)
	}
	pin := d.clsactPin(ifname)
	_ = os.Remove(pin) // the record of an older program
	// Pin a duplicate handle: pinning the program itself again would move
	// its one pin from the previous interface's record.
	rec, err := d.objs.LbIngress.Clone()
	if err != nil {
		return fmt.Errorf("record clsact attachment of %s: %w", ifname, err)
	}
	defer rec.Close()
	if err := rec.Pin(pin); err != nil {
		return fmt.Errorf("record clsact attachment of %s: %w", ifname, err)
	}
	return nil
}

// detachClsact deletes our filter from ifname (in the calling thread's
// network namespace) and the record. The qdisc stays: others may use it.
func detachClsact(pin, ifname string) error {
	defer os.Remove(pin)
	l, err := netlink.LinkByName(ifname)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil // gone with its interface (or its namespace)
	}
	if err != nil {
		return fmt.Errorf("detach clsact from %s: %w", ifname, err)
	}
	filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
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
