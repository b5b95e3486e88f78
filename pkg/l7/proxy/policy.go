package proxy

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/extauth"
	"github.com/edge-agent/edge-agent/pkg/l7/jwtauth"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/ratelimit"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/waf"
	"github.com/edge-agent/edge-agent/pkg/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// routeRuntime is the state a route's policies keep across reloads: a
// reload (of this route or any other) must not refill rate-limit buckets
// or reset the retry budget, so it is reused while its config is unchanged.
type routeRuntime struct {
	rateCfg config.RateLimit
	limiter *ratelimit.Local
	budCfg  config.RetryBudget
	budget  *retryBudget
	mirror  chan struct{} // mirror concurrency slots
	// jwt refreshes its keys in the background: it is kept while the
	// route's JWT config is unchanged and closed when it is not.
	jwtCfg *config.JWTAuth
	jwt    *jwtauth.Validator
	// ext is the route's own authorization client (gRPC ones hold
	// connections), kept while its config and cluster are unchanged.
	ext *extAuthRuntime
	// waf is costly to build (tens of ms, MiBs): kept while its config is.
	wafCfg *config.WAF
	waf    *waf.WAF
}

// extAuthRuntime is an authorization client and what it was built from.
type extAuthRuntime struct {
	cfg     config.ExtAuth
	cluster *upstream.Cluster
	auth    extauth.Authorizer
}

// extAuthFor reuses prev when cfg and its cluster are unchanged.
func extAuthFor(cfg *config.ExtAuth, clusters map[string]*upstream.Cluster, prev *extAuthRuntime) (*extAuthRuntime, error) {
	name := ""
	if cfg.HTTP != nil {
		name = cfg.HTTP.Cluster
	} else if cfg.GRPC != nil {
		name = cfg.GRPC.Cluster
	}
	if prev != nil && prev.cluster == clusters[name] && reflect.DeepEqual(prev.cfg, *cfg) {
		return prev, nil
	}
	a, err := extauth.New(*cfg, clusters)
	if err != nil {
		return nil, err
	}
	return &extAuthRuntime{cfg: *cfg, cluster: clusters[name], auth: a}, nil
}

// retire releases what prev held that next no longer uses. Checks in
// flight on a closed authorizer still finish.
func (prev *routeRuntime) retire(next *routeRuntime) {
	if prev.jwt != nil && (next == nil || next.jwt != prev.jwt) {
		prev.jwt.Close()
	}
	if prev.ext != nil && (next == nil || next.ext != prev.ext) {
		prev.ext.auth.Close()
	}
	if prev.waf != nil && (next == nil || next.waf != prev.waf) {
		_ = prev.waf.Close()
	}
}

// runtimeFor returns the runtime of route rc, reusing prev's parts whose
// config is unchanged.
func runtimeFor(rc *config.Route, prev *routeRuntime) *routeRuntime {
	rt := &routeRuntime{}
	if rl := rc.RateLimit; rl != nil {
		if prev != nil && prev.limiter != nil && reflect.DeepEqual(prev.rateCfg, *rl) {
			rt.rateCfg, rt.limiter = prev.rateCfg, prev.limiter
		} else {
			rt.rateCfg = *rl
			rt.limiter = ratelimit.NewLocal(rl.Requests, rl.Period.D(), rl.Burst, rl.MaxKeys)
		}
	}
	if rp := rc.Retry; rp != nil {
		if prev != nil && prev.budget != nil && reflect.DeepEqual(prev.budCfg, rp.Budget) {
			rt.budCfg, rt.budget = prev.budCfg, prev.budget
		} else {
			rt.budCfg = rp.Budget
			rt.budget = &retryBudget{percent: int64(rp.Budget.Percent), minPerSecond: int64(*rp.Budget.MinPerSecond)}
		}
	}
	if rc.JWT != nil {
		if prev != nil && prev.jwt != nil && reflect.DeepEqual(*prev.jwtCfg, *rc.JWT) {
			rt.jwtCfg, rt.jwt = prev.jwtCfg, prev.jwt
		}
	}
	if rc.WAF != nil && prev != nil && prev.waf != nil && reflect.DeepEqual(*prev.wafCfg, *rc.WAF) {
		rt.wafCfg, rt.waf = prev.wafCfg, prev.waf
	}
	if rc.Mirror != nil {
		if prev != nil && prev.mirror != nil {
			rt.mirror = prev.mirror
		} else {
			rt.mirror = make(chan struct{}, maxMirrorsInFlight)
		}
	}
	return rt
}

// maxMirrorsInFlight bounds a route's mirrored requests in flight; more
// are dropped, so a slow shadow costs the agent bounded memory.
const maxMirrorsInFlight = 64

// retryOn is a retry policy's conditions as bits.
type retryOn uint16

const (
	onConnectFailure retryOn = 1 << iota
	onReset
	on5xx
	onGatewayError
	onStatusCodes
	onGRPCCancelled
	onGRPCDeadlineExceeded
	onGRPCInternal
	onGRPCResourceExhausted
	onGRPCUnavailable
)

var retryOnBits = map[config.RetryOn]retryOn{
	config.RetryConnectFailure: onConnectFailure, config.RetryReset: onReset, config.Retry5xx: on5xx,
	config.RetryGatewayError: onGatewayError, config.RetryStatusCodes: onStatusCodes,
	config.RetryGRPCCancelled: onGRPCCancelled, config.RetryGRPCDeadlineExceeded: onGRPCDeadlineExceeded,
	config.RetryGRPCInternal: onGRPCInternal, config.RetryGRPCResourceExhausted: onGRPCResourceExhausted,
	config.RetryGRPCUnavailable: onGRPCUnavailable,
}

// retryPolicy is config.RetryPolicy in run-time form.
type retryPolicy struct {
	attempts      int
	perTry        time.Duration
	on            retryOn
	codes         []int
	base, max     time.Duration
	nonIdempotent bool
	bufferLimit   int
	budget        *retryBudget
	attempted     prometheus.Counter
	noBudget      prometheus.Counter
	noBreaker     prometheus.Counter
}

func compileRetry(rc *config.Route, rt *routeRuntime, m *metrics.Metrics) *retryPolicy {
	p := rc.Retry
	if p == nil {
		return nil
	}
	rp := &retryPolicy{attempts: p.Attempts, perTry: p.PerTryTimeout.D(), codes: p.StatusCodes,
		base: p.BackoffBase.D(), max: p.BackoffMax.D(), nonIdempotent: p.NonIdempotent, bufferLimit: p.BufferLimit,
		budget:    rt.budget,
		attempted: m.Retries.WithLabelValues(rc.Name, "attempted"),
		noBudget:  m.Retries.WithLabelValues(rc.Name, "skipped_budget"),
		noBreaker: m.Retries.WithLabelValues(rc.Name, "skipped_breaker"),
	}
	for _, on := range p.On {
		rp.on |= retryOnBits[on]
	}
	return rp
}

// retriable reports whether an attempt that ended in failure kind (0 if a
// response arrived) or response resp may be tried again.
func (rp *retryPolicy) retriable(method []byte, kind upstream.Kind, resp *message.Response, grpc bool) bool {
	switch kind {
	case 0:
	case upstream.ConnectFailure:
		// Nothing reached the upstream: safe for any method.
		return rp.on&(onConnectFailure|on5xx|onGatewayError) != 0
	case upstream.Reset, upstream.Timeout, upstream.ProtocolError:
		return rp.on&(onReset|on5xx|onGatewayError) != 0 && rp.idempotent(method)
	default:
		return false // the client's fault, a breaker, or the client left
	}
	if grpc {
		if v, ok := resp.Headers.Get("grpc-status"); ok {
			var bit retryOn
			switch string(v) {
			case "1":
				bit = onGRPCCancelled
			case "4":
				bit = onGRPCDeadlineExceeded
			case "8":
				bit = onGRPCResourceExhausted
			case "13":
				bit = onGRPCInternal
			case "14":
				bit = onGRPCUnavailable
			}
			// The team listed these codes for its own calls: gRPC's own
			// retry policy retries them whatever the method.
			if rp.on&bit != 0 {
				return true
			}
		}
	}
	st := resp.Status
	if !rp.idempotent(method) {
		return false
	}
	switch {
	case rp.on&on5xx != 0 && st >= 500:
		return true
	case rp.on&onGatewayError != 0 && (st == 502 || st == 503 || st == 504):
		return true
	case rp.on&onStatusCodes != 0:
		for _, c := range rp.codes {
			if c == st {
				return true
			}
		}
	}
	return false
}

// idempotent: RFC 9110 §9.2.2 methods, or any when the route allows it.
func (rp *retryPolicy) idempotent(method []byte) bool {
	if rp.nonIdempotent {
		return true
	}
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// backoff is exponential with full jitter: uniform in [0, min(max, base·2^(n-1))].
func (rp *retryPolicy) backoff(n int) time.Duration {
	d := rp.base << min(n-1, 20)
	if d <= 0 || d > rp.max {
		d = rp.max
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// retryBudget admits a retry while retries over the last 10 seconds stay
// within percent of the requests plus minPerSecond per second. It is kept
// in one-second slots of atomic counters: every request of the route
// counts, so a lock here would serialise them. Concurrent requests at a
// slot's turnover may be miscounted by a few; the budget is a bound on
// load, not a ledger.
type retryBudget struct {
	percent, minPerSecond int64
	slots                 [config.DefaultRetryBudgetWindowSeconds]budgetSlot
}

type budgetSlot struct{ sec, requests, retries atomic.Int64 }

func (b *retryBudget) slot(now int64) *budgetSlot {
	sl := &b.slots[now%int64(len(b.slots))]
	if old := sl.sec.Load(); old != now && sl.sec.CompareAndSwap(old, now) {
		sl.requests.Store(0)
		sl.retries.Store(0)
	}
	return sl
}

// request counts one request of the route.
func (b *retryBudget) request(now time.Time) { b.slot(now.Unix()).requests.Add(1) }

// allow takes a retry from the budget if there is one.
func (b *retryBudget) allow(now time.Time) bool {
	sec := now.Unix()
	sl := b.slot(sec)
	var reqs, rets int64
	for i := range b.slots {
		if sec-b.slots[i].sec.Load() < int64(len(b.slots)) {
			reqs += b.slots[i].requests.Load()
			rets += b.slots[i].retries.Load()
		}
	}
	if rets*100 >= reqs*b.percent+b.minPerSecond*int64(len(b.slots))*100 {
		return false
	}
	sl.retries.Add(1)
	return true
}

// bodyRecorder keeps what a request body has delivered (up to limit) so a
// retry can send it again; beyond the limit it stops, and the request is
// not retried.
type bodyRecorder struct {
	r        io.Reader
	buf      []byte
	limit    int
	overflow bool
	eof      bool
}

func (b *bodyRecorder) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && !b.overflow {
		if len(b.buf)+n > b.limit {
			b.overflow = true
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// replayBody sends the recorded bytes again, then whatever the client has
// not sent yet (still recorded, for a further retry).
type replayBody struct {
	rec *bodyRecorder
	off int
}

func (r *replayBody) Read(p []byte) (int, error) {
	if r.off < len(r.rec.buf) {
		n := copy(p, r.rec.buf[r.off:])
		r.off += n
		return n, nil
	}
	if r.rec.eof {
		return 0, io.EOF
	}
	n, err := r.rec.Read(p)
	r.off = len(r.rec.buf)
	return n, err
}

// faultPolicy is config.Fault in run-time form.
type faultPolicy struct {
	delay              time.Duration
	delayPct, abortPct float64
	status             int
	delays, aborts     prometheus.Counter
}

func compileFault(rc *config.Route, m *metrics.Metrics) *faultPolicy {
	f := rc.Fault
	if f == nil {
		return nil
	}
	fp := &faultPolicy{delays: m.FaultsInjected.WithLabelValues(rc.Name, "delay"),
		aborts: m.FaultsInjected.WithLabelValues(rc.Name, "abort")}
	if f.Delay != nil {
		fp.delay, fp.delayPct = f.Delay.Duration.D(), f.Delay.Percent
	}
	if f.Abort != nil {
		fp.status, fp.abortPct = f.Abort.Status, f.Abort.Percent
	}
	return fp
}

func chance(pct float64) bool { return pct >= 100 || rand.Float64()*100 < pct }

// inject delays the request and reports the status to abort with (0: go on).
func (f *faultPolicy) inject(ctx context.Context) (abort int) {
	if f.delayPct > 0 && chance(f.delayPct) {
		f.delays.Inc()
		t := time.NewTimer(f.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if f.abortPct > 0 && chance(f.abortPct) {
		f.aborts.Inc()
		return f.status
	}
	return 0
}

// rateLimitPolicy is a route's limiter and how it keys requests.
type rateLimitPolicy struct {
	limiter *ratelimit.Local
	key     config.RateLimitKey
	header  string
	limited prometheus.Counter
	keys    prometheus.Gauge
}

func compileRateLimit(rc *config.Route, rt *routeRuntime, m *metrics.Metrics) *rateLimitPolicy {
	if rc.RateLimit == nil {
		return nil
	}
	return &rateLimitPolicy{limiter: rt.limiter, key: rc.RateLimit.Key, header: rc.RateLimit.Header,
		limited: m.RateLimited.WithLabelValues(rc.Name), keys: m.RateLimitKeys.WithLabelValues(rc.Name)}
}

var (
	hdrRLLimit     = []byte("RateLimit-Limit")
	hdrRLRemaining = []byte("RateLimit-Remaining")
	hdrRLReset     = []byte("RateLimit-Reset")
	hdrRetryAfter  = []byte("Retry-After")
	hdrAttempts    = []byte("Edge-Agent-Attempts")
	hdrOverflow    = []byte("Edge-Agent-Overflow")
)

// check takes a token for req; the RateLimit-* headers (and Retry-After
// when refused) go into s.extra for the response either way.
func (p *rateLimitPolicy) check(req *message.Request, remoteIP []byte, s *scratch) bool {
	var key string
	switch p.key {
	case config.RateLimitByClientIP:
		key = string(remoteIP)
	case config.RateLimitByHeader:
		if v, ok := req.Headers.Get(p.header); ok {
			key = string(v)
		}
	}
	d := p.limiter.Allow(key, time.Now())
	s.extra = appendIntHeader(s, hdrRLLimit, int64(d.Limit))
	s.extra = appendIntHeader(s, hdrRLRemaining, int64(d.Remaining))
	s.extra = appendIntHeader(s, hdrRLReset, ceilSeconds(d.Reset))
	if !d.Allowed {
		s.extra = appendIntHeader(s, hdrRetryAfter, max(1, ceilSeconds(d.RetryAfter)))
		p.limited.Inc()
		p.keys.Set(float64(p.limiter.Len()))
	}
	return d.Allowed
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// appendIntHeader adds name: v to s.extra, formatting into s.num.
func appendIntHeader(s *scratch, name []byte, v int64) message.Headers {
	start := len(s.num)
	s.num = strconv.AppendInt(s.num, v, 10)
	return append(s.extra, message.Header{Name: name, Value: s.num[start:len(s.num):len(s.num)]})
}

// mirrorPolicy copies requests to a shadow cluster.
type mirrorPolicy struct {
	cluster                       *upstream.Cluster
	percent                       float64
	slots                         chan struct{}
	timeout                       time.Duration
	sent, failed, dropped, noBody prometheus.Counter
}

func compileMirror(rc *config.Route, rt *routeRuntime, clusters map[string]*upstream.Cluster, m *metrics.Metrics) *mirrorPolicy {
	mc := rc.Mirror
	if mc == nil {
		return nil
	}
	return &mirrorPolicy{cluster: clusters[mc.Cluster], percent: mc.Percent, slots: rt.mirror, timeout: rc.Timeout.D(),
		sent:    m.MirroredRequests.WithLabelValues(rc.Name, "sent"),
		failed:  m.MirroredRequests.WithLabelValues(rc.Name, "failed"),
		dropped: m.MirroredRequests.WithLabelValues(rc.Name, "dropped_busy"),
		noBody:  m.MirroredRequests.WithLabelValues(rc.Name, "skipped_body"),
	}
}

// send copies out (with body, already complete in memory) and sends the
// copy from its own goroutine: the primary request never waits for it.
// Host gets a "-shadow" suffix, as Envoy does, so the shadow can tell.
func (mp *mirrorPolicy) send(out *upstream.OutRequest, body []byte) {
	select {
	case mp.slots <- struct{}{}:
	default:
		mp.dropped.Inc()
		return
	}
	size := len(out.Method) + len(out.Target) + len(out.Host) + len("-shadow") + len(body)
	for _, h := range out.Headers {
		size += len(h.Name) + len(h.Value)
	}
	arena := make([]byte, 0, size)
	cp := func(b []byte) []byte {
		start := len(arena)
		arena = append(arena, b...)
		return arena[start:len(arena):len(arena)]
	}
	req := &upstream.OutRequest{Method: cp(out.Method), Target: cp(out.Target), Timeout: mp.timeout,
		ContentLength: int64(len(body)), TETrailers: out.TETrailers}
	hostStart := len(arena)
	arena = append(append(arena, out.Host...), "-shadow"...)
	req.Host = arena[hostStart:len(arena):len(arena)]
	req.Headers = make(message.Headers, len(out.Headers))
	for i, h := range out.Headers {
		req.Headers[i] = message.Header{Name: cp(h.Name), Value: cp(h.Value)}
	}
	if len(body) > 0 {
		req.Body, req.BodyBuffered = bytes.NewReader(cp(body)), true
	}
	go func() {
		defer func() { <-mp.slots }()
		if mp.mirrorOnce(req) {
			mp.sent.Inc()
		} else {
			mp.failed.Inc()
		}
	}()
}

func (mp *mirrorPolicy) mirrorOnce(req *upstream.OutRequest) bool {
	cl := mp.cluster
	if !cl.StartRequest() {
		return false
	}
	defer cl.EndRequest()
	ep := cl.Pick()
	if ep == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), mp.timeout)
	defer cancel()
	req.Ctx = ctx
	req.Deadline = time.Now().Add(mp.timeout)
	var x upstream.Exchange
	if err := cl.RoundTrip(ep, req, &x); err != nil {
		x.Finish(false)
		x.WaitBody()
		return false
	}
	bp := upstream.GetBuffer()
	_, err := io.CopyBuffer(io.Discard, &x, *bp)
	upstream.PutBuffer(bp)
	x.Finish(err == nil)
	x.WaitBody()
	return err == nil
}

// hashKey is the request's key for a maglev cluster.
func hashKey(hp *config.HashPolicy, req *message.Request, remoteIP []byte) (uint64, bool) {
	switch {
	case hp.SourceIP:
		return upstream.HashKey(remoteIP), true
	case hp.Header != "":
		if v, ok := req.Headers.Get(hp.Header); ok {
			return upstream.HashKey(v), true
		}
	case hp.Cookie != "":
		if v, ok := cookieValue(req.Headers, hp.Cookie); ok {
			return upstream.HashKey(v), true
		}
	}
	return 0, false
}

// cookieValue finds name's value in the Cookie headers.
func cookieValue(hs message.Headers, name string) ([]byte, bool) {
	for k, v := range hs.Cookies {
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}

// retireInto undoes a failed compile: it releases what next started that
// prev (the runtime still serving) does not hold.
func (prev *routeRuntime) retireInto(next *routeRuntime) {
	if next.jwt != nil && next.jwt != prev.jwt {
		next.jwt.Close()
	}
	if next.ext != nil && next.ext != prev.ext {
		next.ext.auth.Close()
	}
	if next.waf != nil && next.waf != prev.waf {
		_ = next.waf.Close()
	}
}
