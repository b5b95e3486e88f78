package l4test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/netnstest"
)

// httpTimeout is the overall timeout of HTTPClient's clients; a test that
// streams for longer sets its own.
const httpTimeout = 10 * time.Second

// Run runs fn on a locked OS thread switched into the namespace (like
// netnstest.Host.Run). Sockets fn creates stay in the namespace and can be
// used from any goroutine afterwards.
//
// fn runs on a goroutine of its own, so it must not call t.FailNow (t.Fatal)
// and should use IP literals: goroutines it starts, such as those of a DNS
// lookup, run on other threads in the root namespace. A panic in fn is
// re-raised in the caller.
func (ns *NS) Run(fn func() error) error { return netnstest.RunIn(ns.Name, fn) }

// Listen opens a plain TCP (not MPTCP) listener in the namespace on addr
// ("ip:port", port 0 allowed), closed on t.Cleanup.
func (ns *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	return netnstest.ListenIn(t, ns.Name, addr)
}

// ListenUDP opens a UDP socket in the namespace bound to addr ("ip:port",
// port 0 allowed). It is closed on t.Cleanup.
func (ns *NS) ListenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := ns.Run(func() error {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return err
		}
		conn = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		t.Fatalf("l4test: listen on udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Dial connects from inside the namespace ("tcp" or "udp", "ip:port"),
// giving up after timeout (0: no limit but the kernel's).
func (ns *NS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return ns.DialContext(ctx, network, addr)
}

// DialContext is Dial with a context instead of a timeout. TCP connections
// are plain TCP, never MPTCP.
func (ns *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := ns.Run(func() error {
		var d net.Dialer
		d.SetMultipathTCP(false)
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("from netns %s: %w", ns.Name, err)
	}
	return conn, nil
}

// HTTPClient returns a client whose connections are dialed from inside the
// namespace. Keep-alives are off unless keepAlive, so by default every
// request is a new connection (a new flow for the load balancer). It uses
// no proxy from the environment, and an overall timeout of 10s. Use IP
// literals in URLs.
func (ns *NS) HTTPClient(keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: httpTimeout,
		Transport: &http.Transport{
			DialContext:       ns.DialContext,
			DisableKeepAlives: !keepAlive,
		},
	}
}
