package l4

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

// echoLocal answers every connection with its own name and the address the
// client dialed (getsockname), then closes.
func echoLocal(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %s\n", name, c.LocalAddr())
		c.Close()
	}
}

func dialRead(addr netip.AddrPort) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestSteeringToOneProxySocket(t *testing.T) {
	requireBPF(t)
	h := netnstest.New(t, 3)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	s, err := LoadSteering(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); _ = Cleanup(dir) })
	if err := s.AttachNetns(netnstest.NetnsPath(h.Name)); err != nil {
		t.Fatal(err)
	}
	// One proxy socket, on loopback inside the namespace: it is bound to
	// none of the addresses clients dial.
	proxy1 := netnstest.ListenIn(t, h.Name, "127.0.0.1:0")
	go echoLocal(proxy1, "proxy-1")
	if err := s.SetProxySocket(proxy1); err != nil {
		t.Fatal(err)
	}
	var targets []SteerTarget
	var dial []netip.AddrPort
	for i := range 10 {
		ap := netip.AddrPortFrom(h.Addrs[0], uint16(1000+i))
		targets, dial = append(targets, SteerTarget{Addr: ap, Proto: ProtoTCP}), append(dial, ap)
	}
	for i := range 8 {
		ap := netip.AddrPortFrom(h.Addrs[1], uint16(2000+i))
		targets, dial = append(targets, SteerTarget{Addr: ap, Proto: ProtoTCP}), append(dial, ap)
	}
	// A port steered on every address.
	targets = append(targets, SteerTarget{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 3000), Proto: ProtoTCP})
	dial = append(dial, netip.AddrPortFrom(h.Addrs[2], 3000), netip.AddrPortFrom(h.Addrs[0], 3000))
	if err := s.SyncTargets(targets); err != nil {
		t.Fatal(err)
	}
	for _, ap := range dial {
		got, err := dialRead(ap)
		if err != nil || got != "proxy-1 "+ap.String() {
			t.Fatalf("%s: %q, %v", ap, got, err)
		}
	}
	// A pair not marked L7 is handled by the stack as before: refused.
	if _, err := dialRead(netip.AddrPortFrom(h.Addrs[2], 4000)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("unmarked pair: %v, want connection refused", err)
	}
	table, err := ReadSteering(dir)
	if err != nil || len(table.Targets) != len(targets) || table.SocketCookie == 0 {
		t.Fatalf("steering table %+v, %v", table, err)
	}
	steered, noSock, failed, err := s.SteerCounts()
	if err != nil || steered != uint64(len(dial)) || noSock != 0 || failed != 0 {
		t.Fatalf("counters steered %d no-socket %d failed %d (%v), want %d", steered, noSock, failed, err, len(dial))
	}

	// A new agent's socket takes over: new connections go to it at once,
	// while a connection accepted by the old one stays with it.
	held, err := net.DialTimeout("tcp", dial[0].String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	proxy2 := netnstest.ListenIn(t, h.Name, "127.0.0.1:0")
	go echoLocal(proxy2, "proxy-2")
	s2, err := LoadSteering(dir) // the restarted agent: same pins
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.AttachNetns(netnstest.NetnsPath(h.Name)); err != nil {
		t.Fatal(err)
	}
	if err := s2.SetProxySocket(proxy2); err != nil {
		t.Fatal(err)
	}
	for _, ap := range dial[:5] {
		if got, err := dialRead(ap); err != nil || got != "proxy-2 "+ap.String() {
			t.Fatalf("after handover %s: %q, %v", ap, got, err)
		}
	}
	_ = held.SetDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(held).ReadString('\n'); err != nil || !strings.HasPrefix(line, "proxy-1 ") {
		t.Fatalf("connection accepted before the handover: %q, %v", line, err)
	}
}
