package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// passthroughTable maps TLS server names to the cluster that terminates
// them: exact names, then the most specific wildcard.
type passthroughTable struct {
	exact    map[string]*config.TLSPassthrough
	wildcard map[string]*config.TLSPassthrough
}

func newPassthroughTable(t *config.ListenerTLS) *passthroughTable {
	if t == nil || len(t.Passthrough) == 0 {
		return nil
	}
	pt := &passthroughTable{exact: map[string]*config.TLSPassthrough{}, wildcard: map[string]*config.TLSPassthrough{}}
	for i := range t.Passthrough {
		p := &t.Passthrough[i]
		for _, n := range p.ServerNames {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				pt.wildcard[rest] = p
			} else {
				pt.exact[n] = p
			}
		}
	}
	return pt
}

func (pt *passthroughTable) lookup(sni string) *config.TLSPassthrough {
	name := strings.ToLower(strings.TrimSuffix(sni, "."))
	if name == "" {
		return nil
	}
	if p := pt.exact[name]; p != nil {
		return p
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if p := pt.wildcard[name[i+1:]]; p != nil {
				return p
			}
		}
	}
	return nil
}

var errSniffed = errors.New("server name read")

// sniffServerName reads the ClientHello with crypto/tls (so it is parsed
// as strictly as a real handshake) without answering it, and returns the
// server name and a connection that replays what was read.
func sniffServerName(nc net.Conn) (string, net.Conn) {
	rec := &recordingConn{Conn: nc}
	var sni string
	_ = tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errSniffed
	}}).Handshake()
	return sni, &replayConn{Conn: nc, pre: rec.read}
}

// recordingConn keeps what is read and writes nothing: the aborted
// sniffing handshake must not send the client an alert.
type recordingConn struct {
	net.Conn
	read []byte
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.read = append(r.read, p[:n]...)
	return n, err
}

func (r *recordingConn) Write(p []byte) (int, error) { return 0, errSniffed }

// servePassthrough relays a TLS connection, ClientHello included, to an
// endpoint of the cluster its server name maps to.
func (s *Server) servePassthrough(l *listenerMode, p *config.TLSPassthrough, t *tracked, nc net.Conn, st *State) {
	m := s.metrics
	cl := st.clusters[p.Cluster]
	if cl == nil {
		return // the cluster left with a reload; validation keeps them in step
	}
	ep := cl.Pick()
	if ep == nil {
		m.TCPClosed.WithLabelValues(l.name, "no_healthy_upstream").Inc()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	abort := func() { cancel() }
	t.abort.Store(&abort)
	up, done, err := ep.DialStream(ctx)
	cancel()
	t.abort.Store(nil)
	if err != nil {
		m.TCPClosed.WithLabelValues(l.name, "upstream_connect_failure").Inc()
		return
	}
	defer done()
	defer up.Close()
	tun := tunnel{idle: p.IdleTimeout.D(),
		open:   m.TCPConnections.WithLabelValues(l.name),
		total:  m.TCPConnectionsTotal.WithLabelValues(l.name),
		closed: func(reason string) { m.TCPClosed.WithLabelValues(l.name, reason).Inc() }}
	_, _ = tun.relay(nc, bufio.NewReader(nc), up, up)
}
