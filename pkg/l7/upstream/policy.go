package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l4/maglev"
	"github.com/prometheus/client_golang/prometheus"
)

// Breaker names, as the Edge-Agent-Overflow header and metrics show them.
const (
	BreakerMaxRequests        = "max_requests"
	BreakerMaxRetries         = "max_retries"
	BreakerMaxConnections     = "max_connections"
	BreakerMaxPendingRequests = "max_pending_requests"
)

// clusterState is what a cluster counts while it serves: it outlives
// rebuilds of the cluster (a reload that changes its endpoints or limits),
// so in-flight work keeps counting against the same breakers.
type clusterState struct {
	requests, retries, pending, conns atomic.Int64
	// waiters is how many requests wait for a connection slot; freed is
	// closed (and replaced) to wake them when one may be available.
	waiters atomic.Int64
	mu      sync.Mutex
	freed   chan struct{}
	// ejectMu serialises ejection decisions (the max-percent check).
	ejectMu sync.Mutex
}

// limits are a cluster's circuit breakers (0: no limit).
type limits struct {
	maxConns, maxPending, maxRequests, maxRetries int64
}

func limitsFrom(cb *config.CircuitBreaker) limits {
	if cb == nil {
		return limits{}
	}
	return limits{int64(cb.MaxConnections), int64(cb.MaxPendingRequests), int64(cb.MaxRequests), int64(cb.MaxRetries)}
}

// policyStats are a cluster's policy metrics with labels bound once.
type policyStats struct {
	overflow map[string]prometheus.Counter
	ejected  prometheus.Gauge
	eject    map[string]prometheus.Counter
}

// StartRequest takes a slot in the max_requests breaker; false means the
// breaker is full and the request must be answered at once. Without a
// limit nothing is counted: a shared counter bounced between cores costs
// every request.
func (c *Cluster) StartRequest() bool {
	return c.limits.maxRequests == 0 || c.take(&c.state.requests, c.limits.maxRequests, BreakerMaxRequests)
}

// EndRequest gives back the slot StartRequest took.
func (c *Cluster) EndRequest() {
	if c.limits.maxRequests > 0 {
		c.state.requests.Add(-1)
	}
}

// StartRetry takes a slot in the max_retries breaker.
func (c *Cluster) StartRetry() bool {
	return c.limits.maxRetries == 0 || c.take(&c.state.retries, c.limits.maxRetries, BreakerMaxRetries)
}

// EndRetry gives back the slot StartRetry took.
func (c *Cluster) EndRetry() {
	if c.limits.maxRetries > 0 {
		c.state.retries.Add(-1)
	}
}

// take counts one more in n unless that passes limit.
func (c *Cluster) take(n *atomic.Int64, limit int64, breaker string) bool {
	if v := n.Add(1); v > limit {
		n.Add(-1)
		c.Overflowed(breaker)
		return false
	}
	return true
}

// Overflowed counts a request refused by breaker.
func (c *Cluster) Overflowed(breaker string) {
	if ctr := c.pstats.overflow[breaker]; ctr != nil {
		ctr.Inc()
	}
}

// acquireConn takes a connection slot before a dial. With every slot in
// use, an idle pooled connection (of any endpoint) is closed to free one;
// failing that the request waits (as one of at most maxPending) until a
// connection is freed or returned to the pool, or until deadline; again
// reports that an idle connection may be waiting, so the caller looks in
// the pool once more. Running out of time is an overflow of the breaker,
// not the endpoint's fault.
//
// deadline is set (from wait) when the first wait starts and kept across
// the caller's retries, so waking up does not restart the clock.
func (c *Cluster) acquireConn(ctx context.Context, wait time.Duration, deadline *time.Time) (again bool, err error) {
	st, lim := c.state, c.limits.maxConns
	if lim <= 0 {
		st.conns.Add(1)
		return false, nil
	}
	if st.tryTake(lim) || c.closeOneIdle() && st.tryTake(lim) {
		return false, nil
	}
	if st.pending.Add(1) > c.limits.maxPending {
		st.pending.Add(-1)
		return false, c.overflow(BreakerMaxPendingRequests)
	}
	defer st.pending.Add(-1)
	st.waiters.Add(1)
	defer st.waiters.Add(-1)
	if deadline.IsZero() {
		*deadline = time.Now().Add(wait)
	}
	t := time.NewTimer(time.Until(*deadline))
	defer t.Stop()
	for {
		st.mu.Lock()
		if st.freed == nil {
			st.freed = make(chan struct{})
		}
		ch := st.freed
		st.mu.Unlock()
		if st.tryTake(lim) {
			return false, nil
		}
		select {
		case <-ch:
			return true, nil
		case <-t.C:
			return false, c.overflow(BreakerMaxConnections)
		case <-ctx.Done():
			return false, &Error{Kind: Canceled, Err: ctx.Err()}
		}
	}
}

// overflow counts and reports a full breaker. A pending queue that is
// configured but full says max_pending_requests; none at all, or a wait
// that ran out, says max_connections.
func (c *Cluster) overflow(breaker string) error {
	if breaker == BreakerMaxPendingRequests && c.limits.maxPending == 0 {
		breaker = BreakerMaxConnections
	}
	c.Overflowed(breaker)
	return &Error{Kind: Overflow, Breaker: breaker, Err: errConnSlot}
}

// closeOneIdle closes one idle pooled connection of the cluster, so its
// slot can serve a request for another endpoint.
func (c *Cluster) closeOneIdle() bool {
	for _, e := range c.eps {
		p := &e.pool
		p.mu.Lock()
		if n := len(p.idle); n > 0 {
			conn := p.idle[0] // the oldest
			copy(p.idle, p.idle[1:])
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			conn.close()
			return true
		}
		p.mu.Unlock()
	}
	return false
}

func (st *clusterState) tryTake(lim int64) bool {
	for {
		n := st.conns.Load()
		if n >= lim {
			return false
		}
		if st.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// connFreed runs when a connection closes (released: it gave back its
// slot) or goes back to the pool; waiters, if any, look again.
func (st *clusterState) connFreed(released bool) {
	if released {
		st.conns.Add(-1)
	}
	if st.waiters.Load() == 0 {
		return
	}
	st.mu.Lock()
	if st.freed != nil {
		close(st.freed)
		st.freed = nil
	}
	st.mu.Unlock()
}

// guarded reports whether picks must check endpoint availability: the
// cluster ejects or health-checks endpoints, or warms new ones up.
func (c *Cluster) guarded() bool { return c.outlier != nil || c.healthCheck != nil || c.slowStart > 0 }

// Choose picks the endpoint for one attempt. hash (with hasHash) is the
// request's key for lbPolicy maglev; avoid holds the endpoints a retry has
// already tried. Ejected, unhealthy and avoided endpoints are skipped while
// another is available; when none is, any endpoint is used (as Envoy's
// panic mode does), so a cluster never turns all traffic away on its own
// say-so.
func (c *Cluster) Choose(hash uint64, hasHash bool, avoid []*Endpoint) *Endpoint {
	if !c.guarded() && len(avoid) == 0 {
		return c.pickOne(hash, hasHash, 0)
	}
	n := len(c.eps)
	if n == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	var fallback, fallbackFresh *Endpoint
	for i := range 2*n + 2 {
		e := c.pickOne(hash, hasHash, i)
		if e == nil {
			return nil
		}
		if fallback == nil {
			fallback = e
		}
		if contains(avoid, e) {
			continue
		}
		if fallbackFresh == nil {
			fallbackFresh = e
		}
		if !c.available(e, now) || !c.warm(e, now) {
			continue
		}
		return e
	}
	// Sampling a weighted picker can keep landing on a heavy endpoint that
	// is out: look at every endpoint once, from a random place.
	start := rand.IntN(n)
	for i := range n {
		e := c.eps[(start+i)%n]
		if !contains(avoid, e) && c.available(e, now) {
			return e
		}
	}
	if fallbackFresh != nil {
		return fallbackFresh
	}
	return fallback
}

// Pick chooses an endpoint without a request key (TCP listeners,
// passthrough, mirrors).
func (c *Cluster) Pick() *Endpoint { return c.Choose(0, false, nil) }

func (c *Cluster) pickOne(hash uint64, hasHash bool, i int) *Endpoint {
	if c.ring != nil && hasHash {
		return c.ring.pick(hash, i)
	}
	return c.picker.pick()
}

func contains(list []*Endpoint, e *Endpoint) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// available: not failing its health checks and not ejected. An ejection
// that has run out is lifted here, by the first pick that notices.
func (c *Cluster) available(e *Endpoint, now int64) bool {
	if e.unhealthy.Load() {
		return false
	}
	until := e.ejectedUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	if e.ejectedUntil.CompareAndSwap(until, 0) {
		c.pstats.ejected.Dec()
		e.returnedAt.Store(now)
		if c.slowStart > 0 {
			e.warmFrom.Store(now)
		}
	}
	return true
}

// warm applies slow start: an endpoint within its window is taken with a
// probability that grows linearly from 10% to 100%, so it is not flooded
// while its caches and JIT are cold.
func (c *Cluster) warm(e *Endpoint, now int64) bool {
	if c.slowStart <= 0 {
		return true
	}
	from := e.warmFrom.Load()
	if from == 0 {
		return true
	}
	age := now - from
	if age >= int64(c.slowStart) || age < 0 {
		e.warmFrom.CompareAndSwap(from, 0)
		return true
	}
	p := max(0.1, float64(age)/float64(c.slowStart))
	return randFloat() < p
}

// Outcome is how one attempt ended, for outlier detection.
type Outcome struct {
	// Status is the response status (0 when there was none).
	Status int
	// Failure is set for a local failure (connect failure, reset, timeout).
	Failure Kind
}

// Report feeds an attempt's outcome to outlier detection.
func (c *Cluster) Report(e *Endpoint, o Outcome) {
	od := c.outlier
	if od == nil || e == nil {
		return
	}
	switch o.Failure {
	case Canceled, BadRequestBody, Overflow, NoEndpoints:
		return // says nothing about the endpoint
	}
	local := o.Failure == ConnectFailure || o.Failure == Reset || o.Failure == Timeout || o.Failure == ProtocolError
	gateway := local || o.Status == 502 || o.Status == 503 || o.Status == 504
	fivexx := local || o.Status >= 500
	if !fivexx {
		// Success (or a client-side failure): the streak ends. Load first:
		// a store on every request would bounce the cache line.
		if e.consec5xx.Load() != 0 || e.consecGateway.Load() != 0 || e.consecLocal.Load() != 0 {
			e.consec5xx.Store(0)
			e.consecGateway.Store(0)
			e.consecLocal.Store(0)
		}
		return
	}
	reason := ""
	if n := e.consec5xx.Add(1); od.consec5xx > 0 && n >= od.consec5xx {
		reason = "consecutive_5xx"
	}
	if gateway {
		if n := e.consecGateway.Add(1); od.consecGateway > 0 && n >= od.consecGateway {
			reason = "consecutive_gateway_errors"
		}
	} else {
		e.consecGateway.Store(0)
	}
	if local {
		if n := e.consecLocal.Add(1); od.consecLocal > 0 && n >= od.consecLocal {
			reason = "consecutive_connect_failures"
		}
	} else {
		e.consecLocal.Store(0)
	}
	if reason != "" {
		c.eject(e, reason)
	}
}

// eject takes e out of rotation for base × (times ejected), capped at
// max, unless that would eject more than maxPercent of the cluster.
func (c *Cluster) eject(e *Endpoint, reason string) {
	od := c.outlier
	st := c.state
	st.ejectMu.Lock()
	defer st.ejectMu.Unlock()
	now := time.Now().UnixNano()
	if until := e.ejectedUntil.Load(); until != 0 && now < until {
		return // already out
	}
	ejected := 0
	for _, x := range c.eps {
		if u := x.ejectedUntil.Load(); u != 0 && now < u {
			ejected++
		}
	}
	if (ejected+1)*100 > od.maxPercent*len(c.eps) {
		return
	}
	// The multiplier decays: an endpoint that stayed in rotation for the
	// longest ejection time starts again from the base.
	if ret := e.returnedAt.Load(); ret != 0 && now-ret > int64(od.maxTime) {
		e.ejections.Store(0)
	}
	k := e.ejections.Add(1)
	d := min(od.baseTime*time.Duration(k), od.maxTime)
	if e.ejectedUntil.Swap(now+int64(d)) == 0 {
		c.pstats.ejected.Inc()
	}
	e.consec5xx.Store(0)
	e.consecGateway.Store(0)
	e.consecLocal.Store(0)
	if ctr := c.pstats.eject[reason]; ctr != nil {
		ctr.Inc()
	}
	c.log.Info("outlier ejected", "cluster", c.Name, "endpoint", e.Address, "reason", reason, "for", d)
}

// Ejected reports whether e is out of rotation by outlier detection now.
func (e *Endpoint) Ejected() bool {
	u := e.ejectedUntil.Load()
	return u != 0 && time.Now().UnixNano() < u
}

// Healthy reports e's active health-check state (true without checks).
func (e *Endpoint) Healthy() bool { return !e.unhealthy.Load() }

// outlierPolicy is config.OutlierDetection in run-time form.
type outlierPolicy struct {
	consec5xx, consecGateway, consecLocal int32
	baseTime, maxTime                     time.Duration
	maxPercent                            int
}

func newOutlierPolicy(o *config.OutlierDetection) *outlierPolicy {
	if o == nil {
		return nil
	}
	return &outlierPolicy{
		consec5xx: int32(*o.Consecutive5xx), consecGateway: int32(o.ConsecutiveGatewayErrors),
		consecLocal: int32(*o.ConsecutiveConnectFailures),
		baseTime:    o.BaseEjectionTime.D(), maxTime: o.MaxEjectionTime.D(), maxPercent: o.MaxEjectionPercent,
	}
}

// ring is a Maglev table over a cluster's endpoints for lbPolicy maglev:
// a key maps to the same endpoint on every agent, and a change of
// endpoints moves only the keys of the endpoints that changed.
type ring struct {
	table []uint32 // endpoint index + 1
	eps   []*Endpoint
}

// ringSizes are primes; the table is the first with M ≥ 100·N.
var ringSizes = []int{251, 509, 1021, 2039, 4093, 8191, maglev.TableSize, 32749, 65521}

func newRing(eps []*Endpoint) *ring {
	r := &ring{eps: eps}
	if len(eps) == 0 {
		return r
	}
	m := ringSizes[len(ringSizes)-1]
	for _, s := range ringSizes {
		if s >= 100*len(eps) {
			m = s
			break
		}
	}
	bs := make([]maglev.Backend, len(eps))
	for i, e := range eps {
		bs[i] = maglev.Backend{ID: uint32(i + 1), Name: e.Address, Weight: uint32(e.Weight)}
	}
	t, err := maglev.Table(bs, m)
	if err != nil {
		// Endpoint addresses are unique and weights ≥ 1 (validated), and
		// m is prime: this cannot fail. Without a table, keys spread.
		return r
	}
	r.table = t
	return r
}

// pick returns the endpoint for hash; i > 0 asks for the i-th fallback
// (the next slots of the table), used when the first is unavailable.
func (r *ring) pick(hash uint64, i int) *Endpoint {
	if len(r.eps) == 0 {
		return nil
	}
	if len(r.table) == 0 {
		return r.eps[(hash+uint64(i))%uint64(len(r.eps))]
	}
	// Fallback slots step by a large odd stride so neighbours in the table
	// (likely the same endpoint) are not all tried first.
	slot := (hash + uint64(i)*7919) % uint64(len(r.table))
	return r.eps[r.table[slot]-1]
}

// HashKey is FNV-1a over a request key (header value, cookie, client IP):
// stable across agents and restarts, so every node sends a key to the
// same endpoint.
func HashKey(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	// FNV's low bits mix poorly for short keys; finish with a multiply-xorshift.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// HashPolicy returns what the cluster's maglev policy hashes (nil unless
// lbPolicy is maglev).
func (c *Cluster) HashPolicy() *config.HashPolicy {
	if c.ring == nil {
		return nil
	}
	return c.cfg.Hash
}

var errConnSlot = errors.New("no connection slot (circuit breaker)")

func randFloat() float64 { return rand.Float64() }
