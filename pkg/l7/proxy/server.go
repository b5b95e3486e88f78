package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// Server owns the listeners, the live State and every client connection.
type Server struct {
	log       *slog.Logger
	accessLog *slog.Logger
	metrics   *metrics.Metrics
	clusters  *upstream.Manager
	state     atomic.Pointer[State]
	draining  atomic.Bool

	h2 *h2conns

	mu        sync.Mutex
	applyMu   sync.Mutex
	listeners map[string]*listener
	// steered is the one socket the kernel hands every listener address
	// to (steering mode); nil when listeners bind their own sockets.
	steered  *steeredSocket
	conns    map[*tracked]struct{}
	connWG   sync.WaitGroup
	acceptWG sync.WaitGroup
}

// New creates a Server; nothing listens until the first Apply.
func New(log, accessLog *slog.Logger, m *metrics.Metrics) *Server {
	s := &Server{
		log: log, accessLog: accessLog, metrics: m,
		clusters:  upstream.NewManager(log, m),
		listeners: map[string]*listener{},
		conns:     map[*tracked]struct{}{},
	}
	s.h2 = newH2Conns(&h2handler{srv: s})
	return s
}

// State returns the live state (nil before the first Apply).
func (s *Server) State() *State { return s.state.Load() }

// Addr returns the bound address of a listener, for tests using port 0.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.mode.Load().name == name {
			if l.ln == nil {
				ap, _ := config.SteeredAddress(l.address)
				return net.TCPAddrFromAddrPort(ap)
			}
			return l.ln.Addr()
		}
	}
	return nil
}

// Apply makes snap live: TLS material is loaded and new sockets bound
// first, so a snapshot that cannot be served is rejected whole and the old
// one keeps running. Requests in flight finish on the State they started on.
func (s *Server) Apply(snap *config.Snapshot) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.draining.Load() {
		return errors.New("server is shutting down")
	}
	cfg := snap.Config
	certs := map[string]*certStore{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.TLS != nil {
			cs, err := loadCerts(fmt.Sprintf("listeners[%d]", i), l.TLS)
			if err != nil {
				return err
			}
			certs[l.Name] = cs
		}
	}
	for i := range cfg.Clusters {
		if t := cfg.Clusters[i].TLS; t != nil {
			if err := upstream.CheckTLS(t); err != nil {
				return config.Errors{{Path: fmt.Sprintf("clusters[%d].tls", i), Reason: err.Error()}}
			}
		}
	}
	s.mu.Lock()
	old := s.listeners
	s.mu.Unlock()
	steering := cfg.Steering.Enabled
	if (s.steered != nil) != steering && len(old) > 0 {
		return errors.New("steering.enabled changes need a restart")
	}
	var newSteered *steeredSocket
	if steering && s.steered == nil {
		ln, err := listen(cfg.Steering.SocketAddress)
		if err != nil {
			return fmt.Errorf("steering socket: %w", err)
		}
		newSteered = &steeredSocket{ln: ln, done: make(chan struct{})}
	}
	// Sockets are kept by address; only new addresses are bound. With
	// steering, listeners bind nothing: the kernel steers to one socket.
	next := map[string]*listener{}
	var opened []*listener
	closeOpened := func() {
		for _, l := range opened {
			_ = l.ln.Close()
		}
		if newSteered != nil {
			_ = newSteered.ln.Close()
		}
	}
	for _, lc := range cfg.Listeners {
		if ol := old[lc.Address]; ol != nil {
			next[lc.Address] = ol
			continue
		}
		if steering {
			next[lc.Address] = newListener(lc.Address, nil)
			continue
		}
		ln, err := listen(lc.Address)
		if err != nil {
			closeOpened()
			return fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		l := newListener(lc.Address, ln)
		next[lc.Address] = l
		opened = append(opened, l)
	}
	clusters := s.clusters.Update(cfg.Clusters)
	st, err := Compile(snap, clusters, s.metrics, s.state.Load(), s.log)
	if err != nil {
		closeOpened()
		return err
	}
	for _, lc := range cfg.Listeners {
		next[lc.Address].mode.Store(&listenerMode{name: lc.Name, protocol: lc.Protocol, certs: certs[lc.Name], tcp: lc.TCP,
			passthrough: newPassthroughTable(lc.TLS), proxyProtocol: lc.ProxyProtocol})
	}
	s.state.Store(st)
	if newSteered != nil {
		s.steered = newSteered
	}
	if steering {
		s.steered.table.Store(steerTableFor(cfg.Listeners, next))
	}
	s.mu.Lock()
	s.listeners = next
	s.mu.Unlock()
	if newSteered != nil {
		s.acceptWG.Add(1)
		go s.acceptSteered(newSteered)
		s.log.Info("steering socket listening", "address", newSteered.ln.Addr().String())
	}
	for _, l := range opened {
		s.acceptWG.Add(1)
		go s.acceptLoop(l)
		mode := l.mode.Load()
		s.log.Info("listening", "listener", mode.name, "address", l.ln.Addr().String(), "protocol", mode.protocol)
	}
	for addr, l := range old {
		if next[addr] != l && l.ln != nil {
			_ = l.ln.Close()
		}
	}
	return nil
}

// SteeredListener is the socket the kernel steers listener addresses to
// (nil without steering): the agent puts it in the pinned SOCKMAP.
func (s *Server) SteeredListener() net.Listener {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.steered == nil {
		return nil
	}
	return s.steered.ln
}

// listen binds addr. MPTCP is off: Go ≥ 1.24 would otherwise use it and a
// SOCKMAP (steering) refuses MPTCP sockets.
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

func (s *Server) track(nc net.Conn) *tracked {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return nil
	}
	t := &tracked{nc: nc, accepted: time.Now()}
	t.fresh.Store(true)
	s.conns[t] = struct{}{}
	s.connWG.Add(1)
	return t
}

func (s *Server) untrack(t *tracked) {
	s.mu.Lock()
	delete(s.conns, t)
	s.mu.Unlock()
	s.connWG.Done()
}

// Shutdown stops accepting, closes idle connections, lets in-flight requests
// finish until ctx ends, then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	// Wait for an Apply in progress: it may be about to open listeners.
	s.applyMu.Lock()
	s.draining.Store(true)
	s.applyMu.Unlock()
	s.mu.Lock()
	for _, l := range s.listeners {
		if l.ln != nil {
			_ = l.ln.Close()
		}
	}
	if s.steered != nil {
		_ = s.steered.ln.Close()
	}
	s.mu.Unlock()
	s.acceptWG.Wait()
	// GOAWAY to every HTTP/2 connection; streams in flight complete.
	go func() { _ = s.h2.shutdown(ctx) }()
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		s.closeIdle()
		select {
		case <-done:
			break loop
		case <-tick.C:
		case <-ctx.Done():
			err = fmt.Errorf("drain deadline reached: %w", ctx.Err())
			s.mu.Lock()
			for t := range s.conns {
				_ = t.nc.Close()
				if abort := t.abort.Load(); abort != nil {
					(*abort)()
				}
			}
			s.mu.Unlock()
			<-done
			break loop
		}
	}
	s.clusters.Close()
	if st := s.state.Load(); st != nil {
		for _, rt := range st.runtimes {
			rt.retire(nil)
		}
		if st.extDefault != nil {
			st.extDefault.auth.Close()
		}
	}
	return err
}

func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for t := range s.conns {
		if t.closable(now) {
			_ = t.nc.Close()
		}
	}
}

func (s *Server) logBad(remote string, pe *wire.ParseError, info reqInfo) {
	s.log.Debug("bad request", "client", remote, "status", info.status, "err", pe.Reason)
}
