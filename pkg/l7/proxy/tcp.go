package proxy

import (
	"bufio"
	"context"

	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
)

// serveTCP relays a tcp listener's connection to an endpoint of its
// cluster, picked by the cluster's LB policy, until both sides are done
// (half-closes pass through) or the idle timeout ends it.
func (s *Server) serveTCP(ln *listener, l *listenerMode, t *tracked, st *State) {
	m := s.metrics
	refuse := func(reason string) { m.TCPClosed.WithLabelValues(l.name, reason).Inc() }
	if max := l.tcp.MaxConnections; max > 0 && ln.tcpOpen.Load() >= int64(max) {
		refuse("max_connections")
		return
	}
	ln.tcpOpen.Add(1)
	defer ln.tcpOpen.Add(-1)
	cl := st.clusters[l.tcp.Cluster]
	var ep *upstream.Endpoint
	if cl != nil {
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
	if err != nil {
		s.log.Debug("tcp upstream connect failed", "listener", l.name, "upstream", ep.Address, "err", err)
		refuse("upstream_connect_failure")
		return
	}
	defer done()
	defer up.Close()
	t.abort.Store(nil)
	tun := tunnel{idle: l.tcp.IdleTimeout.D(),
		open:   m.TCPConnections.WithLabelValues(l.name),
		total:  m.TCPConnectionsTotal.WithLabelValues(l.name),
		closed: func(reason string) { m.TCPClosed.WithLabelValues(l.name, reason).Inc() }}
	_, _ = tun.relay(t.nc, bufio.NewReader(t.nc), up, up)
}
