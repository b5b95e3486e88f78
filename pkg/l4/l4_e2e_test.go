package l4

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edge-agent/edge-agent/internal/l4test"
	"github.com/edge-agent/edge-agent/pkg/config"
)

// lbWorld is a client, a node running the program on every link, and
// backends that answer with their own name, all in network namespaces.
type lbWorld struct {
	t    *testing.T
	topo *l4test.Topology
	d    *Datapath
	// names[i] is what backend i answers.
	names []string
}

const httpPort, udpPort = 8080, 5300

func newLBWorld(t *testing.T) *lbWorld {
	t.Helper()
	requireBPF(t)
	w := &lbWorld{t: t, topo: l4test.New(t, 3)}
	w.d = testDatapath(t)
	w.attach(w.d)
	w.startBackends()
	return w
}

// startBackends serves HTTP and UDP echo on every backend.
func (w *lbWorld) startBackends() {
	t := w.t
	for i, b := range w.topo.Backends {
		name := fmt.Sprintf("backend-%d", i+1)
		w.names = append(w.names, name)
		ln := b.Listen(t, netip.AddrPortFrom(b.Addr, httpPort).String())
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "%s %s", name, r.RemoteAddr)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		uc := b.ListenUDP(t, netip.AddrPortFrom(b.Addr, udpPort).String())
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := uc.ReadFromUDP(buf)
				if err != nil {
					return
				}
				_, _ = uc.WriteToUDP([]byte(name+" "+string(buf[:n])), from)
			}
		}()
	}
}

// attach puts d's program on every node link (from a thread in the node's
// namespace: ifindexes resolve there).
func (w *lbWorld) attach(d *Datapath) {
	w.t.Helper()
	err := w.topo.Node.Run(func() error {
		for _, name := range w.topo.NodeLinks {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			if err := d.Attach(name, ifc.Index); err != nil {
				return err
			}
		}
		return d.SyncInterfaceAddrs()
	})
	if err != nil {
		w.t.Fatalf("attach: %v", err)
	}
}

func (w *lbWorld) services(backends ...int) []Service {
	var tcp, udp []Backend
	for _, i := range backends {
		a := w.topo.Backends[i].Addr
		tcp = append(tcp, Backend{Addr: netip.AddrPortFrom(a, httpPort), Weight: 1})
		udp = append(udp, Backend{Addr: netip.AddrPortFrom(a, udpPort), Weight: 1})
	}
	return []Service{
		{Name: "web", VIP: w.topo.VIP, Port: 80, Proto: ProtoTCP, Backends: tcp},
		{Name: "dns", VIP: w.topo.VIP, Port: 53, Proto: ProtoUDP, Backends: udp},
	}
}

func (w *lbWorld) sync(backends ...int) {
	w.t.Helper()
	if err := w.d.Sync(w.services(backends...)); err != nil {
		w.t.Fatalf("sync: %v", err)
	}
}

// conn is a keep-alive HTTP/1.1 connection from the client to the VIP.
type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func (w *lbWorld) dialVIP(localPort int) (*conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if localPort != 0 {
		d.LocalAddr = &net.TCPAddr{IP: w.topo.Client.Addr.AsSlice(), Port: localPort}
	}
	var c net.Conn
	err := w.topo.Client.Run(func() error {
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(w.topo.VIP, 80).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{c: c, br: bufio.NewReader(c)}, nil
}

// get sends one request on the connection and returns the answering backend.
func (c *conn) get() (string, error) {
	name, _, err := c.getFrom()
	return name, err
}

// getFrom also returns the client address the backend saw.
func (c *conn) getFrom() (string, string, error) {
	_ = c.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	name, from, _ := strings.Cut(string(b), " ")
	return name, from, nil
}

func (w *lbWorld) getOnce(localPort int) string {
	w.t.Helper()
	c, err := w.dialVIP(localPort)
	if err != nil {
		w.t.Fatalf("dial VIP: %v", err)
	}
	defer c.c.Close()
	name, err := c.get()
	if err != nil {
		w.t.Fatalf("request to VIP: %v", err)
	}
	return name
}

func TestL4BalancesTCPAndUDP(t *testing.T) {
	w := newLBWorld(t)
	w.sync(0, 1, 2)
	const conns = 60
	hits := map[string]int{}
	for range conns {
		hits[w.getOnce(0)]++
	}
	for _, n := range w.names {
		if hits[n] == 0 {
			t.Fatalf("TCP spread %v: %s got nothing", hits, n)
		}
	}
	t.Logf("TCP: %d connections spread %v", conns, hits)

	// UDP: a connected socket only accepts replies from the VIP, so an
	// answer proves the reverse NAT.
	udpHits := map[string]int{}
	for i := range 30 {
		var reply string
		err := w.topo.Client.Run(func() error {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: w.topo.Client.Addr.AsSlice(), Port: 20000 + i},
				&net.UDPAddr{IP: w.topo.VIP.AsSlice(), Port: 53})
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			reply = string(buf[:n])
			return err
		})
		if err != nil {
			t.Fatalf("UDP via VIP: %v", err)
		}
		name, rest, _ := strings.Cut(reply, " ")
		if rest != "ping" {
			t.Fatalf("UDP reply %q", reply)
		}
		udpHits[name]++
	}
	if len(udpHits) != 3 {
		t.Fatalf("UDP spread %v", udpHits)
	}

	// The counters match the traffic: one new flow per connection.
	svcs, err := w.d.Pinned().Services()
	if err != nil {
		t.Fatal(err)
	}
	flows := map[uint8]uint64{}
	for _, s := range svcs {
		flows[s.Proto] = s.Counters.NewFlows
	}
	if flows[ProtoTCP] != conns || flows[ProtoUDP] != 30 {
		t.Fatalf("new flows counted %v, want tcp %d udp 30", flows, conns)
	}
	bes, err := w.d.Pinned().Backends()
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, b := range bes {
		sum += b.Counters.NewFlows
	}
	if sum != conns+30 {
		t.Fatalf("backend new flows %d, want %d", sum, conns+30)
	}
}

func TestL4BackendRemovalKeepsEstablishedConnections(t *testing.T) {
	w := newLBWorld(t)
	w.sync(0, 1, 2)
	// Established connections, one per backend.
	open := map[string]*conn{}
	for i := 0; len(open) < 3 && i < 200; i++ {
		c, err := w.dialVIP(0)
		if err != nil {
			t.Fatal(err)
		}
		name, err := c.get()
		if err != nil {
			t.Fatal(err)
		}
		if open[name] == nil {
			open[name] = c
			t.Cleanup(func() { c.c.Close() })
		} else {
			c.c.Close()
		}
	}
	if len(open) != 3 {
		t.Fatalf("connections reached only %d backends", len(open))
	}
	// Take backend 3 out of the set: every established connection lives
	// on, even the one on backend 3 (it finishes where it started).
	w.sync(0, 1)
	for name, c := range open {
		got, err := c.get()
		if err != nil || got != name {
			t.Fatalf("established connection to %s after removing %s: got %q, %v", name, w.names[2], got, err)
		}
	}
	for range 30 {
		if got := w.getOnce(0); got == w.names[2] {
			t.Fatal("a new connection went to the removed backend")
		}
	}
}

func TestL4RestartKeepsConnections(t *testing.T) {
	w := newLBWorld(t)
	w.sync(0, 1, 2)
	c, err := w.dialVIP(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	first, err := c.get()
	if err != nil {
		t.Fatal(err)
	}
	// The agent stops: its handles go, the pinned program keeps working.
	pinDir := w.d.PinDir()
	if err := w.d.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.get(); err != nil || got != first {
		t.Fatalf("while the agent is down: %q, %v", got, err)
	}
	// A new agent loads, re-opens the pinned maps, replaces the program on
	// the pinned links and syncs the same config: nothing is flushed.
	d2, err := Load(nil, pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	w.attach(d2)
	if err := d2.Sync(w.services(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got, err := c.get(); err != nil || got != first {
			t.Fatalf("after restart: %q, %v (was %s)", got, err, first)
		}
	}
	flows, err := d2.Flows()
	if err != nil || len(flows) == 0 {
		t.Fatalf("conntrack after restart: %d flows, %v", len(flows), err)
	}
}

// The agent's path: config → Manager (attach to the configured interfaces,
// sync) → traffic → metrics from the collector.
func TestL4ManagerFromConfig(t *testing.T) {
	w := newLBWorld(t)
	// The manager takes over the links from the world's datapath: its own
	// pins, its own program.
	err := w.topo.Node.Run(func() error {
		for _, name := range w.topo.NodeLinks {
			if err := w.d.Detach(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	t.Cleanup(func() { _ = Cleanup(pinDir) })
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), pinDir)
	t.Cleanup(func() { _ = m.Close() })
	cfg := config.L4{Interfaces: w.topo.NodeLinks}
	cfg.Services = []config.L4Service{{Name: "web", Address: netip.AddrPortFrom(w.topo.VIP, 80).String(), Protocol: config.L4TCP}}
	for _, b := range w.topo.Backends {
		cfg.Services[0].Backends = append(cfg.Services[0].Backends, config.Endpoint{Address: netip.AddrPortFrom(b.Addr, httpPort).String(), Weight: 1})
	}
	// Interface names resolve in the node's namespace: apply from there, as
	// the agent does in its own.
	if err := w.topo.Node.Run(func() error { return m.Apply(cfg) }); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if st := m.Status(); !st.Available || len(st.Interfaces) != len(w.topo.NodeLinks) {
		t.Fatalf("status %+v", st)
	}
	for range 12 {
		w.getOnce(0)
	}
	var families []*dto.MetricFamily
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(m))
	families, err = reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if c := mt.GetCounter(); c != nil {
				got[key] = c.GetValue()
			} else if g := mt.GetGauge(); g != nil {
				got[key] = g.GetValue()
			}
		}
	}
	svc := "edge_agent_l4_service_new_flows_total,service=" + netip.AddrPortFrom(w.topo.VIP, 80).String() + "/tcp"
	if got[svc] != 12 || got["edge_agent_l4_datapath_available"] != 1 || got["edge_agent_l4_map_max_entries,map=ea_conntrack"] == 0 {
		t.Fatalf("metrics: %s=%v available=%v\n%v", svc, got[svc], got["edge_agent_l4_datapath_available"], got)
	}
	// Shrinking the config detaches from interfaces no longer listed.
	cfg.Interfaces = w.topo.NodeLinks[:1]
	if err := w.topo.Node.Run(func() error { return m.Apply(cfg) }); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); len(st.Interfaces) != 1 {
		t.Fatalf("after shrinking: %+v", st)
	}
}

// A manager that cannot load says why and does not fail the agent.
func TestL4ManagerUnavailable(t *testing.T) {
	dir := t.TempDir() // not a bpffs
	m := NewManager(slog.New(slog.NewTextHandler(io.Discard, nil)), filepath.Join(dir, "edge-agent"))
	err := m.Apply(config.L4{Services: []config.L4Service{{Name: "x", Address: "10.0.0.1:80", Protocol: config.L4TCP}}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if st := m.Status(); st.Available || !strings.Contains(st.Reason, "not a BPF filesystem") {
		t.Fatalf("status %+v", st)
	}
	if m.Pinned() != nil {
		t.Fatal("no maps without a data path")
	}
}

// SNAT: backends see the node's address on their link, and the client
// still talks to the VIP; source-preserving: backends see the client.
func TestL4ReturnPathModes(t *testing.T) {
	w := newLBWorld(t)
	for _, snat := range []bool{true, false} {
		svcs := w.services(0, 1, 2)
		for i := range svcs {
			svcs[i].SNAT = snat
		}
		if err := w.d.Sync(svcs); err != nil {
			t.Fatal(err)
		}
		for range 9 {
			c, err := w.dialVIP(0)
			if err != nil {
				t.Fatal(err)
			}
			name, from, err := c.getFrom()
			c.c.Close()
			if err != nil {
				t.Fatalf("snat=%v: %v", snat, err)
			}
			ap, err := netip.ParseAddrPort(from)
			if err != nil {
				t.Fatalf("backend saw %q", from)
			}
			var i int
			fmt.Sscanf(name, "backend-%d", &i)
			want := w.topo.Client.Addr
			if snat {
				want = w.topo.NodeAddrs[i] // NodeAddrs[0] faces the client
			}
			if ap.Addr() != want {
				t.Fatalf("snat=%v: %s saw the client as %s, want %s", snat, name, ap.Addr(), want)
			}
		}
	}
	flows, err := w.d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	snatted := 0
	for _, f := range flows {
		if f.Peer.IsValid() {
			snatted++
		}
	}
	if snatted == 0 {
		t.Fatal("conntrack shows no SNAT flows")
	}
}

// The clsact fallback (kernels without tcx) balances the same way, and a
// second attach replaces the program in place.
func TestL4ClsactFallback(t *testing.T) {
	requireBPF(t)
	w := &lbWorld{t: t, topo: l4test.New(t, 3)}
	w.d = testDatapath(t)
	w.d.forceClsact = true
	w.attach(w.d)
	w.startBackends()
	w.sync(0, 1, 2)
	seen := map[string]bool{}
	for range 45 { // enough that missing a backend by chance is ~1e-7
		seen[w.getOnce(0)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("clsact: reached %v", seen)
	}
	w.attach(w.d) // replace in place
	w.getOnce(0)
	att, err := w.d.Pinned().Attachments()
	if err != nil || len(att) != 2*len(w.topo.NodeLinks) { // ingress and egress
		t.Fatalf("attachments %+v, %v", att, err)
	}
	if err := w.topo.Node.Run(func() error {
		for _, name := range w.topo.NodeLinks {
			if err := w.d.Detach(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.dialVIP(0); err == nil {
		t.Fatal("the VIP still answers after detaching")
	}
}

// Source-preserving with the program only on the client-facing interface:
// replies cross the node's stack and the egress hook gives them the VIP.
func TestL4EgressReverseNAT(t *testing.T) {
	requireBPF(t)
	w := &lbWorld{t: t, topo: l4test.New(t, 3)}
	w.d = testDatapath(t)
	err := w.topo.Node.Run(func() error {
		ifc, err := net.InterfaceByName(w.topo.NodeLinks[0])
		if err != nil {
			return err
		}
		return w.d.Attach(ifc.Name, ifc.Index)
	})
	if err != nil {
		t.Fatal(err)
	}
	w.startBackends()
	w.sync(0, 1, 2) // source-preserving
	seen := map[string]bool{}
	for range 45 { // enough that missing a backend by chance is ~1e-7
		seen[w.getOnce(0)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("reached %v", seen)
	}
}
