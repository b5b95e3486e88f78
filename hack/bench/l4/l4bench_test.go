// Package l4bench compares three ways from a client to three backends, all
// in network namespaces (internal/l4test: client ns ── node ns ── 3 backend
// ns, veth pairs, the node forwarding):
//
//   - direct: the client talks to one backend's own address, routed by the
//     node's stack, no eBPF program on any link;
//   - eBPF: the client talks to the VIP, which pkg/l4's TC program (attached
//     to every node link) balances over the three backends with Maglev,
//     DNAT on the way in and reverse NAT on the way back;
//   - userspace: the client talks to a Go TCP proxy in the node ns (a
//     separate process, goroutine per connection, io.Copy both ways, which
//     is splice(2) between TCP connections) that forwards round-robin to the
//     three backends.
//
// For each it measures throughput with iperf3 and the rate of short HTTP/1.1
// connections (one TCP connection per request) from the client ns, then
// prints the ratios next to their goals. Numbers are reported, never
// asserted on: only functional failures fail the test.
//
// It is a test, not a program, because l4test needs a testing.TB. Run it
// with hack/bench/l4.sh (root, iperf3; see hack/bench/README.md); it skips
// unless EDGE_AGENT_L4BENCH=1, so `go test ./...` does not run it.
package l4bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edge-agent/edge-agent/internal/l4test"
	"github.com/edge-agent/edge-agent/internal/testproc"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

// Environment of the benchmark (all but the first optional).
const (
	envEnable   = "EDGE_AGENT_L4BENCH"            // "1" runs TestL4Bench
	envOutDir   = "EDGE_AGENT_L4BENCH_OUT_DIR"    // summary.txt and the child logs go here
	envTxCsum   = "EDGE_AGENT_L4BENCH_TXCSUM"     // veth TX checksum offload: on (default), off, both
	envTime     = "EDGE_AGENT_L4BENCH_TIME"       // iperf3 -t, seconds (default 10)
	envParallel = "EDGE_AGENT_L4BENCH_PARALLEL"   // iperf3 -P (default 4, at most 8)
	envWorkers  = "EDGE_AGENT_L4BENCH_WORKERS"    // connection-rate workers (default 32)
	envConnTime = "EDGE_AGENT_L4BENCH_CONNTIME"   // connection-rate duration (default 5s)
	envRounds   = "EDGE_AGENT_L4BENCH_ROUNDS"     // repeat all six measurements, interleaved (default 1)
	envIperfArg = "EDGE_AGENT_L4BENCH_IPERF_ARGS" // extra iperf3 -c arguments (default: -A, see defaultIperfArgs)
)

// helperArg, as the first argument after the test flags, makes
// TestL4BenchHelper run as a child process: the next argument is the role
// ("proxy" or "connrate") and the one after it the role's JSON config.
const helperArg = "l4bench-helper"

const (
	numBackends = 3
	httpPort    = 8080 // backends' HTTP servers, and the proxy's HTTP listener
	vipHTTPPort = 80
	iperfPort   = 5201 // backends' iperf3 servers, the VIP's and the proxy's

	// Client source ports to the VIP are probed from probeBase up, in
	// chunks, to find ports the program sends to one backend (see steer).
	// They lie below the default ephemeral range (32768-60999).
	probeBase  = 20000
	probeChunk = 1000
	probeMax   = 12000

	warmup      = time.Second // connection-rate warm-up, not measured
	idleSample  = time.Second
	connSettle  = 2 * time.Second
	reqTimeout  = 5 * time.Second
	readyWait   = 10 * time.Second
	stopGrace   = 3 * time.Second
	iperfOmit   = 1 // iperf3 -O: seconds of slow start not counted
	clkTck      = 100
	markerReady = "L4BENCH-READY"
	markerDone  = "L4BENCH-RESULT "

	// busyBefore is how busy (cores) the machine may be, with the
	// benchmark idle, before and after a measurement for it to count as
	// undisturbed: more means something else is running. Each measurement
	// waits up to quietWait for that before it starts.
	busyBefore = 0.1
	quietWait  = 30 * time.Second
	// stealMax flags a measurement during which the hypervisor ran other
	// guests on this one's CPUs for that many cores.
	stealMax = 0.15

	// Goals printed next to the ratios (never asserted).
	goalThroughput = 0.9 // eBPF >= 0.9 x direct
	goalConnRate   = 3.0 // eBPF >= 3 x userspace
)

type settings struct {
	modes     []bool // TX checksum offload on/off, one topology each
	secs      int
	parallel  int
	workers   int
	connTime  time.Duration
	rounds    int
	iperfArgs []string
	outDir    string
}

func loadSettings(t *testing.T) settings {
	t.Helper()
	s := settings{secs: 10, parallel: 4, workers: 32, connTime: 5 * time.Second, rounds: 1}
	switch v := os.Getenv(envTxCsum); v {
	case "", "on":
		s.modes = []bool{true}
	case "off":
		s.modes = []bool{false}
	case "both":
		s.modes = []bool{true, false}
	default:
		t.Fatalf("%s=%q: want on, off or both", envTxCsum, v)
	}
	atoi := func(key string, dst *int, lo, hi int) {
		if v := os.Getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				t.Fatalf("%s=%q: want an integer in %d..%d", key, v, lo, hi)
			}
			*dst = n
		}
	}
	atoi(envTime, &s.secs, 2, 300)
	// More streams need longer runs of consecutive ports to one backend,
	// (1/3)^(n-1) rarer each: see steer.
	atoi(envParallel, &s.parallel, 1, 8)
	atoi(envWorkers, &s.workers, 1, 1024)
	atoi(envRounds, &s.rounds, 1, 10)
	if v, ok := os.LookupEnv(envIperfArg); ok {
		s.iperfArgs = strings.Fields(v)
	} else {
		s.iperfArgs = defaultIperfArgs()
	}
	if v := os.Getenv(envConnTime); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 5*time.Minute {
			t.Fatalf("%s=%q: want a duration in 1s..5m", envConnTime, v)
		}
		s.connTime = d
	}
	s.outDir = os.Getenv(envOutDir)
	if s.outDir == "" {
		s.outDir = t.TempDir()
	} else if err := os.MkdirAll(s.outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// defaultIperfArgs pins the iperf3 client and server to the first two CPUs
// this process may use (-A client,server), so every run splits the work the
// same way: the client's CPU sends and, in softirq, forwards (a veth hands
// packets to the backlog of the CPU that sent them), the server's copies
// them out. Whatever the node does per packet then lands on the CPU that
// limits throughput in every run, not in some: unpinned, eBPF/direct
// scattered over 0.74-1.32 on 2 cores, pinned it stayed at 0.68-0.88 in
// most rounds.
func defaultIperfArgs() []string {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []string
	for i := 0; i < len(set)*64 && len(cpus) < 2; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, strconv.Itoa(i))
		}
	}
	if len(cpus) < 2 {
		return nil
	}
	return []string{"-A", strings.Join(cpus, ",")}
}

func TestL4Bench(t *testing.T) {
	if os.Getenv(envEnable) != "1" {
		t.Skipf("benchmark: set %s=1 (or run hack/bench/l4.sh)", envEnable)
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces, BPF)")
	}
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		t.Fatal("needs iperf3 (apt-get install iperf3)")
	}
	s := loadSettings(t)
	rep := &report{settings: s, env: describeHost(iperf)}
	for _, on := range s.modes {
		t.Run("txcsum-"+onOff(on), func(t *testing.T) {
			rep.modes = append(rep.modes, runMode(t, s, iperf, on))
		})
	}
	out := rep.String()
	if os.Getenv(envOutDir) == "" {
		t.Log(out) // otherwise the summary is in OUT_DIR, and l4.sh prints it
	}
	path := filepath.Join(s.outDir, "summary.txt")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Errorf("write summary: %v", err)
	}
}

// bench is one topology with everything running in it.
type bench struct {
	t      *testing.T
	s      settings
	iperf  string
	topo   *l4test.Topology
	d      *l4.Datapath
	logDir string

	// Steering of the eBPF iperf3 runs (see steer): every one of their
	// connections reaches backend k. One set of ports per round, as the
	// last run's may be in TIME_WAIT.
	k          int
	steers     []steering
	probeCount [numBackends]int

	proxy *testproc.Proc
	// Conntrack expiry (see expire): entries removed, and the longest pass.
	expired    int
	expireTime time.Duration
}

// steering is the client ports of one iperf3 run through the VIP.
type steering struct {
	ctrl uint16 // the control connection's: ctrl or ctrl+1
	data uint16 // the streams': data ... data+parallel-1
}

func runMode(t *testing.T, s settings, iperf string, txOn bool) *modeResult {
	b := &bench{t: t, s: s, iperf: iperf}
	b.logDir = filepath.Join(s.outDir, "txcsum-"+onOff(txOn))
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.topo = l4test.NewWithOptions(t, numBackends, l4test.Options{DisableTxChecksum: !txOn})
	res := &modeResult{txOn: txOn, offloads: b.offloads()}
	b.serveHTTP()
	b.loadDatapath()

	// Find the client ports the program sends to one backend, with Go
	// listeners standing in for iperf3 on :5201; then the real servers.
	b.attach()
	b.steer()
	b.detach()
	b.startIperfServers()
	b.startProxy()

	res.k, res.probe, res.steers = b.k, b.probeCount, b.steers
	backendK := b.topo.Backends[b.k].Addr
	vip, node := b.topo.VIP, b.topo.NodeAddrs[0]
	for r := range s.rounds {
		var tp [numPaths]tputResult
		var cr [numPaths]connResult
		tp[pathDirect] = b.throughput(netip.AddrPortFrom(backendK, iperfPort), r, nil)
		b.attach()
		before := b.svcCounters()
		tp[pathEBPF] = b.throughput(netip.AddrPortFrom(vip, iperfPort), r, &b.steers[r])
		res.ebpfBytes += b.svcCounters().Bytes - before.Bytes
		b.detach()
		tp[pathUser] = b.throughput(netip.AddrPortFrom(node, iperfPort), r, nil)

		cr[pathDirect] = b.connRate(netip.AddrPortFrom(backendK, httpPort), pathDirect, r)
		b.attach()
		cr[pathEBPF] = b.connRate(netip.AddrPortFrom(vip, vipHTTPPort), pathEBPF, r)
		b.detach()
		cr[pathUser] = b.connRate(netip.AddrPortFrom(node, httpPort), pathUser, r)
		res.tput = append(res.tput, tp)
		res.conn = append(res.conn, cr)
	}
	drops, err := b.drops()
	if err != nil {
		t.Fatal(err)
	}
	res.drops = drops
	fill, err := b.d.Pinned().Fill()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fill {
		if f.Name == "ea_conntrack" {
			res.ctEntries, res.ctMax = f.Entries, f.MaxEntries
		}
	}
	res.ctExpired, res.ctExpireTime = b.expired, b.expireTime
	return res
}

// ---- setup -----------------------------------------------------------------

// serveHTTP starts a tiny HTTP server on every backend (in this process:
// a listener belongs to its namespace, so serving needs no thread switch).
func (b *bench) serveHTTP() {
	for i, be := range b.topo.Backends {
		body := []byte(backendName(i) + "\n")
		ln := be.Listen(b.t, netip.AddrPortFrom(be.Addr, httpPort).String())
		srv := &http.Server{ReadHeaderTimeout: reqTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
		})}
		go func() { _ = srv.Serve(ln) }()
		b.t.Cleanup(func() { _ = srv.Close() })
	}
}

func backendName(i int) string { return "backend" + strconv.Itoa(i+1) }

func (b *bench) loadDatapath() {
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-bench-%d", os.Getpid()))
	// The name is this process's: anything there is a leftover of a dead
	// process that had this pid. l4.Cleanup works from the pins alone.
	if err := l4.Cleanup(pinDir); err != nil {
		b.t.Fatalf("clean %s: %v", pinDir, err)
	}
	d, err := l4.Load(slog.New(slog.NewTextHandler(io.Discard, nil)), pinDir)
	if err != nil {
		b.t.Fatalf("load: %v", err)
	}
	b.t.Cleanup(func() {
		d.Close()
		if err := l4.Cleanup(pinDir); err != nil {
			b.t.Errorf("cleanup %s: %v", pinDir, err)
		}
	})
	b.d = d
	var web, perf []l4.Backend
	for _, be := range b.topo.Backends {
		web = append(web, l4.Backend{Addr: netip.AddrPortFrom(be.Addr, httpPort), Weight: 1})
		perf = append(perf, l4.Backend{Addr: netip.AddrPortFrom(be.Addr, iperfPort), Weight: 1})
	}
	err = d.Sync([]l4.Service{
		{Name: "http", VIP: b.topo.VIP, Port: vipHTTPPort, Proto: l4.ProtoTCP, Backends: web},
		{Name: "iperf3", VIP: b.topo.VIP, Port: iperfPort, Proto: l4.ProtoTCP, Backends: perf},
	})
	if err != nil {
		b.t.Fatalf("sync: %v", err)
	}
}

// attach puts the program on every node link, ingress and egress (as the
// agent does): the client's link sees requests to the VIP, the backends'
// links their replies (reverse NAT). Interface names and indexes resolve
// in the node's namespace.
func (b *bench) attach() {
	b.t.Helper()
	err := b.topo.Node.Run(func() error {
		for _, name := range b.topo.NodeLinks {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			if err := b.d.Attach(name, ifc.Index); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.t.Fatalf("attach: %v", err)
	}
}

// detach takes the program off again: direct and userspace run without it.
func (b *bench) detach() {
	b.t.Helper()
	for _, name := range b.topo.NodeLinks {
		if err := b.d.Detach(name); err != nil {
			b.t.Fatalf("detach: %v", err)
		}
	}
}

// steer makes iperf3 runs through the VIP possible. iperf3 opens a
// control connection and then one connection per stream, and all of them
// must reach the same server; the program balances each connection (each
// 5-tuple) on its own. So: connect to VIP:5201 from client ports probeBase
// and up, with a Go listener on every backend saying which one it is; pick
// a backend k and, for every round, `parallel` consecutive ports to it
// (iperf3 --cport gives the streams consecutive ports) and two more
// consecutive ones for the control connection (the client namespace's
// ip_local_port_range during that run). Maglev on the 5-tuple is
// deterministic, so the same ports go to the same backend later. The probe
// also shows the balancing.
//
// The probe connections end with an RST (SO_LINGER 0): no TIME_WAIT on
// either side blocks the ports for iperf3.
func (b *bench) steer() {
	t := b.t
	lns := make([]net.Listener, numBackends)
	var wg sync.WaitGroup
	for i, be := range b.topo.Backends {
		lns[i] = be.Listen(t, netip.AddrPortFrom(be.Addr, iperfPort).String())
		wg.Go(func() {
			for {
				c, err := lns[i].Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = c.Write([]byte{byte(i)})
					_, _ = io.Copy(io.Discard, c)
				}()
			}
		})
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	}()

	vip := netip.AddrPortFrom(b.topo.VIP, iperfPort).String()
	picked := map[uint16]int{}
	for next := uint16(probeBase); next < probeBase+probeMax; next += probeChunk {
		err := b.topo.Client.Run(func() error {
			for p := next; p < next+probeChunk; p++ {
				i, err := probeOnce(b.topo.Client.Addr, p, vip)
				if err != nil {
					return fmt.Errorf("probe from port %d: %w", p, err)
				}
				picked[p] = i
				b.probeCount[i]++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("probe VIP: %v", err)
		}
		if b.pickPorts(picked, next+probeChunk) {
			break
		}
	}
	for i, n := range b.probeCount {
		if n == 0 {
			t.Fatalf("probe of %d client ports: %s got none (spread %v)", len(picked), backendName(i), b.probeCount)
		}
	}
	if len(b.steers) == 0 {
		t.Fatalf("not %d times %d + 2 consecutive client ports to one backend in %d probed", b.s.rounds, b.s.parallel, len(picked))
	}
	t.Logf("probe: %d ports spread %v; iperf3 via the VIP goes to %s, ports %v", len(picked), b.probeCount, backendName(b.k), b.steers)
}

func probeOnce(client netip.Addr, port uint16, vip string) (int, error) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: client.AsSlice(), Port: int(port)}}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", vip)
	if err != nil {
		return 0, err
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	_ = tc.SetLinger(0)
	_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
	var buf [1]byte
	if _, err := io.ReadFull(tc, buf[:]); err != nil {
		return 0, err
	}
	if int(buf[0]) >= numBackends {
		return 0, fmt.Errorf("probe answer %d", buf[0])
	}
	return int(buf[0]), nil
}

// pickPorts looks for a backend with a steering per round among the ports
// probed below end: disjoint runs of consecutive ports that all go to it.
func (b *bench) pickPorts(picked map[uint16]int, end uint16) bool {
	for k := range numBackends {
		used := map[uint16]bool{}
		// take returns up to want disjoint runs of n ports going to k.
		take := func(n, want int) []uint16 {
			var starts []uint16
			for p := uint16(probeBase); int(p)+n <= int(end) && len(starts) < want; p++ {
				ok := true
				for i := range uint16(n) {
					if ki, seen := picked[p+i]; !seen || ki != k || used[p+i] {
						ok = false
						break
					}
				}
				if ok {
					for i := range uint16(n) {
						used[p+i] = true
					}
					starts = append(starts, p)
					p += uint16(n) - 1
				}
			}
			return starts
		}
		data := take(b.s.parallel, b.s.rounds)
		ctrl := take(2, b.s.rounds)
		if len(data) == b.s.rounds && len(ctrl) == b.s.rounds {
			b.k, b.steers = k, nil
			for r := range b.s.rounds {
				b.steers = append(b.steers, steering{ctrl: ctrl[r], data: data[r]})
			}
			return true
		}
	}
	return false
}

func (b *bench) startIperfServers() {
	for i, be := range b.topo.Backends {
		log := filepath.Join(b.logDir, "iperf3-server-"+backendName(i)+".log")
		p := b.startIn(be, "iperf3 -s in "+backendName(i), log, b.iperf, "-s", "-B", be.Addr.String(), "-p", strconv.Itoa(iperfPort))
		if err := waitListening(be, iperfPort, p); err != nil {
			b.t.Fatalf("iperf3 -s in %s: %v\n%s", be.Name, err, p.Tail(20))
		}
	}
}

// startIn starts a process in ns's network namespace: a child forked from
// a thread switched into a namespace starts in that namespace. It is
// stopped on cleanup.
func (b *bench) startIn(ns *l4test.NS, name, log, path string, args ...string) *testproc.Proc {
	var p *testproc.Proc
	err := ns.Run(func() (err error) {
		p, err = testproc.Start(name, log, path, args...)
		return err
	})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { p.Stop(stopGrace) })
	return p
}

// waitListening waits until a TCP socket listens on port in ns
// (/proc/thread-self/net/tcp shows the calling thread's namespace).
func waitListening(ns *l4test.NS, port int, p *testproc.Proc) error {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(readyWait)
	for {
		var found bool
		err := ns.Run(func() error {
			data, err := os.ReadFile("/proc/thread-self/net/tcp")
			if err != nil {
				return err
			}
			for line := range strings.Lines(string(data)) {
				f := strings.Fields(line)
				if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
					found = true
				}
			}
			return nil
		})
		if err != nil || found {
			return err
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %v", p.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %d after %v", port, readyWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxyListener is one listener of the userspace proxy.
type proxyListener struct {
	Listen   string   `json:"listen"`
	Backends []string `json:"backends"` // round-robin, per connection
}

// startProxy runs the userspace proxy as a child process in the node's
// namespace (all of the process is there, so it dials the backends without
// switching threads, as a real proxy on the node would). HTTP goes
// round-robin to the three backends. iperf3 goes to backend k only: its
// control and stream connections must meet the same server, which
// per-connection round-robin would break (the per-byte work is the same
// whichever backend it is).
func (b *bench) startProxy() {
	node := b.topo.NodeAddrs[0] // the node's address facing the client
	var web []string
	for _, be := range b.topo.Backends {
		web = append(web, netip.AddrPortFrom(be.Addr, httpPort).String())
	}
	cfg := []proxyListener{
		{Listen: netip.AddrPortFrom(node, httpPort).String(), Backends: web},
		{Listen: netip.AddrPortFrom(node, iperfPort).String(), Backends: []string{netip.AddrPortFrom(b.topo.Backends[b.k].Addr, iperfPort).String()}},
	}
	b.proxy = b.startHelper(b.topo.Node, "proxy", cfg, filepath.Join(b.logDir, "proxy.log"))
	if err := waitMarker(b.proxy, markerReady); err != nil {
		b.t.Fatalf("proxy: %v\n%s", err, b.proxy.Tail(20))
	}
}

// startHelper runs this test binary's TestL4BenchHelper in ns as role.
func (b *bench) startHelper(ns *l4test.NS, role string, cfg any, log string) *testproc.Proc {
	exe, err := os.Executable()
	if err != nil {
		b.t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.startIn(ns, role, log, exe, "-test.run=^TestL4BenchHelper$", "-test.count=1", helperArg, role, string(js))
}

// waitMarker waits for a line starting with marker in p's log.
func waitMarker(p *testproc.Proc, marker string) error {
	deadline := time.Now().Add(readyWait)
	for {
		if _, ok := findMarker(p.Log(), marker); ok {
			return nil
		}
		select {
		case <-p.Done():
			if _, ok := findMarker(p.Log(), marker); ok {
				return nil
			}
			return fmt.Errorf("exited: %v", p.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q after %v", marker, readyWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findMarker(path, marker string) (string, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, marker); ok {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// ---- measurements ----------------------------------------------------------

type path int

const (
	pathDirect path = iota
	pathEBPF
	pathUser
	numPaths
)

func (p path) String() string { return [...]string{"direct", "eBPF", "userspace"}[p] }

// cpuUse is what the machine, the proxy and this process (the backends'
// HTTP servers) spent during a measurement, in cores (1.0 = one CPU busy
// all the time).
type cpuUse struct {
	busy, softirq, proxy, backends float64
	// steal is time the hypervisor gave other guests while this one had
	// work: on a VM, the other noise besides other processes.
	steal float64
	// before and after are the machine's CPU use just before and just
	// after the measurement, with everything of the benchmark idle: other
	// load that disturbs it.
	before, after float64
}

type cpuMark struct {
	when          time.Time
	busy, softirq uint64 // /proc/stat ticks, all CPUs
	steal         uint64
	proxy         uint64 // proxy utime+stime ticks
	self          uint64 // this process's
}

// expire removes idle conntrack entries with the agent's default timeouts
// (closing TCP flows after 10 s), as l4.Manager does every 10 s; without it
// the LRU table would fill with the connection-rate runs' dead flows. It
// runs before every measurement (about as often) rather than on a timer,
// so its burst of map syscalls stays out of the measurements.
func (b *bench) expire() {
	start := time.Now()
	n, err := b.d.Expire(l4.DefaultTimeouts)
	if err != nil {
		b.t.Fatalf("conntrack expiry: %v", err)
	}
	b.expired += n
	b.expireTime = max(b.expireTime, time.Since(start))
}

// waitQuiet samples the machine's CPU use in idleSample windows while the
// benchmark does nothing, until it is below busyBefore or quietWait has
// passed, and returns the last sample.
func (b *bench) waitQuiet() float64 {
	deadline := time.Now().Add(quietWait)
	for {
		busy := b.sampleIdle()
		if busy < busyBefore || time.Now().After(deadline) {
			if busy >= busyBefore {
				b.t.Logf("machine still busy (%.2f cores) after waiting %v: measuring anyway, flagged", busy, quietWait)
			}
			return busy
		}
	}
}

// sampleIdle is the machine's CPU use over idleSample.
func (b *bench) sampleIdle() float64 {
	start := b.markCPU()
	time.Sleep(idleSample)
	return b.markCPU().since(start).busy
}

func (b *bench) markCPU() cpuMark {
	m := cpuMark{when: time.Now()}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		var v [8]uint64
		for i := 1; i < len(f) && i <= 8; i++ {
			v[i-1], _ = strconv.ParseUint(f[i], 10, 64)
		}
		m.busy = v[0] + v[1] + v[2] + v[5] + v[6] // not steal: not ours
		m.softirq, m.steal = v[6], v[7]
	}
	if b.proxy != nil {
		m.proxy = procTicks(b.proxy.Pid())
	}
	m.self = procTicks(os.Getpid())
	return m
}

func (m cpuMark) since(start cpuMark) cpuUse {
	secs := m.when.Sub(start.when).Seconds() * clkTck
	if secs <= 0 {
		return cpuUse{}
	}
	return cpuUse{
		busy:     float64(m.busy-start.busy) / secs,
		softirq:  float64(m.softirq-start.softirq) / secs,
		steal:    float64(m.steal-start.steal) / secs,
		proxy:    float64(m.proxy-start.proxy) / secs,
		backends: float64(m.self-start.self) / secs,
	}
}

// procTicks is utime+stime of pid (fields 14 and 15 of /proc/PID/stat).
func procTicks(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields from 3 on
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k
}

type tputResult struct {
	gbps    float64 // receiver side
	bytes   uint64
	retrans int
	target  string
	cpu     cpuUse
}

// iperfJSON is the part of `iperf3 -J` read here.
type iperfJSON struct {
	Start struct {
		Connected []struct {
			LocalPort  int    `json:"local_port"`
			RemoteHost string `json:"remote_host"`
		} `json:"connected"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Bytes       uint64  `json:"bytes"`
			BitsPerSec  float64 `json:"bits_per_second"`
			Retransmits int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes      uint64  `json:"bytes"`
			BitsPerSec float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// throughput runs iperf3 -c in the client namespace. A steered run uses
// the ports steer picked, the control connection's by narrowing the client
// namespace's ephemeral range for the run.
func (b *bench) throughput(target netip.AddrPort, round int, steer *steering) tputResult {
	t := b.t
	args := []string{"-c", target.Addr().String(), "-p", strconv.Itoa(int(target.Port())),
		"-t", strconv.Itoa(b.s.secs), "-O", strconv.Itoa(iperfOmit), "-P", strconv.Itoa(b.s.parallel), "-J"}
	args = append(args, b.s.iperfArgs...)
	if steer != nil {
		args = append(args, "--cport", strconv.Itoa(int(steer.data)))
		restore := b.setClientPortRange(steer.ctrl, steer.ctrl+1)
		defer restore()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(b.s.secs+iperfOmit+30)*time.Second)
	defer cancel()
	var out []byte
	var stderr strings.Builder
	b.expire()
	before := b.waitQuiet()
	start := b.markCPU()
	err := b.topo.Client.Run(func() error {
		cmd := exec.CommandContext(ctx, b.iperf, args...)
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		return err
	})
	cpu := b.markCPU().since(start)
	cpu.before, cpu.after = before, b.sampleIdle()
	_ = os.WriteFile(filepath.Join(b.logDir, fmt.Sprintf("iperf3-client-%s-%d.json", strings.ReplaceAll(target.String(), ":", "_"), round+1)), out, 0o644)
	var r iperfJSON
	if jerr := json.Unmarshal(out, &r); jerr != nil || err != nil || r.Error != "" {
		t.Fatalf("iperf3 %s: %v %v %s\n%s", strings.Join(args, " "), err, jerr, r.Error, stderr.String())
	}
	if len(r.Start.Connected) != b.s.parallel || r.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 to %s: %d streams, %d bytes received", target, len(r.Start.Connected), r.End.SumReceived.Bytes)
	}
	res := tputResult{
		gbps: r.End.SumReceived.BitsPerSec / 1e9, bytes: r.End.SumReceived.Bytes,
		retrans: r.End.SumSent.Retransmits, target: target.String(), cpu: cpu,
	}
	t.Logf("iperf3 -> %s: %.2f Gbit/s, %d retransmits, CPU %.2f cores (softirq %.2f, proxy %.2f)",
		target, res.gbps, res.retrans, cpu.busy, cpu.softirq, cpu.proxy)
	return res
}

// setClientPortRange sets net.ipv4.ip_local_port_range in the client
// namespace (and nowhere else: it refuses unless the thread sees exactly the
// client's interfaces) and returns the function that restores it.
func (b *bench) setClientPortRange(lo, hi uint16) func() {
	const key = "/proc/sys/net/ipv4/ip_local_port_range"
	var old []byte
	err := b.topo.Client.Run(func() error {
		if err := checkSysctlView(b.topo.Client.Link); err != nil {
			return err
		}
		var err error
		if old, err = os.ReadFile(key); err != nil {
			return err
		}
		return os.WriteFile(key, fmt.Appendf(nil, "%d %d", lo, hi), 0o644)
	})
	if err != nil {
		b.t.Fatalf("client ip_local_port_range: %v", err)
	}
	return func() {
		err := b.topo.Client.Run(func() error {
			if err := checkSysctlView(b.topo.Client.Link); err != nil {
				return err
			}
			return os.WriteFile(key, old, 0o644)
		})
		if err != nil {
			b.t.Errorf("restore client ip_local_port_range: %v", err)
		}
	}
}

// checkSysctlView checks that /proc/sys/net/ipv4/conf lists lo and link
// only: the calling thread sees a peer namespace's sysctls, not the root's.
func checkSysctlView(link string) error {
	entries, err := os.ReadDir("/proc/sys/net/ipv4/conf")
	if err != nil {
		return err
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{"all", "default", "lo", link}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("/proc/sys/net/ipv4/conf lists %v, want %v: refusing to write sysctls", got, want)
	}
	return nil
}

// connConfig configures a "connrate" helper.
type connConfig struct {
	Target   string        `json:"target"`
	Workers  int           `json:"workers"`
	Warmup   time.Duration `json:"warmup"`
	Duration time.Duration `json:"duration"`
}

// connResult is what a "connrate" helper reports.
type connResult struct {
	Conns    int            `json:"conns"` // completed in the measured window
	Seconds  float64        `json:"seconds"`
	P50      time.Duration  `json:"p50"`
	P90      time.Duration  `json:"p90"`
	P99      time.Duration  `json:"p99"`
	Max      time.Duration  `json:"max"`
	Errors   int            `json:"errors"`
	ErrFirst []string       `json:"err_first,omitempty"`
	Spread   map[string]int `json:"spread"` // responses per backend name
	// ClientCPU is the load generator's own CPU time (getrusage) over its
	// run, in cores.
	ClientCPU float64 `json:"client_cpu"`
	// Filled in by the parent.
	rate float64
	cpu  cpuUse
}

// usPerConn is the machine's CPU time per connection, in microseconds.
func (r connResult) usPerConn() float64 { return div(r.cpu.busy*1e6, r.rate) }

// connRate runs the load generator as a child process in the client
// namespace (so its goroutines dial without switching threads) and checks
// the answers came from where they should.
func (b *bench) connRate(target netip.AddrPort, p path, round int) connResult {
	t := b.t
	cfg := connConfig{Target: target.String(), Workers: b.s.workers, Warmup: warmup, Duration: b.s.connTime}
	log := filepath.Join(b.logDir, fmt.Sprintf("connrate-%s-%d.log", strings.ToLower(p.String()), round+1))
	b.expire()
	before := b.waitQuiet()
	start := b.markCPU()
	proc := b.startHelper(b.topo.Client, "connrate", cfg, log)
	var cpu cpuUse
	select {
	case <-proc.Done():
		cpu = b.markCPU().since(start)
	case <-time.After(warmup + b.s.connTime + 2*reqTimeout + 30*time.Second):
		t.Fatalf("connection-rate helper did not finish\n%s", proc.Tail(20))
	}
	js, ok := findMarker(log, markerDone)
	if proc.Err() != nil || !ok {
		t.Fatalf("connection-rate helper to %s: %v\n%s", target, proc.Err(), proc.Tail(30))
	}
	var r connResult
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("connection-rate result: %v", err)
	}
	r.cpu = cpu
	// The backends' HTTP servers close their last connections up to 500 ms
	// after answering (net/http's RST avoidance), and the proxy and the
	// runtimes wind down for a moment: let that pass first.
	time.Sleep(connSettle)
	r.cpu.before, r.cpu.after = before, b.sampleIdle()
	if r.Seconds > 0 {
		r.rate = float64(r.Conns) / r.Seconds
	}
	t.Logf("%s -> %s: %.0f conn/s, p50 %v, p99 %v, %d errors %v, spread %v, CPU %.2f cores (softirq %.2f, client %.2f, backends %.2f, proxy %.2f)",
		p, target, r.rate, r.P50, r.P99, r.Errors, r.ErrFirst, r.Spread, cpu.busy, cpu.softirq, r.ClientCPU, cpu.backends, cpu.proxy)
	if r.Conns == 0 || r.Errors > 0 {
		t.Fatalf("%s: %d connections, %d errors: %v", p, r.Conns, r.Errors, r.ErrFirst)
	}
	for i := range numBackends {
		n := r.Spread[backendName(i)]
		switch {
		case p == pathDirect && i != b.k && n > 0:
			t.Fatalf("direct to %s answered by %s", backendName(b.k), backendName(i))
		case p != pathDirect && n == 0:
			t.Fatalf("%s: %s answered nothing (spread %v)", p, backendName(i), r.Spread)
		}
	}
	return r
}

// svcCounters sums the iperf3 service's counters.
func (b *bench) svcCounters() l4.Counters {
	svcs, err := b.d.Pinned().Services()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, s := range svcs {
		if s.VIP.Port() == iperfPort {
			return s.Counters
		}
	}
	b.t.Fatal("iperf3 service missing")
	return l4.Counters{}
}

// drops lists the program's non-zero drop counters.
func (b *bench) drops() (map[string]uint64, error) {
	passed, err := b.d.Pinned().Passed()
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for k, v := range passed {
		if strings.HasPrefix(k, "drop_") && v > 0 {
			out[k] = v
		}
	}
	return out, nil
}

// offloads describes the client's veth end: TX checksum offload by ioctl,
// the rest from `ethtool -k` when the binary is there.
func (b *bench) offloads() string {
	var desc string
	err := b.topo.Client.Run(func() error {
		on, err := l4test.TxChecksum(b.topo.Client.Link)
		if err != nil {
			return err
		}
		desc = "tx-checksumming " + onOff(on)
		ethtool, err := exec.LookPath("ethtool")
		if err != nil {
			return nil
		}
		out, err := exec.Command(ethtool, "-k", b.topo.Client.Link).Output()
		if err != nil {
			return nil
		}
		for line := range strings.Lines(string(out)) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			// tx-tcp-segmentation, not tcp-segmentation-offload: the
			// latter also counts tx-tcp-accecn-segmentation, which stays
			// on when TX checksumming (and so TSO) is off.
			switch {
			case !ok:
			case k == "tx-tcp-segmentation":
				desc += ", TSO " + strings.Fields(v)[0]
			case k == "generic-segmentation-offload":
				desc += ", GSO " + strings.Fields(v)[0]
			case k == "generic-receive-offload":
				desc += ", GRO " + strings.Fields(v)[0]
			}
		}
		return nil
	})
	if err != nil {
		b.t.Fatalf("offloads: %v", err)
	}
	return desc
}

// ---- child processes -------------------------------------------------------

// TestL4BenchHelper is not a test: TestL4Bench runs this binary again with
// it, in a network namespace, as the userspace proxy or the load generator.
func TestL4BenchHelper(t *testing.T) {
	args := flag.Args()
	if len(args) != 3 || args[0] != helperArg {
		t.Skip("child process of TestL4Bench")
	}
	role, cfg := args[1], []byte(args[2])
	switch role {
	case "proxy":
		var ls []proxyListener
		if err := json.Unmarshal(cfg, &ls); err != nil {
			t.Fatal(err)
		}
		if err := runProxy(ls); err != nil {
			t.Fatal(err)
		}
	case "connrate":
		var c connConfig
		if err := json.Unmarshal(cfg, &c); err != nil {
			t.Fatal(err)
		}
		r := runConnRate(c)
		js, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s%s\n", markerDone, js)
	default:
		t.Fatalf("helper role %q", role)
	}
}

// runProxy serves until the process is killed.
func runProxy(ls []proxyListener) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // plain TCP: splice works between the two sockets
	d := &net.Dialer{Timeout: reqTimeout}
	d.SetMultipathTCP(false)
	for _, l := range ls {
		ln, err := lc.Listen(context.Background(), "tcp", l.Listen)
		if err != nil {
			return err
		}
		go func() {
			var next atomic.Uint64
			for {
				c, err := ln.Accept()
				if err != nil {
					fmt.Fprintf(os.Stderr, "accept: %v\n", err)
					return
				}
				be := l.Backends[(next.Add(1)-1)%uint64(len(l.Backends))]
				go proxyConn(c.(*net.TCPConn), be, d)
			}
		}()
	}
	fmt.Println(markerReady)
	select {}
}

// proxyConn copies both ways between the client and a new connection to
// backend. io.Copy between two *net.TCPConn is TCPConn.ReadFrom, which
// splices (kernel to kernel through a pipe, no copy into Go memory). A
// finished direction is passed on as a half-close.
func proxyConn(c *net.TCPConn, backend string, d *net.Dialer) {
	defer c.Close()
	uc, err := d.Dial("tcp", backend)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial %s: %v\n", backend, err)
		return
	}
	u := uc.(*net.TCPConn)
	defer u.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(u, c)
		_ = u.CloseWrite()
	}()
	_, _ = io.Copy(c, u)
	_ = c.CloseWrite()
	<-done
}

// runConnRate opens one connection per request from Workers goroutines
// until Warmup+Duration, counting those that started in the measured
// window. The server closes first (Connection: close) and the client reads
// to EOF before closing, so TIME_WAIT stays on the server side and the
// client's ephemeral ports do not run out.
func runConnRate(c connConfig) connResult {
	d := &net.Dialer{Timeout: reqTimeout}
	d.SetMultipathTCP(false)
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: l4bench\r\nConnection: close\r\n\r\n")
	start := time.Now()
	from, end := start.Add(c.Warmup), start.Add(c.Warmup+c.Duration)
	type worker struct {
		lat    []time.Duration
		errs   int
		first  []string
		spread map[string]int
	}
	ws := make([]worker, c.Workers)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		w.spread = map[string]int{}
		wg.Go(func() {
			br := bufio.NewReaderSize(nil, 1024)
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				name, err := oneRequest(d, c.Target, req, br)
				if t0.Before(from) {
					continue
				}
				if err != nil {
					w.errs++
					if len(w.first) < 3 {
						w.first = append(w.first, err.Error())
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
				w.spread[name]++
			}
		})
	}
	wg.Wait()
	r := connResult{Seconds: c.Duration.Seconds(), Spread: map[string]int{}}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.ClientCPU = cpu.Seconds() / time.Since(start).Seconds()
	}
	var lat []time.Duration
	for _, w := range ws {
		lat = append(lat, w.lat...)
		r.Errors += w.errs
		if len(r.ErrFirst) < 3 {
			r.ErrFirst = append(r.ErrFirst, w.first...)
		}
		for k, v := range w.spread {
			r.Spread[k] += v
		}
	}
	slices.Sort(lat)
	r.Conns = len(lat)
	r.P50, r.P90, r.P99 = percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}

// oneRequest sends one request on a new connection and returns the body's
// first word (the backend's name).
func oneRequest(d *net.Dialer, target string, req []byte, br *bufio.Reader) (string, error) {
	conn, err := d.Dial("tcp", target)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(reqTimeout))
	if _, err := conn.Write(req); err != nil {
		return "", err
	}
	br.Reset(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	// Wait for the server's FIN: closing first would leave the client's
	// port in TIME_WAIT.
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("after the response: %v, want EOF", err)
	}
	name, _, _ := strings.Cut(string(body), "\n")
	return name, nil
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ---- report ----------------------------------------------------------------

type modeResult struct {
	txOn         bool
	offloads     string
	k            int
	probe        [numBackends]int
	steers       []steering
	tput         [][numPaths]tputResult // per round
	conn         [][numPaths]connResult
	ebpfBytes    uint64 // the iperf3 service's byte counter over the eBPF runs
	drops        map[string]uint64
	ctEntries    int // conntrack entries at the end
	ctMax        uint32
	ctExpired    int
	ctExpireTime time.Duration
}

type report struct {
	settings settings
	env      string
	modes    []*modeResult
}

func describeHost(iperf string) string {
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	ver := "?"
	if out, err := exec.Command(iperf, "--version").Output(); err == nil {
		ver, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return fmt.Sprintf("kernel %s, %d CPUs, %s, %s", kernel, runtime.NumCPU(), ver, runtime.Version())
}

func (r *report) String() string {
	var b strings.Builder
	s := r.settings
	fmt.Fprintf(&b, "\n== edge-agent L4: direct vs eBPF (pkg/l4) vs userspace proxy ==\n")
	fmt.Fprintf(&b, "%s\n", r.env)
	fmt.Fprintf(&b, "client ns -> node ns -> %d backend ns over veth; CPU in cores (of %d), from /proc/stat; %d round(s), interleaved\n",
		numBackends, runtime.NumCPU(), s.rounds)
	fmt.Fprintf(&b, "\"quiet\": machine CPU in the %v before/after a measurement, the benchmark idle (each waits up to %v for < %.2f before);\n",
		idleSample, quietWait, busyBefore)
	fmt.Fprintf(&b, "\"!\" = something else was running (quiet >= %.2f, or steal >= %.2f): that round is left out of the medians\n",
		busyBefore, stealMax)
	for _, m := range r.modes {
		fmt.Fprintf(&b, "\n-- veth TX checksum offload %s (client eth0: %s) --\n", onOff(m.txOn), m.offloads)
		var ports []string
		for _, st := range m.steers {
			ports = append(ports, fmt.Sprintf("control %d-%d --cport %d", st.ctrl, st.ctrl+1, st.data))
		}
		fmt.Fprintf(&b, "VIP balancing: %d probe connections spread %d / %d / %d; iperf3 via the VIP steered to %s (%s)\n",
			m.probe[0]+m.probe[1]+m.probe[2], m.probe[0], m.probe[1], m.probe[2], backendName(m.k), strings.Join(ports, "; "))

		extra := ""
		if len(s.iperfArgs) > 0 {
			extra = " " + strings.Join(s.iperfArgs, " ")
		}
		fmt.Fprintf(&b, "\nthroughput: iperf3 -t %d -O %d -P %d%s, client -> %s (bits received per second)\n",
			s.secs, iperfOmit, s.parallel, extra, backendName(m.k))
		fmt.Fprintf(&b, "  %-10s %5s %8s %8s %7s %7s %7s %7s %10s   %s\n", "path", "round", "Gbit/s", "retrans", "CPU", "softirq", "proxy", "steal", "quiet", "target")
		for i, round := range m.tput {
			for p, x := range round {
				fmt.Fprintf(&b, "  %-10s %5d %8.2f %8d %7.2f %7.2f %7s %7.2f %10s   %s\n", path(p), i+1, x.gbps, x.retrans,
					x.cpu.busy, x.cpu.softirq, proxyCol(path(p), x.cpu.proxy), x.cpu.steal, quietCol(x.cpu), x.target)
			}
		}
		fmt.Fprintf(&b, "  eBPF service byte counter over the eBPF runs: %.2f GB; program drops: %s\n",
			float64(m.ebpfBytes)/1e9, dropsString(m.drops))

		fmt.Fprintf(&b, "\nconnection rate: HTTP/1.1 GET, new TCP connection per request (Connection: close), %d workers, %v after %v warm-up\n",
			s.workers, s.connTime, warmup)
		fmt.Fprintf(&b, "  %-10s %5s %7s %7s %7s %7s %6s %7s %6s %7s %6s %6s %10s %7s   %s\n", "path", "round", "conn/s", "p50 ms", "p90 ms", "p99 ms",
			"CPU", "softirq", "client", "backend", "proxy", "steal", "quiet", "us/conn", "answered by b1/b2/b3")
		for i, round := range m.conn {
			for p, x := range round {
				fmt.Fprintf(&b, "  %-10s %5d %7.0f %7.2f %7.2f %7.2f %6.2f %7.2f %6.2f %7.2f %6s %6.2f %10s %7.0f   %d/%d/%d\n", path(p), i+1,
					x.rate, msf(x.P50), msf(x.P90), msf(x.P99), x.cpu.busy, x.cpu.softirq, x.ClientCPU, x.cpu.backends,
					proxyCol(path(p), x.cpu.proxy), x.cpu.steal, quietCol(x.cpu), x.usPerConn(),
					x.Spread[backendName(0)], x.Spread[backendName(1)], x.Spread[backendName(2)])
			}
		}
		clean := m.cleanRounds()
		over := func(p path) []float64 {
			return perRound(m.conn, func(r [numPaths]connResult) float64 { return r[p].usPerConn() - r[pathDirect].usPerConn() })
		}
		fmt.Fprintf(&b, "  machine CPU per connection above direct (roughly the balancer's own cost): eBPF %s us, userspace %s us\n",
			values(over(pathEBPF), clean, "%+.0f"), values(over(pathUser), clean, "%+.0f"))

		switch n := countTrue(clean); {
		case n == 0:
			fmt.Fprintf(&b, "\nratios: EVERY ROUND DISTURBED by other load (see \"quiet\" and \"steal\"); median of all rounds, not to be trusted\n")
		case s.rounds > 1:
			fmt.Fprintf(&b, "\nratios: median of the %d undisturbed rounds' ratios; each round's in brackets (\"!\" = disturbed)\n", n)
		default:
			fmt.Fprintf(&b, "\nratios\n")
		}
		ratio := func(name string, vs []float64, goalMin float64) {
			g := ""
			if goalMin > 0 {
				g = goal(medianOf(vs, clean) >= goalMin, fmt.Sprintf(">= %gx", goalMin))
			}
			fmt.Fprintf(&b, "  %-31s %s   %s\n", name, values(vs, clean, "%.2f"), g)
		}
		tput := func(num, den path) []float64 {
			return perRound(m.tput, func(r [numPaths]tputResult) float64 { return div(r[num].gbps, r[den].gbps) })
		}
		conn := func(num, den path) []float64 {
			return perRound(m.conn, func(r [numPaths]connResult) float64 { return div(r[num].rate, r[den].rate) })
		}
		ratio("throughput eBPF / direct", tput(pathEBPF, pathDirect), goalThroughput)
		ratio("throughput userspace / direct", tput(pathUser, pathDirect), 0)
		ratio("conn rate eBPF / userspace", conn(pathEBPF, pathUser), goalConnRate)
		ratio("conn rate eBPF / direct", conn(pathEBPF, pathDirect), 0)
		ratio("conn rate userspace / direct", conn(pathUser, pathDirect), 0)
		fmt.Fprintf(&b, "conntrack at the end: %d of %d entries; %d expired before the measurements, the longest pass took %v\n",
			m.ctEntries, m.ctMax, m.ctExpired, m.ctExpireTime.Round(time.Millisecond))
	}
	return b.String()
}

func perRound[T any](rounds []T, f func(T) float64) []float64 {
	var out []float64
	for _, r := range rounds {
		out = append(out, f(r))
	}
	return out
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cleanRounds says which rounds no measurement of was flagged as disturbed.
func (m *modeResult) cleanRounds() []bool {
	out := make([]bool, len(m.tput))
	for i := range out {
		out[i] = true
		for p := range numPaths {
			if m.tput[i][p].cpu.disturbed() || m.conn[i][p].cpu.disturbed() {
				out[i] = false
			}
		}
	}
	return out
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// medianOf is the median of the clean rounds' values, or of all when no
// round is clean.
func medianOf(vs []float64, clean []bool) float64 {
	var use []float64
	for i, v := range vs {
		if clean[i] {
			use = append(use, v)
		}
	}
	if len(use) == 0 {
		return median(vs)
	}
	return median(use)
}

// values formats the median (of the clean rounds), then with several rounds
// each round's value, "!" marking the disturbed ones.
func values(vs []float64, clean []bool, format string) string {
	mark := func(i int) string {
		if clean[i] {
			return ""
		}
		return "!"
	}
	out := fmt.Sprintf(format, medianOf(vs, clean))
	if len(vs) == 1 {
		return out + mark(0)
	}
	var each []string
	for i, v := range vs {
		each = append(each, fmt.Sprintf(format, v)+mark(i))
	}
	return out + " [" + strings.Join(each, " ") + "]"
}

// disturbed says something else ran around the measurement, or other
// guests of the hypervisor during it.
func (c cpuUse) disturbed() bool { return max(c.before, c.after) >= busyBefore || c.steal >= stealMax }

// quietCol shows the CPU the machine used with the benchmark idle just
// before and after a measurement, flagged when that means other load.
func quietCol(c cpuUse) string {
	out := fmt.Sprintf("%.2f/%.2f", c.before, c.after)
	if c.disturbed() {
		out += "!"
	}
	return out
}

func proxyCol(p path, v float64) string {
	if p != pathUser {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func dropsString(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func goal(met bool, what string) string {
	if met {
		return "goal " + what + ": met"
	}
	return "goal " + what + ": MISSED"
}

func div(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
