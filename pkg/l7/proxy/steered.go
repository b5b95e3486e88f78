package proxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// steeredSocket is the one listening socket of steering mode. The kernel
// (sk_lookup) hands it connections for every listener address; the
// connection's local address is the destination the client dialed.
type steeredSocket struct {
	ln    net.Listener
	table atomic.Pointer[steerTable]
	// quiet, when set, makes the accept loop stop after that long without
	// a new connection (see HandOver); done closes when the loop ends.
	quiet atomic.Int64
	done  chan struct{}
}

// steerTable maps destinations to listeners: exact (IP, port) first, then
// the port on every address.
type steerTable struct {
	exact map[netip.AddrPort]*listener
	any   map[uint16]*listener
}

func steerTableFor(ls []config.Listener, byAddr map[string]*listener) *steerTable {
	t := &steerTable{exact: map[netip.AddrPort]*listener{}, any: map[uint16]*listener{}}
	for _, lc := range ls {
		l := byAddr[lc.Address]
		for _, a := range append([]string{lc.Address}, lc.Steer...) {
			ap, err := config.SteeredAddress(a)
			if err != nil {
				continue // validation rejects these
			}
			if ap.Addr().IsUnspecified() {
				t.any[ap.Port()] = l
			} else {
				t.exact[ap] = l
			}
		}
	}
	return t
}

func (t *steerTable) lookup(local net.Addr) *listener {
	ta, ok := local.(*net.TCPAddr)
	if !ok {
		return nil
	}
	ap := ta.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if l := t.exact[ap]; l != nil {
		return l
	}
	return t.any[ap.Port()]
}

// acceptSteered serves the steered socket: each connection is served as
// the listener its original destination belongs to. A connection for a
// destination no longer configured (a reload raced it) is closed.
func (s *Server) acceptSteered(ss *steeredSocket) {
	defer s.acceptWG.Done()
	defer close(ss.done)
	pick := func(nc net.Conn) *listener {
		if q := ss.quiet.Load(); q > 0 {
			_ = ss.ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Duration(q)))
		}
		l := ss.table.Load().lookup(nc.LocalAddr())
		if l == nil {
			s.metrics.SteeredUnknown.Inc()
			s.log.Debug("steered connection for an unconfigured destination", "destination", nc.LocalAddr().String())
		}
		return l
	}
	// Handed over and the queue is empty.
	quiesced := func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) && ss.quiet.Load() > 0 }
	s.accept(ss.ln, pick, quiesced)
}

// HandOver is called once a new agent's socket has replaced this one in
// the SOCKMAP: no new connection is steered here any more, but some may
// still wait in the accept queue. It accepts them until quiet passes with
// none, then returns; Shutdown drains what was accepted. Without steering
// it returns at once.
func (s *Server) HandOver(quiet time.Duration) {
	s.applyMu.Lock()
	st := s.steered
	s.applyMu.Unlock()
	if st == nil {
		return
	}
	st.quiet.Store(int64(quiet))
	_ = st.ln.(*net.TCPListener).SetDeadline(time.Now().Add(quiet))
	<-st.done
}
