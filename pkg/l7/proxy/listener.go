package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// listener is one bound socket. It is identified by its address, so a
// reload that renames a listener or switches it between http and https
// keeps the socket (and every connection on it); mode says what it is now.
type listener struct {
	address string
	ln      net.Listener
	tlsConf *tls.Config
	mode    atomic.Pointer[listenerMode]
	// tcpOpen counts a tcp listener's open connections (its limit).
	tcpOpen atomic.Int64
}

// listenerMode is what a reload may change about a listener. A connection
// reads it once, when accepted.
type listenerMode struct {
	name     string
	protocol config.ListenerProtocol
	certs    *certStore       // nil for http
	tcp      *config.TCPProxy // tcp listeners
	// passthrough: TLS server names relayed without terminating.
	passthrough *passthroughTable
	// proxyProtocol: every connection starts with a PROXY protocol header.
	proxyProtocol bool
}

// certStore picks a certificate by SNI: exact name, then wildcard, then the
// first file certificate as the default. Certificates from Kubernetes Secrets
// never become the default: one team's certificate must not answer for
// names it does not cover.
type certStore struct {
	names  *hostTable[*tls.Certificate]
	def    *tls.Certificate
	min    uint16
	client *clientAuth // nil: no client certificates asked for
}

// loadCerts reads every certificate a listener names; errors carry the
// config field path.
func loadCerts(path string, t *config.ListenerTLS) (*certStore, error) {
	cs := &certStore{names: newHostTable[*tls.Certificate](), min: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		cs.min = tls.VersionTLS13
	}
	ca, err := loadClientAuth(path+".tls.clientAuth", t.ClientAuth)
	if err != nil {
		return nil, err
	}
	cs.client = ca
	for i, c := range t.Certificates {
		p := fmt.Sprintf("%s.tls.certificates[%d]", path, i)
		var cert tls.Certificate
		var err error
		if len(c.CertPEM) > 0 {
			cert, err = tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		} else {
			cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		}
		if err != nil {
			return nil, config.Errors{{Path: p, Reason: err.Error()}}
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, config.Errors{{Path: p + ".certFile", Reason: err.Error()}}
		}
		cert.Leaf = leaf
		names := c.ServerNames
		if len(names) == 0 {
			names = leaf.DNSNames
		}
		for _, n := range names {
			cs.names.add(n, &cert)
		}
		if cs.def == nil && len(c.CertPEM) == 0 {
			cs.def = &cert
		}
	}
	return cs, nil
}

func (cs *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c, ok := cs.names.lookup(hello.ServerName); ok {
		return c, nil
	}
	return cs.def, nil
}

func newListener(address string, ln net.Listener) *listener {
	l := &listener{address: address, ln: ln}
	l.tlsConf = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cs := l.mode.Load().certs
			if cs == nil {
				return nil, errors.New("listener no longer serves TLS")
			}
			c := &tls.Config{
				MinVersion:     cs.min,
				NextProtos:     []string{"h2", "http/1.1"},
				GetCertificate: cs.get,
			}
			if ca := cs.client; ca != nil {
				c.ClientCAs, c.ClientAuth = ca.pool, ca.mode(hello.ServerName)
			}
			return c, nil
		},
	}
	return l
}

// tracked is a client connection the server can find at shutdown. nc is
// the accepted socket (closing it also ends a TLS session on top of it).
type tracked struct {
	nc   net.Conn
	idle atomic.Bool
	// fresh: accepted, no request byte yet. A drain waits freshGrace for
	// the first request (a client that just connected is sending one; a
	// handed-over agent's queued connections are these), then closes it.
	fresh    atomic.Bool
	accepted time.Time
	// abort, when set, cuts the connection's upstream exchange at the drain
	// deadline so its goroutine does not wait for a slow upstream.
	abort atomic.Pointer[func()]
}

func (t *tracked) setIdle(v bool) { t.idle.Store(v) }

// freshGrace is how long a drain lets a new connection send its first
// request; net/http gives such connections 5s, but a drain must not wait
// on browsers' speculative pre-connections.
const freshGrace = 500 * time.Millisecond

// closable says whether a drain may close the connection now.
func (t *tracked) closable(now time.Time) bool {
	return t.idle.Load() || (t.fresh.Load() && now.Sub(t.accepted) > freshGrace)
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// h2Preface is what an h2c prior-knowledge client sends first (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

func (s *Server) acceptLoop(l *listener) {
	defer s.acceptWG.Done()
	s.accept(l.ln, func(net.Conn) *listener { return l }, func(error) bool { return false })
}

// accept serves ln until it is closed or ends(err) says an accept error
// ends the loop: each connection is served as the listener pick names, or
// closed when it names none.
func (s *Server) accept(ln net.Listener, pick func(net.Conn) *listener, ends func(error) bool) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ends(err) {
				return
			}
			s.log.Warn("accept failed", "address", ln.Addr().String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l := pick(nc)
		if l == nil {
			_ = nc.Close()
			continue
		}
		t := s.track(nc)
		if t == nil {
			_ = nc.Close()
			continue
		}
		go s.serveConn(l, t)
	}
}

// serveConn detects the protocol: TLS with ALPN on https listeners; on
// plaintext ones the HTTP/2 preface means h2c, anything else HTTP/1.1.
func (s *Server) serveConn(ln *listener, t *tracked) {
	defer s.untrack(t)
	nc := t.nc
	l := ln.mode.Load()
	m := s.metrics
	m.DownstreamTotal.WithLabelValues(l.name).Inc()
	active := m.DownstreamActive.WithLabelValues(l.name)
	active.Inc()
	defer active.Dec()
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	st := s.state.Load()
	if l.proxyProtocol {
		_ = nc.SetReadDeadline(time.Now().Add(st.server.readHeaderTimeout))
		pc, err := readProxyHeader(nc)
		if err != nil {
			s.log.Debug("refused connection", "listener", l.name, "client", nc.RemoteAddr().String(), "err", err)
			return
		}
		_ = nc.SetReadDeadline(time.Time{})
		nc = pc
	}
	if l.protocol == config.ListenerTCP {
		t.fresh.Store(false)
		s.serveTCP(ln, l, t, st)
		return
	}
	isTLS := l.protocol == config.ListenerHTTPS
	if l.protocol == config.ListenerAuto {
		// A TLS record starts with 0x16 (handshake); HTTP/1.x and the
		// HTTP/2 preface start with a letter.
		_ = nc.SetReadDeadline(time.Now().Add(st.server.readHeaderTimeout))
		var first [1]byte
		if _, err := io.ReadFull(nc, first[:]); err != nil {
			return
		}
		isTLS = first[0] == 0x16
		nc = &replayConn{Conn: nc, pre: first[:]}
	}
	if isTLS {
		// Fresh, not idle: a drain gives a new connection freshGrace to
		// get its handshake and first request going.
		_ = nc.SetDeadline(time.Now().Add(st.server.readHeaderTimeout))
		if l.passthrough != nil {
			sni, rc := sniffServerName(nc)
			nc = rc
			if target, ok := l.passthrough.lookup(sni); ok {
				_ = nc.SetDeadline(time.Time{})
				t.fresh.Store(false)
				s.servePassthrough(l, target, t, nc, st)
				return
			}
		}
		tc := tls.Server(nc, ln.tlsConf)
		err := tc.Handshake()
		if err != nil {
			s.log.Debug("tls handshake failed", "listener", l.name, "client", nc.RemoteAddr().String(), "err", err)
			return
		}
		_ = nc.SetDeadline(time.Time{})
		nc = tc
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			t.fresh.Store(false)
			s.h2.serveConn(nc, ln, st.server.writeTimeout)
			return
		}
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(nc)
	pooled := true
	defer func() {
		if pooled {
			br.Reset(nil)
			readerPool.Put(br)
		}
	}()
	if !isTLS {
		// The first request is due at once (as net/http, the header
		// timeout runs from accept); a drain gives it freshGrace.
		_ = nc.SetReadDeadline(time.Now().Add(st.server.readHeaderTimeout))
		b, err := br.Peek(1)
		if err == nil {
			t.fresh.Store(false)
		}
		if err == nil && b[0] == 'P' {
			if p, _ := br.Peek(len(h2Preface)); bytes.Equal(p, h2Preface) {
				_ = nc.SetReadDeadline(time.Time{})
				// net/http's frame reader may still be in br when it reports
				// the connection closed: br cannot go back to the pool.
				pooled = false
				s.h2.serveConn(&bufferedConn{Conn: nc, r: br}, ln, st.server.writeTimeout)
				return
			}
		}
	}
	s.serveH1(t, nc, br, ln, isTLS)
}

// replayConn reads pre before the connection's own bytes: what was read
// to tell the protocol or the TLS server name.
type replayConn struct {
	net.Conn
	pre []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// CloseWrite half-closes when the connection underneath can.
func (r *replayConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.Conn.Close()
}

// bufferedConn replays bytes already read while sniffing the protocol.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
