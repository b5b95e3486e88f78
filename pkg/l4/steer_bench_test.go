package l4

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

// BenchmarkSteering compares connections steered by the sk_lookup program
// to the one proxy socket in the SOCKMAP with connections to a server bound
// directly to the port, in one run, so that hack/bench/steer.sh can report
// steered/bound ratios (performance is never asserted on).
//
// Two fresh namespaces get the same tiny responder (reads a 16-byte
// request, writes a 16-byte reply, until the connection ends):
//
//   - bound: the responder listens on ADDR:8080; no program is attached to
//     that namespace, so this is the plain kernel.
//   - steered: the responder listens on 127.0.0.1:0, is the SOCKMAP's
//     proxy socket, and ADDR:8080 (nothing bound there) is a steering
//     target.
//
// The client dials ADDR:8080 from inside the namespace (a locked thread
// switched into it with netnstest.RunIn), so the path is loopback and the
// program's share of a connection is as large as it gets. Workloads:
//
//   - connect: per iteration dial, one request and reply, close with
//     SO_LINGER 0 (an RST: no TIME_WAIT, so ephemeral ports never run out).
//     sk_lookup runs once per connection, on the SYN.
//   - request: one persistent connection, per iteration one request and
//     reply. An established connection is found without sk_lookup, so
//     steering should cost nothing here.
//
// Client and responder are each one OS thread making blocking system
// calls (the responder serves one connection at a time, which is all the
// client opens), both pinned to the same CPU, so every wake-up is a plain
// context switch on that CPU. Left to the scheduler, the two threads (or
// the Go runtime's threads of a netpoller server) land on the same CPU in
// some runs and on different ones in others; on the 2-vCPU VM this was
// written on, a round trip took ~20 µs on one vCPU and 160-200 µs across
// the two, and unpinned runs landed anywhere in between.
// EDGE_AGENT_STEERBENCH_CPU picks the CPU (default: the last one this
// process may use; "off": no pinning).
//
// Steered runs also report prog-ns/op: the program's own run time per
// iteration, from the kernel's BPF run-time statistics (enabled during
// those runs only).
//
// For each workload bound and steered run back to back; with
// EDGE_AGENT_STEERBENCH_FIRST=steered the steered one runs first (steer.sh
// alternates the order between rounds, so neither side always goes first).
func BenchmarkSteering(b *testing.B) {
	benchRequireBPF(b)
	const port = 8080
	cpu, err := benchCPU()
	if err != nil {
		b.Fatal(err)
	}

	// bound: the responder on ADDR:port, no program in the namespace.
	hb := netnstest.New(b, 1)
	boundTarget := netip.AddrPortFrom(hb.Addrs[0], port)
	benchServe(b, hb.Name, boundTarget, cpu)

	// steered: the responder on loopback, ADDR:port steered to it.
	hs := netnstest.New(b, 1)
	steeredTarget := netip.AddrPortFrom(hs.Addrs[0], port)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	s, err := LoadSteering(dir)
	if err != nil {
		b.Fatal(err)
	}
	// Registered after netnstest.New's cleanup, so it runs before it.
	b.Cleanup(func() {
		s.Close()
		if err := Cleanup(dir); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	})
	if err := s.AttachNetns(netnstest.NetnsPath(hs.Name)); err != nil {
		b.Fatal(err)
	}
	proxyLn := benchServe(b, hs.Name, netip.MustParseAddrPort("127.0.0.1:0"), cpu)
	if err := s.SetProxySocket(proxyLn); err != nil {
		b.Fatal(err)
	}
	if err := s.SyncTargets([]SteerTarget{{Addr: steeredTarget, Proto: ProtoTCP}}); err != nil {
		b.Fatal(err)
	}

	type mode struct {
		name   string
		netns  string
		target netip.AddrPort
		steer  *Steering // counters checked after the run; nil: bound
	}
	modes := []mode{
		{"bound", hb.Name, boundTarget, nil},
		{"steered", hs.Name, steeredTarget, s},
	}
	if os.Getenv("EDGE_AGENT_STEERBENCH_FIRST") == "steered" {
		modes[0], modes[1] = modes[1], modes[0]
	}
	// One probe each before measuring: both paths work, and the steered
	// one really goes through the program.
	for _, m := range modes {
		before, _, _, _ := s.SteerCounts()
		if err := netnstest.RunIn(m.netns, func() error {
			fd, err := benchDial(m.target)
			if err != nil {
				return err
			}
			defer benchCloseRST(fd)
			return benchRoundTrip(fd)
		}); err != nil {
			b.Fatalf("%s probe %s: %v", m.name, m.target, err)
		}
		after, _, _, _ := s.SteerCounts()
		want := uint64(0)
		if m.steer != nil {
			want = 1
		}
		if got := after - before; got != want {
			b.Fatalf("%s probe: steered %d connections, want %d", m.name, got, want)
		}
	}

	workloads := []struct {
		name, unit string
		run        func(b *testing.B, target netip.AddrPort) error
	}{
		{"connect", "conns/s", benchConnect},
		{"request", "req/s", benchRequest},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, m := range modes {
				b.Run(m.name, func(b *testing.B) {
					var before [3]uint64
					var progBefore *ebpf.ProgramStats
					if m.steer != nil {
						before[0], before[1], before[2], _ = m.steer.SteerCounts()
						// The program's own run time (two clock reads more
						// per run while enabled: tens of ns per connection).
						if stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME); err == nil {
							defer stats.Close()
							progBefore, _ = m.steer.objs.Steer.Stats()
						}
					}
					if err := netnstest.RunIn(m.netns, func() error {
						restore, err := benchPinThread(cpu)
						if err != nil {
							return err
						}
						defer restore()
						return w.run(b, m.target)
					}); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), w.unit)
					if progBefore != nil {
						if after, err := m.steer.objs.Steer.Stats(); err == nil {
							b.ReportMetric(float64(after.Runtime-progBefore.Runtime)/float64(b.N), "prog-ns/op")
						}
					}
					if m.steer != nil {
						steered, noSock, failed, err := m.steer.SteerCounts()
						if err != nil {
							b.Fatal(err)
						}
						want := uint64(1) // request: the one connection
						if w.name == "connect" {
							want = uint64(b.N)
						}
						if steered-before[0] < want || noSock != before[1] || failed != before[2] {
							b.Fatalf("counters: steered +%d (want >= %d), no socket +%d, failed +%d",
								steered-before[0], want, noSock-before[1], failed-before[2])
						}
					}
				})
			}
		})
	}
}

// benchConnect runs on a thread in the namespace: b.N short connections.
func benchConnect(b *testing.B, target netip.AddrPort) error {
	b.ResetTimer()
	for range b.N {
		fd, err := benchDial(target)
		if err != nil {
			return err
		}
		err = benchRoundTrip(fd)
		benchCloseRST(fd)
		if err != nil {
			return err
		}
	}
	b.StopTimer()
	return nil
}

// benchRequest runs on a thread in the namespace: b.N round trips on one
// connection.
func benchRequest(b *testing.B, target netip.AddrPort) error {
	fd, err := benchDial(target)
	if err != nil {
		return err
	}
	defer benchCloseRST(fd)
	b.ResetTimer()
	for range b.N {
		if err := benchRoundTrip(fd); err != nil {
			return err
		}
	}
	b.StopTimer()
	return nil
}

const benchMsgLen = 16

var (
	benchRequest16 = []byte("GET steer bench\n")
	benchReply16   = []byte("200 steer bench\n")
)

// benchCPU is the CPU client and responder share, or -1 for none.
func benchCPU() (int, error) {
	v := os.Getenv("EDGE_AGENT_STEERBENCH_CPU")
	switch v {
	case "off":
		return -1, nil
	case "":
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return 0, fmt.Errorf("CPU affinity: %w", err)
		}
		for cpu := len(set)*64 - 1; cpu >= 0; cpu-- {
			if set.IsSet(cpu) {
				return cpu, nil
			}
		}
		return 0, errors.New("CPU affinity: empty")
	}
	cpu, err := strconv.Atoi(v)
	if err != nil || cpu < 0 {
		return 0, fmt.Errorf("EDGE_AGENT_STEERBENCH_CPU=%q: want a CPU number or off", v)
	}
	return cpu, nil
}

// benchPinThread pins the calling thread, which must be locked, to cpu (-1:
// leaves it alone); restore puts back its previous CPUs.
func benchPinThread(cpu int) (restore func(), err error) {
	if cpu < 0 {
		return func() {}, nil
	}
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() { _ = unix.SchedSetaffinity(0, &old) }, nil
}

// benchListener is a blocking listening socket served by benchServe; it
// is a net.Listener (and, through *os.File, a syscall.Conn) only so that
// SetProxySocket takes it.
type benchListener struct{ *os.File }

func (benchListener) Accept() (net.Conn, error) { return nil, errors.New("served by benchServe") }
func (benchListener) Addr() net.Addr            { return nil }

// benchServe listens on addr in the namespace and serves one connection
// at a time on a thread of its own pinned to cpu: answers every
// benchMsgLen-byte request with a benchMsgLen-byte reply until the client
// closes or resets. It stops, and the socket is closed, on b.Cleanup.
func benchServe(b *testing.B, netns string, addr netip.AddrPort, cpu int) benchListener {
	b.Helper()
	lfd := -1
	err := netnstest.RunIn(netns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		lfd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
			return err
		}
		return unix.Listen(fd, 128)
	})
	if err != nil {
		if lfd >= 0 {
			unix.Close(lfd)
		}
		b.Fatalf("listen on %s in %s: %v", addr, netns, err)
	}
	ln := benchListener{os.NewFile(uintptr(lfd), "listener "+addr.String())}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread, pinned, ends with this goroutine.
		runtime.LockOSThread()
		if _, err := benchPinThread(cpu); err != nil {
			b.Errorf("responder on %s: %v", addr, err)
			return
		}
		var buf [benchMsgLen]byte
		for {
			cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			if err != nil {
				return // shut down
			}
			for {
				if benchReadFull(cfd, buf[:]) != nil || benchWriteFull(cfd, benchReply16) != nil {
					break // the client closed (usually with an RST)
				}
			}
			unix.Close(cfd)
		}
	}()
	b.Cleanup(func() {
		// Wakes the accept; closing alone would not.
		_ = unix.Shutdown(lfd, unix.SHUT_RDWR)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			b.Errorf("responder on %s did not stop", addr)
		}
		ln.Close()
	})
	return ln
}

// The client makes blocking system calls on the calling thread, which
// must be in the namespace (a socket is created in its creator thread's
// namespace) and, to be pinned, locked: no netpoller, no Go scheduler
// between the client and the kernel.

// benchDial returns a connected blocking TCP socket (TCP_NODELAY,
// SO_LINGER 0: closing sends an RST and leaves no TIME_WAIT, so a tight
// connect loop never runs out of ephemeral ports).
func benchDial(target netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_LINGER: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	// Bounds a connect that never completes and a read that never returns
	// (the responder serves one connection at a time).
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("socket timeout: %w", err)
		}
	}
	sa := &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	err = unix.Connect(fd, sa)
	for errors.Is(err, unix.EINTR) || errors.Is(err, unix.EALREADY) {
		// Interrupted: the handshake goes on; connect again to wait for it.
		err = unix.Connect(fd, sa)
	}
	if err != nil && !errors.Is(err, unix.EISCONN) {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", target, err)
	}
	return fd, nil
}

func benchRoundTrip(fd int) error {
	if err := benchWriteFull(fd, benchRequest16); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	var buf [benchMsgLen]byte
	if err := benchReadFull(fd, buf[:]); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf[:]) != string(benchReply16) {
		return fmt.Errorf("unexpected reply %q", buf[:])
	}
	return nil
}

func benchWriteFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func benchReadFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Read(fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
	}
	return nil
}

func benchCloseRST(fd int) { unix.Close(fd) }

// benchRequireBPF is requireBPF for benchmarks: skip without root or bpffs,
// fail in CI.
func benchRequireBPF(b *testing.B) {
	b.Helper()
	if err := ensureBPFFS("/sys/fs/bpf"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			b.Fatalf("BPF benchmarks need root and /sys/fs/bpf: %v", err)
		}
		b.Skipf("BPF benchmarks need root and /sys/fs/bpf: %v", err)
	}
}
