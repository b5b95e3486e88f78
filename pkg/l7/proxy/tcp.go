package proxy

import (
	"bufio"
	"context"
	"net"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
)

// serveTCP relays a tcp listener's connection to its cluster, within the
// listener's connection limit.
func (s *Server) serveTCP(ln *listener, l *listenerMode, t *tracked, st *State) {
	if max := l.tcp.MaxConnections; max > 0 && ln.tcpOpen.Load() >= int64(max) {
		s.metrics.TCPClosed.WithLabelValues(l.name, "max_connections").Inc()
		return
	}
	ln.tcpOpen.Add(1)
	defer ln.tcpOpen.Add(-1)
	s.relayToCluster(l.name, l.tcp.Cluster, l.tcp.IdleTimeout.D(), t, t.nc, st)
}

// relayToCluster relays client to an endpoint of the named cluster, picked
// by its LB policy, until both sides are done (half-closes pass through)
// or idle ends it. TCP listeners and TLS passthrough use it; both are
// counted under the listener's name.
func (s *Server) relayToCluster(listener, cluster string, idle time.Duration, t *tracked, client net.Conn, st *State) {
	m := s.metrics
	refuse := func(reason string) { m.TCPClosed.WithLabelValues(listener, reason).Inc() }
	var ep *upstream.Endpoint
	if cl := st.clusters[cluster]; cl != nil {
		ep = cl.Pick()
	}
	if ep == nil {
		refuse("no_healthy_upstream")
		return
	}
	// Cut the dial short if a drain closes the client meanwhile.
	ctx, cancel := context.WithCancel(context.Background())
	abort := func() { cancel() }
	t.abort.Store(&abort)
	up, done, err := ep.DialStream(ctx)
	cancel()
	t.abort.Store(nil)
	if err != nil {
		s.log.Debug("upstream connect failed", "listener", listener, "upstream", ep.Address, "err", err)
		refuse("upstream_connect_failure")
		return
	}
	defer done()
	defer up.Close()
	tun := tunnel{idle: idle,
		open:   m.TCPConnections.WithLabelValues(listener),
		total:  m.TCPConnectionsTotal.WithLabelValues(listener),
		closed: refuse}
	_, _ = tun.relay(client, bufio.NewReader(client), up, up)
}
