// Package upstream is the client side of the proxy: clusters of endpoints,
// load-balancing policies, pooled HTTP/1.1 connections and h2c transports.
// Clusters and their warm connections survive config reloads when their
// settings do not change.
package upstream

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/h2client"
	"github.com/edge-agent/edge-agent/pkg/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Cluster is the runtime form of a config.Cluster.
type Cluster struct {
	Name     string
	Protocol config.UpstreamProtocol
	cfg      config.Cluster
	*settings
	eps    []*Endpoint
	picker picker
	h2     *h2client.Pool
	log    *slog.Logger

	// Traffic policy: breakers count in state (kept across rebuilds).
	state       *clusterState
	limits      limits
	pstats      policyStats
	outlier     *outlierPolicy
	healthCheck *config.HealthCheck
	slowStart   time.Duration
	ring        *ring
}

// settings are shared by a cluster's endpoints and kept across reloads when
// unchanged, so endpoints (and their pools) can be reused.
type settings struct {
	connectTimeout time.Duration
	idleTimeout    time.Duration
	maxIdle        int
	stats          clusterStats
	// state is the cluster's breaker state, shared by its rebuilds.
	state *clusterState
	// tls wraps connections when the cluster says so; set after settings
	// are compared, since it is rebuilt from config each time.
	tls *tls.Config
}

type clusterStats struct {
	open          prometheus.Gauge
	connectOK     prometheus.Counter
	connectErrors prometheus.Counter
	inflight      prometheus.Gauge
}

// Endpoint is one upstream address with its connection pool.
type Endpoint struct {
	Address string
	Weight  int
	cluster *settings
	active  atomic.Int64
	pool    pool

	// Outlier detection: failure streaks, and the ejection (unix ns; 0:
	// none) with how many times it happened and when it last ended.
	consec5xx, consecGateway, consecLocal atomic.Int32
	ejectedUntil, returnedAt              atomic.Int64
	ejections                             atomic.Int64
	// unhealthy is set by failing active health checks.
	unhealthy atomic.Bool
	// warmFrom starts the endpoint's slow-start window (unix ns; 0: warm).
	warmFrom atomic.Int64
	checker  *endpointChecker
}

// Endpoints lists the cluster's endpoints.
func (c *Cluster) Endpoints() []*Endpoint { return c.eps }

// Manager owns every cluster and reconciles them with each new config.
type Manager struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	mu      sync.Mutex
	current map[string]*Cluster
	states  map[string]*clusterState
	stop    chan struct{}
	done    chan struct{}
	closed  sync.Once
}

// NewManager starts the idle-connection sweeper; Close stops it.
func NewManager(log *slog.Logger, m *metrics.Metrics) *Manager {
	mgr := &Manager{log: log, metrics: m, current: map[string]*Cluster{}, states: map[string]*clusterState{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go mgr.sweepLoop()
	return mgr
}

// Update builds clusters for cfgs, reusing unchanged clusters and endpoints,
// and retires the rest. It returns the new set by name.
func (m *Manager) Update(cfgs []config.Cluster) map[string]*Cluster {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*Cluster, len(cfgs))
	keepEps := map[*Endpoint]bool{}
	for _, cfg := range cfgs {
		old := m.current[cfg.Name]
		if old != nil && reflect.DeepEqual(old.cfg, cfg) {
			next[cfg.Name] = old
			for _, e := range old.eps {
				keepEps[e] = true
			}
			continue
		}
		c := m.build(cfg, old)
		for _, e := range c.eps {
			keepEps[e] = true
		}
		next[cfg.Name] = c
	}
	for name := range m.states {
		if next[name] == nil {
			delete(m.states, name)
		}
	}
	for _, c := range next {
		m.reconcileHealth(c)
	}
	for name, old := range m.current {
		for _, e := range old.eps {
			if !keepEps[e] {
				e.closeIdle()
				e.stopChecker()
				if n := next[name]; n != nil && n.h2 == old.h2 && old.h2 != nil && !n.hasAddress(e.Address) {
					old.h2.DrainAddr(e.Address) // the pool lives on; this endpoint's connections do not
				}
				if e.ejectedUntil.Swap(0) != 0 {
					old.pstats.ejected.Dec() // it leaves ejected: the gauge must not keep it
				}
			}
		}
		if n := next[name]; (n == nil || n.h2 != old.h2) && old.h2 != nil {
			old.h2.Close() // streams in flight finish; nothing new starts
		}
	}
	m.current = next
	return next
}

func (m *Manager) build(cfg config.Cluster, old *Cluster) *Cluster {
	s := &settings{
		connectTimeout: cfg.ConnectTimeout.D(),
		idleTimeout:    cfg.IdleConnTimeout.D(),
		maxIdle:        cfg.MaxIdleConnsPerEndpoint,
		stats: clusterStats{
			open:          m.metrics.UpstreamActive.WithLabelValues(cfg.Name),
			connectOK:     m.metrics.UpstreamConnects.WithLabelValues(cfg.Name, "ok"),
			connectErrors: m.metrics.UpstreamConnects.WithLabelValues(cfg.Name, "error"),
			inflight:      m.metrics.UpstreamRequests.WithLabelValues(cfg.Name),
		},
	}
	st := m.states[cfg.Name]
	if st == nil {
		st = &clusterState{}
		m.states[cfg.Name] = st
	}
	c := &Cluster{Name: cfg.Name, Protocol: cfg.Protocol, cfg: cfg, log: m.log, state: st,
		limits: limitsFrom(cfg.CircuitBreaker), outlier: newOutlierPolicy(cfg.OutlierDetection),
		healthCheck: cfg.HealthCheck, slowStart: cfg.SlowStart.D(), pstats: m.policyStats(cfg.Name)}
	s.state = st
	reuse := map[string]*Endpoint{}
	if cfg.TLS != nil {
		// An unusable CA fails closed: no handshake verifies. Apply checks
		// the CA (CheckTLS) before it gets here.
		s.tls, _ = ClientTLS(cfg.TLS)
	}
	if old != nil && sameSettings(old.settings, s) && old.Protocol == cfg.Protocol && reflect.DeepEqual(old.cfg.TLS, cfg.TLS) {
		s = old.settings
		for _, e := range old.eps {
			reuse[e.Address] = e
		}
		c.h2 = old.h2
	}
	c.settings = s
	now := time.Now().UnixNano()
	for _, ec := range cfg.Endpoints {
		if e := reuse[ec.Address]; e != nil && e.Weight == ec.Weight {
			c.eps = append(c.eps, e)
			continue
		}
		e := &Endpoint{Address: ec.Address, Weight: ec.Weight, cluster: s}
		if old != nil && c.slowStart > 0 {
			// Added to a serving cluster: ramp up. Endpoints present at
			// start take their full share at once (no traffic to protect).
			e.warmFrom.Store(now)
		}
		c.eps = append(c.eps, e)
	}
	if c.outlier == nil {
		// Outlier detection is off (or was turned off): lift ejections.
		for _, e := range c.eps {
			if e.ejectedUntil.Swap(0) != 0 {
				c.pstats.ejected.Dec()
			}
		}
	}
	c.picker = newPicker(cfg.LBPolicy, c.eps)
	if cfg.LBPolicy == config.LBMaglev {
		c.ring = newRing(c.eps)
	}
	if cfg.Protocol == config.UpstreamH2C && c.h2 == nil {
		c.h2 = newH2CPool(s)
	}
	return c
}

// sameSettings compares everything but the TLS config, which is rebuilt
// from config each time (the caller compares the config instead).
func sameSettings(a, b *settings) bool {
	x, y := *a, *b
	x.tls, y.tls = nil, nil
	return x == y
}

func (c *Cluster) hasAddress(addr string) bool {
	for _, e := range c.eps {
		if e.Address == addr {
			return true
		}
	}
	return false
}

// newH2CPool is the cluster's cleartext prior-knowledge HTTP/2 client:
// streams share as few connections per endpoint as the server's
// concurrent-stream limit allows.
func newH2CPool(s *settings) *h2client.Pool {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		nc, err := s.dialTCP(ctx, addr)
		if err == nil {
			s.stats.connectOK.Inc()
		}
		return nc, err
	}
	return h2client.NewPool(dial, h2client.Options{IdleTimeout: s.idleTimeout})
}

func (m *Manager) sweepLoop() {
	defer close(m.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.mu.Lock()
			var eps []*Endpoint
			var pools []*h2client.Pool
			for _, c := range m.current {
				eps = append(eps, c.eps...)
				if c.h2 != nil {
					pools = append(pools, c.h2)
				}
			}
			m.mu.Unlock()
			for _, e := range eps {
				e.sweep(now)
			}
			for _, p := range pools {
				p.Sweep(now)
			}
		}
	}
}

// Close stops the sweeper and closes every idle connection.
func (m *Manager) Close() {
	m.closed.Do(func() { close(m.stop) })
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.current {
		for _, e := range c.eps {
			e.closeIdle()
			e.stopChecker()
		}
		if c.h2 != nil {
			c.h2.Close()
		}
	}
}
