package l4

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// These tests run the real program on crafted packets with
// BPF_PROG_TEST_RUN: no interfaces, only the kernel's verifier and helpers.

var pinSeq atomic.Int64

// testDatapath loads the program with its maps pinned in a directory of
// this test's own, removed (by name) afterwards.
func testDatapath(t *testing.T) *Datapath {
	t.Helper()
	requireBPF(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	d, err := Load(nil, dir)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		d.Close()
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// requireBPF skips without root or bpffs, except in CI, where a missing
// capability must fail the run.
func requireBPF(t *testing.T) {
	t.Helper()
	if err := ensureBPFFS("/sys/fs/bpf"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("BPF tests need root and /sys/fs/bpf: %v", err)
		}
		t.Skipf("BPF tests need root and /sys/fs/bpf: %v", err)
	}
}

var (
	clientIP = netip.MustParseAddr("192.0.2.10")
	vip      = netip.MustParseAddr("198.51.100.1")
	backend1 = netip.MustParseAddrPort("10.1.0.2:8080")
)

type pkt struct {
	src, dst    netip.AddrPort
	proto       uint8
	ipOptions   int // extra 4-byte words of IP options
	fragOff     uint16
	udpZeroCsum bool
	tcpFlags    uint8
	payload     []byte
	truncateTo  int
	etherType   uint16
	ihl         byte // overrides the header length field (malformed packets)
}

// build returns an Ethernet frame with valid IP and L4 checksums.
func (p pkt) build() []byte {
	ihl := 5 + p.ipOptions
	l4len := 8
	if p.proto == ProtoTCP {
		l4len = 20
	}
	ip := make([]byte, ihl*4+l4len+len(p.payload))
	ip[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[6:], p.fragOff)
	ip[8] = 64
	ip[9] = p.proto
	s, d := p.src.Addr().As4(), p.dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	for i := 20; i < ihl*4; i++ {
		ip[i] = 1 // NOP options
	}
	l4 := ip[ihl*4:]
	binary.BigEndian.PutUint16(l4[0:], p.src.Port())
	binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
	if p.proto == ProtoTCP {
		l4[12] = 5 << 4
		l4[13] = p.tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], p.payload)
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.payload)))
		copy(l4[8:], p.payload)
	}
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:ihl*4], 0))
	if p.proto == ProtoTCP {
		binary.BigEndian.PutUint16(l4[16:], l4Checksum(ip, ihl))
	} else if !p.udpZeroCsum {
		binary.BigEndian.PutUint16(l4[6:], l4Checksum(ip, ihl))
	}
	if p.ihl != 0 {
		ip[0] = 0x40 | p.ihl
	}
	frame := make([]byte, 14, 14+len(ip))
	et := p.etherType
	if et == 0 {
		et = 0x0800
	}
	binary.BigEndian.PutUint16(frame[12:], et)
	frame = append(frame, ip...)
	if p.truncateTo > 0 {
		frame = frame[:p.truncateTo]
	}
	return frame
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// l4Checksum computes the TCP/UDP checksum with its field zeroed.
func l4Checksum(ip []byte, ihl int) uint16 {
	l4 := append([]byte(nil), ip[ihl*4:]...)
	off := 6
	if ip[9] == ProtoTCP {
		off = 16
	}
	l4[off], l4[off+1] = 0, 0
	var sum uint32
	sum += uint32(binary.BigEndian.Uint16(ip[12:])) + uint32(binary.BigEndian.Uint16(ip[14:]))
	sum += uint32(binary.BigEndian.Uint16(ip[16:])) + uint32(binary.BigEndian.Uint16(ip[18:]))
	sum += uint32(ip[9]) + uint32(len(l4))
	c := checksum(l4, sum)
	if c == 0 && ip[9] == ProtoUDP {
		c = 0xffff
	}
	return c
}

// parsed is what a test reads back from a frame.
type parsed struct {
	src, dst           netip.AddrPort
	ipCsumOK, l4CsumOK bool
	l4Csum             uint16
}

func parse(t *testing.T, frame []byte) parsed {
	t.Helper()
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	l4 := ip[ihl:]
	var s, d [4]byte
	copy(s[:], ip[12:16])
	copy(d[:], ip[16:20])
	p := parsed{
		src:      netip.AddrPortFrom(netip.AddrFrom4(s), binary.BigEndian.Uint16(l4[0:])),
		dst:      netip.AddrPortFrom(netip.AddrFrom4(d), binary.BigEndian.Uint16(l4[2:])),
		ipCsumOK: checksum(ip[:ihl], 0) == 0,
	}
	off := 6
	if ip[9] == ProtoTCP {
		off = 16
	}
	p.l4Csum = binary.BigEndian.Uint16(l4[off:])
	p.l4CsumOK = p.l4Csum == l4Checksum(ip, ihl/4)
	return p
}

const tcActOK, tcActShot, tcActRedirect = 0, 2, 7

// forwarded: the program either redirected the packet itself (the FIB of
// the test's namespace had a route) or left routing to the stack.
func forwarded(ret uint32) bool { return ret == tcActOK || ret == tcActRedirect }

func run(t *testing.T, d *Datapath, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	ret, err := d.objs.LbIngress.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, out[:len(frame)]
}

func passCount(t *testing.T, d *Datapath, reason lbPassReason) uint64 {
	t.Helper()
	var per []uint64
	if err := d.objs.EaPassStats.Lookup(uint32(reason), &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

func oneService(t *testing.T, d *Datapath, proto uint8) {
	t.Helper()
	// Source-preserving: the packet tests have no node address to SNAT to.
	err := d.Sync([]Service{{Name: "web", VIP: vip, Port: 80, Proto: proto, Backends: []Backend{{Addr: backend1, Weight: 1}}}})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
}

func TestPacketDNATAndReverseNAT(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto uint8
		opts  int
	}{{"tcp", ProtoTCP, 0}, {"udp", ProtoUDP, 0}, {"tcp with IP options", ProtoTCP, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDatapath(t)
			oneService(t, d, tc.proto)
			client := netip.AddrPortFrom(clientIP, 40000)
			in := pkt{src: client, dst: netip.AddrPortFrom(vip, 80), proto: tc.proto, ipOptions: tc.opts, payload: []byte("hello")}.build()
			ret, out := run(t, d, in)
			if !forwarded(ret) {
				t.Fatalf("verdict %d", ret)
			}
			p := parse(t, out)
			if p.dst != backend1 || p.src != client {
				t.Fatalf("rewritten to %s -> %s, want %s -> %s", p.src, p.dst, client, backend1)
			}
			if !p.ipCsumOK || !p.l4CsumOK {
				t.Fatalf("checksums after DNAT: ip %v l4 %v", p.ipCsumOK, p.l4CsumOK)
			}
			// The backend's reply gets the VIP back as its source.
			reply := pkt{src: backend1, dst: client, proto: tc.proto, payload: []byte("world!")}.build()
			ret, out = run(t, d, reply)
			p = parse(t, out)
			if !forwarded(ret) || p.src != netip.AddrPortFrom(vip, 80) || p.dst != client {
				t.Fatalf("reply %d: %s -> %s", ret, p.src, p.dst)
			}
			if !p.ipCsumOK || !p.l4CsumOK {
				t.Fatalf("checksums after reverse NAT: ip %v l4 %v", p.ipCsumOK, p.l4CsumOK)
			}
			flows, err := d.Flows()
			if err != nil || len(flows) != 2 {
				t.Fatalf("conntrack = %+v, %v", flows, err)
			}
		})
	}
}

func TestPacketUDPZeroChecksumStaysZero(t *testing.T) {
	d := testDatapath(t)
	oneService(t, d, ProtoUDP)
	in := pkt{src: netip.AddrPortFrom(clientIP, 5353), dst: netip.AddrPortFrom(vip, 80), proto: ProtoUDP, udpZeroCsum: true, payload: []byte("x")}.build()
	_, out := run(t, d, in)
	p := parse(t, out)
	if p.dst != backend1 || p.l4Csum != 0 || !p.ipCsumOK {
		t.Fatalf("dst %s udp csum %#x ip ok %v", p.dst, p.l4Csum, p.ipCsumOK)
	}
}

func TestPacketsPassedUntouched(t *testing.T) {
	d := testDatapath(t)
	oneService(t, d, ProtoTCP)
	toVIP := netip.AddrPortFrom(vip, 80)
	client := netip.AddrPortFrom(clientIP, 40001)
	for _, tc := range []struct {
		name   string
		p      pkt
		reason lbPassReason
	}{
		{"unknown VIP", pkt{src: client, dst: netip.MustParseAddrPort("198.51.100.2:80"), proto: ProtoTCP}, lbPassReasonPASS_NO_SERVICE},
		{"unknown port", pkt{src: client, dst: netip.AddrPortFrom(vip, 81), proto: ProtoTCP}, lbPassReasonPASS_NO_SERVICE},
		{"UDP to a TCP service", pkt{src: client, dst: toVIP, proto: ProtoUDP}, lbPassReasonPASS_NO_SERVICE},
		{"ICMP", pkt{src: client, dst: toVIP, proto: 1}, lbPassReasonPASS_NOT_TCP_UDP},
		{"first fragment", pkt{src: client, dst: toVIP, proto: ProtoTCP, fragOff: 0x2000}, lbPassReasonPASS_FRAGMENT},
		{"later fragment", pkt{src: client, dst: toVIP, proto: ProtoTCP, fragOff: 0x0010}, lbPassReasonPASS_FRAGMENT},
		{"IP header longer than the packet", pkt{src: client, dst: toVIP, proto: ProtoTCP, ihl: 15, truncateTo: 14 + 40}, lbPassReasonPASS_TRUNCATED},
		{"IP header length below 5", pkt{src: client, dst: toVIP, proto: ProtoTCP, ihl: 4}, lbPassReasonPASS_MALFORMED},
		{"truncated ports", pkt{src: client, dst: toVIP, proto: ProtoTCP, truncateTo: 14 + 20 + 2}, lbPassReasonPASS_TRUNCATED},
		{"IPv6 ethertype", pkt{src: client, dst: toVIP, proto: ProtoTCP, etherType: 0x86dd}, lbPassReasonPASS_NOT_IPV4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.p.build()
			if tc.p.proto == 1 { // ICMP: no ports; the bytes are just payload
				frame = pkt{src: client, dst: toVIP, proto: 1, payload: []byte("12345678")}.build()
			}
			before := passCount(t, d, tc.reason)
			ret, out := run(t, d, frame)
			if ret != tcActOK {
				t.Fatalf("verdict %d, want pass", ret)
			}
			if string(out) != string(frame) {
				t.Fatalf("packet modified")
			}
			if after := passCount(t, d, tc.reason); after != before+1 {
				t.Fatalf("pass counter %v: %d -> %d", tc.reason, before, after)
			}
		})
	}
}

func TestPacketNoBackendIsDropped(t *testing.T) {
	d := testDatapath(t)
	if err := d.Sync([]Service{{Name: "empty", VIP: vip, Port: 80, Proto: ProtoTCP}}); err != nil {
		t.Fatal(err)
	}
	ret, _ := run(t, d, pkt{src: netip.AddrPortFrom(clientIP, 1), dst: netip.AddrPortFrom(vip, 80), proto: ProtoTCP}.build())
	if ret != tcActShot || passCount(t, d, lbPassReasonDROP_NO_BACKEND) != 1 {
		t.Fatalf("verdict %d", ret)
	}
}

// Removing one of N backends moves the flows that were on it and almost
// none of the others (Maglev's minimal disruption, seen through the real
// program and maps).
func TestPacketBackendRemovalMovesOneNth(t *testing.T) {
	d := testDatapath(t)
	bes := []Backend{
		{Addr: netip.MustParseAddrPort("10.1.0.1:80"), Weight: 1},
		{Addr: netip.MustParseAddrPort("10.1.0.2:80"), Weight: 1},
		{Addr: netip.MustParseAddrPort("10.1.0.3:80"), Weight: 1},
	}
	pick := func() map[uint16]netip.AddrPort {
		t.Helper()
		out := map[uint16]netip.AddrPort{}
		for sport := uint16(10000); sport < 13000; sport++ {
			_, o := run(t, d, pkt{src: netip.AddrPortFrom(clientIP, sport), dst: netip.AddrPortFrom(vip, 80), proto: ProtoTCP, tcpFlags: 0x02}.build())
			out[sport] = parse(t, o).dst
		}
		// Forget the flows, so the next round is new flows again.
		flows := d.objs.EaConntrack
		var k lbCtKey
		var v lbCtValue
		var keys []lbCtKey
		it := flows.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, k)
		}
		for _, k := range keys {
			_ = flows.Delete(k)
		}
		return out
	}
	if err := d.Sync([]Service{{Name: "web", VIP: vip, Port: 80, Proto: ProtoTCP, Backends: bes}}); err != nil {
		t.Fatal(err)
	}
	before := pick()
	counts := map[netip.AddrPort]int{}
	for _, b := range before {
		counts[b]++
	}
	if err := d.Sync([]Service{{Name: "web", VIP: vip, Port: 80, Proto: ProtoTCP, Backends: bes[:2]}}); err != nil {
		t.Fatal(err)
	}
	after := pick()
	moved, movedFromSurvivors := 0, 0
	for sport, was := range before {
		if after[sport] == was {
			continue
		}
		moved++
		if was != bes[2].Addr {
			movedFromSurvivors++
		}
	}
	total := len(before)
	t.Logf("spread %v; removing 1 of 3 moved %d of %d flows (%d from surviving backends)", counts, moved, total, movedFromSurvivors)
	for _, b := range bes {
		if share := float64(counts[b.Addr]) / float64(total); share < 0.28 || share > 0.39 {
			t.Errorf("backend %s got %.1f%% of flows", b.Addr, 100*share)
		}
	}
	if moved != counts[bes[2].Addr]+movedFromSurvivors || float64(movedFromSurvivors) > 0.03*float64(total) {
		t.Fatalf("moved %d, of which %d from survivors: more than Maglev's minimal disruption allows", moved, movedFromSurvivors)
	}
}

// An L4 service switched to L7 leaves the balancer, but the flows it has
// keep their backend: conntrack forwards them without the service, counting
// against the ids conntrack holds.
func TestPacketServiceRemovedKeepsEstablishedFlow(t *testing.T) {
	d := testDatapath(t)
	oneService(t, d, ProtoTCP)
	svcs, err := d.Pinned().Services()
	if err != nil || len(svcs) != 1 {
		t.Fatalf("services %+v, %v", svcs, err)
	}
	client := netip.AddrPortFrom(clientIP, 40100)
	toVIP := netip.AddrPortFrom(vip, 80)
	ret, out := run(t, d, pkt{src: client, dst: toVIP, proto: ProtoTCP, tcpFlags: 0x02}.build())
	if p := parse(t, out); !forwarded(ret) || p.dst != backend1 {
		t.Fatalf("SYN: verdict %d to %s", ret, p.dst)
	}
	if err := d.Sync(nil); err != nil {
		t.Fatal(err)
	}
	noService := passCount(t, d, lbPassReasonPASS_NO_SERVICE)
	ret, out = run(t, d, pkt{src: client, dst: toVIP, proto: ProtoTCP, tcpFlags: 0x10, payload: []byte("more")}.build())
	p := parse(t, out)
	if !forwarded(ret) || p.dst != backend1 || p.src != client || !p.ipCsumOK || !p.l4CsumOK {
		t.Fatalf("ACK after the service left: verdict %d, %s -> %s, checksums %v %v", ret, p.src, p.dst, p.ipCsumOK, p.l4CsumOK)
	}
	ret, out = run(t, d, pkt{src: backend1, dst: client, proto: ProtoTCP, tcpFlags: 0x10}.build())
	if p := parse(t, out); !forwarded(ret) || p.src != toVIP || p.dst != client {
		t.Fatalf("reply after the service left: verdict %d, %s -> %s", ret, p.src, p.dst)
	}
	if n := passCount(t, d, lbPassReasonPASS_NO_SERVICE); n != noService {
		t.Fatalf("no_service counted %d packets of the established flow", n-noService)
	}
	// Sync zeroed the removed service's counters; the flow counts on.
	var per []lbSvcStats
	if err := d.objs.EaSvcStats.Lookup(svcs[0].ID, &per); err != nil {
		t.Fatal(err)
	}
	var packets uint64
	for _, s := range per {
		packets += s.Packets
	}
	if packets != 1 {
		t.Fatalf("service %d counted %d packets after removal, want 1", svcs[0].ID, packets)
	}
}

// A SYN reusing the 5-tuple of a flow whose service is gone is a new
// connection for the new mode (L7): it goes to the stack untouched, and the
// stale entries go, so the rest of its handshake does not follow them.
// While the service exists, a SYN on a known flow (a retransmission) keeps
// its backend.
func TestPacketSYNWithStaleConntrackAndNoService(t *testing.T) {
	d := testDatapath(t)
	oneService(t, d, ProtoTCP)
	client := netip.AddrPortFrom(clientIP, 40200)
	syn := pkt{src: client, dst: netip.AddrPortFrom(vip, 80), proto: ProtoTCP, tcpFlags: 0x02}.build()
	for range 2 {
		ret, out := run(t, d, syn)
		if p := parse(t, out); !forwarded(ret) || p.dst != backend1 {
			t.Fatalf("SYN with the service: verdict %d to %s", ret, p.dst)
		}
	}
	if flows, err := d.Flows(); err != nil || len(flows) != 2 {
		t.Fatalf("conntrack = %+v, %v", flows, err)
	}
	if err := d.Sync(nil); err != nil {
		t.Fatal(err)
	}
	before := passCount(t, d, lbPassReasonPASS_NO_SERVICE)
	ret, out := run(t, d, syn)
	if ret != tcActOK || string(out) != string(syn) {
		t.Fatalf("SYN without the service: verdict %d, modified %v", ret, string(out) != string(syn))
	}
	if after := passCount(t, d, lbPassReasonPASS_NO_SERVICE); after != before+1 {
		t.Fatalf("no_service %d -> %d", before, after)
	}
	if flows, err := d.Flows(); err != nil || len(flows) != 0 {
		t.Fatalf("stale conntrack left: %+v, %v", flows, err)
	}
	ack := pkt{src: client, dst: netip.AddrPortFrom(vip, 80), proto: ProtoTCP, tcpFlags: 0x10}.build()
	if ret, out := run(t, d, ack); ret != tcActOK || string(out) != string(ack) {
		t.Fatalf("the handshake's ACK: verdict %d, modified %v", ret, string(out) != string(ack))
	}
}

// Mid-stream TCP to a service without a conntrack entry stays with a local
// socket that owns the flow (the proxy's connection from before the service
// became L4); a listener alone does not count, and neither does a SYN.
func TestPacketMidStreamOwnedByLocalSocket(t *testing.T) {
	d := testDatapath(t)
	// A connection in this process's network namespace, the one the test
	// run looks sockets up in.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialer net.Dialer
	dialer.SetMultipathTCP(false)
	c, err := dialer.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	server := netip.MustParseAddrPort(ln.Addr().String())
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	err = d.Sync([]Service{{Name: "local", VIP: server.Addr(), Port: server.Port(), Proto: ProtoTCP, Backends: []Backend{{Addr: backend1, Weight: 1}}}})
	if err != nil {
		t.Fatal(err)
	}

	owned := pkt{src: client, dst: server, proto: ProtoTCP, tcpFlags: 0x18, payload: []byte("data")}.build()
	for i := range 2 {
		ret, out := run(t, d, owned)
		if ret != tcActOK || string(out) != string(owned) {
			t.Fatalf("packet of the local connection: verdict %d, modified %v", ret, string(out) != string(owned))
		}
		if n := passCount(t, d, lbPassReasonPASS_LOCAL_SOCKET); n != uint64(i+1) {
			t.Fatalf("local_socket = %d, want %d", n, i+1)
		}
	}
	if flows, err := d.Flows(); err != nil || len(flows) != 0 {
		t.Fatalf("conntrack for a local connection: %+v, %v", flows, err)
	}
	// Another source port: only the listener matches, so the packet is a
	// flow whose entry was lost, and it is balanced.
	stray := pkt{src: netip.AddrPortFrom(client.Addr(), client.Port()^0x5555), dst: server, proto: ProtoTCP, tcpFlags: 0x10}.build()
	ret, out := run(t, d, stray)
	if p := parse(t, out); !forwarded(ret) || p.dst != backend1 {
		t.Fatalf("mid-stream packet matching only the listener: verdict %d to %s", ret, p.dst)
	}
	// A SYN is a new connection: the service takes it, socket or not.
	syn := pkt{src: client, dst: server, proto: ProtoTCP, tcpFlags: 0x02}.build()
	ret, out = run(t, d, syn)
	if p := parse(t, out); !forwarded(ret) || p.dst != backend1 {
		t.Fatalf("SYN on the local connection's tuple: verdict %d to %s", ret, p.dst)
	}
	if n := passCount(t, d, lbPassReasonPASS_LOCAL_SOCKET); n != 2 {
		t.Fatalf("local_socket = %d, want 2", n)
	}
}

func TestPassReasonsMatchTheProgram(t *testing.T) {
	if len(PassReasons) != int(lbPassReasonPASS_REASON_MAX) {
		t.Fatalf("PassReasons has %d names, the program %d reasons", len(PassReasons), lbPassReasonPASS_REASON_MAX)
	}
}

func TestConntrackExpiry(t *testing.T) {
	d := testDatapath(t)
	now, err := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	put := func(sport uint16, proto uint8, flags uint8, age time.Duration) {
		t.Helper()
		k := lbCtKey{Saddr: ip4(clientIP), Daddr: ip4(vip), Sport: port(sport), Dport: port(80), Proto: proto}
		v := lbCtValue{NatIp: ip4(backend1.Addr()), NatPort: port(backend1.Port()), Flags: flags, LastSeen: now - uint64(age)}
		if err := d.objs.EaConntrack.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	// Small ages: the monotonic clock starts at boot, and CI machines are young.
	put(1, ProtoTCP, 0, 500*time.Millisecond)  // established, recent: stays
	put(2, ProtoTCP, 1, 1200*time.Millisecond) // closing past its timeout: expires
	put(3, ProtoUDP, 0, 2*time.Second)         // UDP idle past its timeout: expires
	put(4, ProtoUDP, 0, 100*time.Millisecond)  // UDP recent: stays
	put(5, ProtoTCP, 0, 4*time.Second)         // established but idle past its timeout: expires
	n, err := d.Expire(Timeouts{TCP: 3 * time.Second, Closing: time.Second, UDP: 1500 * time.Millisecond})
	if err != nil || n != 3 {
		fl, _ := d.Flows()
		t.Fatalf("expired %d, %v; want 3: %+v", n, err, fl)
	}
	flows, _ := d.Flows()
	left := map[uint16]bool{}
	for _, f := range flows {
		left[f.Src.Port()] = true
	}
	if len(flows) != 2 || !left[1] || !left[4] {
		t.Fatalf("left %+v", flows)
	}
}

// A sync that changes nothing writes nothing: Maglev tables are compared
// in memory (the benchmark below shows the cost).
func BenchmarkSyncUnchanged100Services(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-bench-%d-%d", os.Getpid(), pinSeq.Add(1)))
	d, err := Load(nil, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { d.Close(); _ = Cleanup(dir) }()
	var svcs []Service
	for i := range 100 {
		s := Service{Name: fmt.Sprint(i), VIP: netip.AddrFrom4([4]byte{10, 200, byte(i / 250), byte(i%250 + 1)}), Port: 80, Proto: ProtoTCP}
		for j := range 3 {
			s.Backends = append(s.Backends, Backend{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, byte(i), byte(j + 1)}), 8080), Weight: 1})
		}
		svcs = append(svcs, s)
	}
	if err := d.Sync(svcs); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := d.Sync(svcs); err != nil {
			b.Fatal(err)
		}
	}
}
