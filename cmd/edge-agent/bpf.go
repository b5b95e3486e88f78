package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/edge-agent/edge-agent/pkg/l4"
)

const bpfUsage = `Usage:
  edge-agent bpf status     [--pin-dir DIR]   attach points, map fill levels, pass/drop counters
  edge-agent bpf services   [--pin-dir DIR]   L4 services with their counters
  edge-agent bpf backends   [--pin-dir DIR]   backends with their counters
  edge-agent bpf conntrack  [--pin-dir DIR]   tracked flows
  edge-agent bpf deny       [--pin-dir DIR]   XDP deny list: interfaces (mode), rules with their drop counters
  edge-agent bpf cleanup    [--pin-dir DIR]   detach the program and remove every pinned map
`

// cmdBPF reads the pinned maps: no raw bytes, no bpftool needed.
func cmdBPF(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bpfUsage)
		return 2
	}
	fs := flag.NewFlagSet("bpf "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	pinDir := fs.String("pin-dir", l4.DefaultPinDir, "where the maps and links are pinned")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if args[0] == "cleanup" {
		if err := l4.Cleanup(*pinDir); err != nil {
			fmt.Fprintf(stderr, "edge-agent bpf cleanup: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "removed %s\n", *pinDir)
		return 0
	}
	if args[0] == "deny" {
		// The deny list runs with or without the L4 data path.
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		err := bpfDeny(w, *pinDir)
		w.Flush()
		if err != nil {
			fmt.Fprintf(stderr, "edge-agent bpf deny: %v\n", err)
			return 1
		}
		return 0
	}
	p, err := l4.OpenPinned(*pinDir)
	if err != nil && args[0] == "status" {
		// Steering runs without L4 services: show it on its own.
		if _, serr := l4.ReadSteering(*pinDir); serr == nil {
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "L4 DATA PATH	not loaded (no L4 services)")
			serr = bpfSteering(w, *pinDir)
			w.Flush()
			if serr != nil {
				fmt.Fprintf(stderr, "edge-agent bpf status: %v\n", serr)
				return 1
			}
			return 0
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "edge-agent bpf: %v\n", err)
		if args[0] == "status" {
			// Say why nothing is loaded, if something prevents it.
			if perr := l4.Probe(*pinDir); perr != nil {
				fmt.Fprintf(stderr, "edge-agent bpf: the L4 data path cannot run here: %v\n", perr)
			} else {
				fmt.Fprintln(stderr, "edge-agent bpf: eBPF works here; the agent has loaded no L4 services yet")
			}
		}
		return 1
	}
	defer p.Close()
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	switch args[0] {
	case "status":
		err = bpfStatus(w, p)
		if err == nil {
			err = bpfSteering(w, *pinDir)
		}
	case "services":
		err = bpfServices(w, p)
	case "backends":
		err = bpfBackends(w, p)
	case "conntrack":
		err = bpfConntrack(w, p)
	default:
		fmt.Fprintf(stderr, "edge-agent bpf: unknown command %q\n\n%s", args[0], bpfUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "edge-agent bpf %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func bpfStatus(w io.Writer, p *l4.Pinned) error {
	att, err := p.Attachments()
	fmt.Fprintln(w, "ATTACHED\tIFINDEX\tPROGRAM ID")
	for _, a := range att {
		fmt.Fprintf(w, "%s\t%d\t%d\n", a.Pin, a.Interface, a.ProgramID)
	}
	if err != nil {
		return err
	}
	fill, err := p.Fill()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\nMAP\tENTRIES\tMAX\tFILL")
	for _, f := range fill {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.1f%%\n", f.Name, f.Entries, f.MaxEntries, 100*float64(f.Entries)/float64(f.MaxEntries))
	}
	passed, err := p.Passed()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "\nNOT BALANCED\tPACKETS")
	for _, r := range l4.PassReasons {
		fmt.Fprintf(w, "%s\t%d\n", r, passed[r])
	}
	return nil
}

func protoName(p uint8) string {
	switch p {
	case l4.ProtoTCP:
		return "tcp"
	case l4.ProtoUDP:
		return "udp"
	}
	return fmt.Sprint(p)
}

func bpfServices(w io.Writer, p *l4.Pinned) error {
	svcs, err := p.Services()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tSERVICE\tPROTO\tBACKEND IDS\tPACKETS\tBYTES\tNEW FLOWS")
	for _, s := range svcs {
		fmt.Fprintf(w, "%d\t%s\t%s\t%v\t%d\t%d\t%d\n", s.ID, s.VIP, protoName(s.Proto), s.Backends, s.Counters.Packets, s.Counters.Bytes, s.Counters.NewFlows)
	}
	return nil
}

func bpfBackends(w io.Writer, p *l4.Pinned) error {
	bes, err := p.Backends()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "ID\tBACKEND\tPACKETS\tBYTES\tNEW FLOWS")
	for _, b := range bes {
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\n", b.ID, b.Addr, b.Counters.Packets, b.Counters.Bytes, b.Counters.NewFlows)
	}
	return nil
}

func bpfConntrack(w io.Writer, p *l4.Pinned) error {
	flows, err := p.Flows()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "PROTO\tSOURCE\tDESTINATION\tDIRECTION\tNAT TO\tSERVICE\tBACKEND\tSTATE\tIDLE")
	for _, f := range flows {
		dir, state := "forward", "open"
		if f.Reverse {
			dir = "reply"
		}
		if f.Closing {
			state = "closing"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", protoName(f.Proto), f.Src, f.Dst, dir, f.NAT, f.ServiceID, f.BackendID, state, f.Idle.Round(1e6))
	}
	return nil
}

// bpfSteering shows the sk_lookup steering table and the current socket.
func bpfSteering(w io.Writer, pinDir string) error {
	st, err := l4.ReadSteering(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(w, "\nSTEERING\tnot loaded")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nSTEERED TO THE PROXY\tPROTO\t(proxy socket cookie %d)\n", st.SocketCookie)
	for _, t := range st.Targets {
		fmt.Fprintf(w, "%s\t%s\n", t.Addr, protoName(t.Proto))
	}
	fmt.Fprintf(w, "\nCONNECTIONS STEERED\t%d\nNO PROXY SOCKET\t%d\nASSIGN FAILED\t%d\n", st.Steered, st.NoSocket, st.Failed)
	return nil
}

// bpfDeny shows where the XDP deny program runs and what each rule dropped.
func bpfDeny(w io.Writer, pinDir string) error {
	rules, err := l4.ReadDenyStats(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(w, "XDP DENY LIST\tnot loaded (security.denyList.cidrs is empty)")
		return nil
	}
	if err != nil {
		return err
	}
	att, aerr := l4.DenyAttachments(pinDir)
	fmt.Fprintln(w, "INTERFACE\tIFINDEX\tMODE\tPROGRAM ID")
	for _, a := range att {
		mode := string(a.Mode)
		if a.Ifindex == 0 {
			mode = "detached (interface gone)"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", a.Interface, a.Ifindex, mode, a.ProgramID)
	}
	fmt.Fprintln(w, "\nRULE\tCIDR\tPACKETS\tBYTES")
	for _, r := range rules {
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\n", r.Index, r.CIDR, r.Packets, r.Bytes)
	}
	return aerr
}
