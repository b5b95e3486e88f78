package proxy

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// passthroughTable maps TLS server names to the cluster that terminates
// them.
type passthroughTable = hostTable[*config.TLSPassthrough]

func newPassthroughTable(t *config.ListenerTLS) *passthroughTable {
	if t == nil || len(t.Passthrough) == 0 {
		return nil
	}
	pt := newHostTable[*config.TLSPassthrough]()
	for i := range t.Passthrough {
		for _, n := range t.Passthrough[i].ServerNames {
			pt.add(n, &t.Passthrough[i])
		}
	}
	return pt
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
	s.relayToCluster(l.name, p.Cluster, p.IdleTimeout.D(), t, nc, st)
}
