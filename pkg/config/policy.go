package config

import (
	"time"
)

// Traffic policy: what a team sets on its own routes (retries, rate limits,
// mirroring, fault injection) and clusters (circuit breakers, outlier
// detection, health checks, hashing, slow start). Every field has a safe
// default and a bound, so an annotation can never ask for something that
// hurts other teams (unbounded buffers, retry storms).

// RetryOn names a condition under which an attempt is retried.
type RetryOn string

const (
	// RetryConnectFailure: the connection to the endpoint could not be made.
	RetryConnectFailure RetryOn = "connect-failure"
	// RetryReset: the endpoint closed or reset the connection before a
	// response head, or the attempt hit its per-try timeout.
	RetryReset RetryOn = "reset"
	// Retry5xx: any 5xx response, and everything connect-failure and reset cover.
	Retry5xx RetryOn = "5xx"
	// RetryGatewayError: 502, 503, 504, and connect-failure and reset.
	RetryGatewayError RetryOn = "gateway-error"
	// RetryStatusCodes: the codes listed in RetryPolicy.StatusCodes.
	RetryStatusCodes RetryOn = "retriable-status-codes"
	// gRPC status codes in a trailers-only response (the usual form of a
	// gRPC error), as Envoy names them.
	RetryGRPCCancelled         RetryOn = "cancelled"
	RetryGRPCDeadlineExceeded  RetryOn = "deadline-exceeded"
	RetryGRPCInternal          RetryOn = "internal"
	RetryGRPCResourceExhausted RetryOn = "resource-exhausted"
	RetryGRPCUnavailable       RetryOn = "unavailable"
)

// RetryOnValues lists every RetryOn, for validation and annotations.
var RetryOnValues = []RetryOn{RetryConnectFailure, RetryReset, Retry5xx, RetryGatewayError, RetryStatusCodes,
	RetryGRPCCancelled, RetryGRPCDeadlineExceeded, RetryGRPCInternal, RetryGRPCResourceExhausted, RetryGRPCUnavailable}

// RetryPolicy retries failed attempts on another endpoint.
type RetryPolicy struct {
	// Attempts is the number of retries after the first try (1–10).
	Attempts int `yaml:"attempts" json:"attempts"`
	// PerTryTimeout bounds each attempt up to its response head (default:
	// the route timeout, which always bounds the whole exchange).
	PerTryTimeout Duration `yaml:"perTryTimeout" json:"perTryTimeout"`
	// On lists the retry conditions (default connect-failure, reset,
	// gateway-error).
	On []RetryOn `yaml:"on" json:"on"`
	// StatusCodes are retried with retriable-status-codes.
	StatusCodes []int `yaml:"statusCodes" json:"statusCodes,omitempty"`
	// BackoffBase and BackoffMax shape the exponential backoff with full
	// jitter between attempts (defaults 25ms and 250ms).
	BackoffBase Duration `yaml:"backoffBase" json:"backoffBase"`
	BackoffMax  Duration `yaml:"backoffMax" json:"backoffMax"`
	// NonIdempotent allows retrying POST, PATCH and other requests that are
	// not idempotent by RFC 9110 (the upstream may have acted on them).
	NonIdempotent bool `yaml:"nonIdempotent" json:"nonIdempotent"`
	// BufferLimit is the largest request body kept in memory for a retry
	// (default 64KiB, at most 16MiB); a larger body is sent once.
	BufferLimit int `yaml:"bufferLimit" json:"bufferLimit"`
	// Budget caps retries as a share of the route's requests.
	Budget RetryBudget `yaml:"budget" json:"budget"`
}

// RetryBudget lets retries add at most Percent of the route's requests
// over the last 10 seconds, plus MinPerSecond, so retries cannot multiply
// the load on an upstream that is already failing.
type RetryBudget struct {
	// Percent of requests that may be retries (default 20, 1–100).
	Percent int `yaml:"percent" json:"percent"`
	// MinPerSecond retries are always allowed, so a quiet route can still
	// retry (default 3).
	MinPerSecond *int `yaml:"minPerSecond" json:"minPerSecond"`
}

// RateLimitKey says which requests share a token bucket.
type RateLimitKey string

const (
	RateLimitByRoute    RateLimitKey = "route"
	RateLimitByClientIP RateLimitKey = "clientIP"
	RateLimitByHeader   RateLimitKey = "header"
)

// RateLimit is a local token bucket per key: Requests tokens per Period,
// holding at most Burst.
type RateLimit struct {
	Requests int      `yaml:"requests" json:"requests"`
	Period   Duration `yaml:"period" json:"period"`
	// Burst defaults to Requests.
	Burst int `yaml:"burst" json:"burst"`
	// Key is route (one bucket, the default), clientIP or header.
	Key RateLimitKey `yaml:"key" json:"key"`
	// Header names the header whose value is the key (key: header).
	// Requests without it share one bucket.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// MaxKeys bounds memory: the least recently seen key is forgotten
	// beyond it (default 65536).
	MaxKeys int `yaml:"maxKeys" json:"maxKeys"`
}

// Mirror copies a share of the route's requests to a shadow cluster and
// discards the answers. A slow or failing shadow never slows the route.
type Mirror struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	// Percent of requests copied (default 100).
	Percent float64 `yaml:"percent" json:"percent"`
}

// Fault injects failures so teams can test their own resilience.
type Fault struct {
	Delay *FaultDelay `yaml:"delay,omitempty" json:"delay,omitempty"`
	Abort *FaultAbort `yaml:"abort,omitempty" json:"abort,omitempty"`
}

// FaultDelay holds Percent of requests for Duration before proxying.
type FaultDelay struct {
	Duration Duration `yaml:"duration" json:"duration"`
	Percent  float64  `yaml:"percent" json:"percent"`
}

// FaultAbort answers Percent of requests with Status (gRPC calls get the
// matching gRPC status) instead of proxying them.
type FaultAbort struct {
	Status  int     `yaml:"status" json:"status"`
	Percent float64 `yaml:"percent" json:"percent"`
}

// CircuitBreaker bounds what one cluster may hold at once; beyond a limit
// requests are answered 503 at once, naming the breaker. 0 means no limit.
type CircuitBreaker struct {
	// MaxConnections caps open upstream connections (http1 clusters).
	MaxConnections int `yaml:"maxConnections" json:"maxConnections"`
	// MaxPendingRequests caps requests waiting for a connection when
	// MaxConnections are open (default 0: none wait).
	MaxPendingRequests int `yaml:"maxPendingRequests" json:"maxPendingRequests"`
	// MaxRequests caps requests in flight.
	MaxRequests int `yaml:"maxRequests" json:"maxRequests"`
	// MaxRetries caps retries in flight.
	MaxRetries int `yaml:"maxRetries" json:"maxRetries"`
}

// OutlierDetection ejects an endpoint after consecutive failures seen on
// live traffic, for BaseEjectionTime times the number of times it has been
// ejected (capped at MaxEjectionTime). A 0 threshold turns that check off.
type OutlierDetection struct {
	// Consecutive5xx counts 5xx responses and local failures (default 5).
	Consecutive5xx *int `yaml:"consecutive5xx" json:"consecutive5xx"`
	// ConsecutiveGatewayErrors counts 502/503/504 and local failures (default 0: off).
	ConsecutiveGatewayErrors int `yaml:"consecutiveGatewayErrors" json:"consecutiveGatewayErrors"`
	// ConsecutiveConnectFailures counts connect failures, resets and
	// timeouts (default 3).
	ConsecutiveConnectFailures *int `yaml:"consecutiveConnectFailures" json:"consecutiveConnectFailures"`
	// BaseEjectionTime defaults to 30s, MaxEjectionTime to 300s.
	BaseEjectionTime Duration `yaml:"baseEjectionTime" json:"baseEjectionTime"`
	MaxEjectionTime  Duration `yaml:"maxEjectionTime" json:"maxEjectionTime"`
	// MaxEjectionPercent of the cluster's endpoints may be ejected at once
	// (default 50).
	MaxEjectionPercent int `yaml:"maxEjectionPercent" json:"maxEjectionPercent"`
}

// HealthCheckType is how an endpoint is probed.
type HealthCheckType string

const (
	HealthCheckHTTP HealthCheckType = "http"
	HealthCheckGRPC HealthCheckType = "grpc"
	HealthCheckTCP  HealthCheckType = "tcp"
)

// HealthCheck probes every endpoint of a cluster; an endpoint that fails
// UnhealthyThreshold probes in a row leaves rotation until it passes
// HealthyThreshold in a row.
type HealthCheck struct {
	Type HealthCheckType `yaml:"type" json:"type"`
	// Path is the HTTP path probed (default /healthz).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Host is the Host header of HTTP probes (default: the endpoint address).
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// ExpectedStatuses pass an HTTP probe (default: any 2xx).
	ExpectedStatuses []int `yaml:"expectedStatuses" json:"expectedStatuses,omitempty"`
	// Service is the grpc.health.v1 service name ("" is the whole server).
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	// Interval (default 5s) and Timeout (default 1s) of each probe.
	Interval Duration `yaml:"interval" json:"interval"`
	Timeout  Duration `yaml:"timeout" json:"timeout"`
	// Thresholds default to 2 (healthy) and 3 (unhealthy).
	HealthyThreshold   int `yaml:"healthyThreshold" json:"healthyThreshold"`
	UnhealthyThreshold int `yaml:"unhealthyThreshold" json:"unhealthyThreshold"`
}

// HashPolicy is what lbPolicy maglev hashes: one of a header's value, a
// cookie's value or the client's IP address. Requests without the header
// or cookie are spread like round_robin.
type HashPolicy struct {
	Header   string `yaml:"header,omitempty" json:"header,omitempty"`
	Cookie   string `yaml:"cookie,omitempty" json:"cookie,omitempty"`
	SourceIP bool   `yaml:"sourceIP,omitempty" json:"sourceIP,omitempty"`
}

// Policy defaults.
const (
	DefaultStreamIdleTimeout        = 5 * time.Minute
	DefaultRetryBackoffBase         = 25 * time.Millisecond
	DefaultRetryBackoffMax          = 250 * time.Millisecond
	DefaultRetryBufferLimit         = 64 << 10
	MaxRetryBufferLimit             = 16 << 20
	DefaultRetryBudgetPercent       = 20
	DefaultRetryBudgetMinPerSecond  = 3
	DefaultRateLimitMaxKeys         = 1 << 16
	DefaultOutlierConsecutive5xx    = 5
	DefaultOutlierConsecutiveConn   = 3
	DefaultOutlierBaseEjectionTime  = 30 * time.Second
	DefaultOutlierMaxEjectionTime   = 300 * time.Second
	DefaultOutlierMaxEjectionPct    = 50
	DefaultHealthCheckPath          = "/healthz"
	DefaultHealthCheckInterval      = 5 * time.Second
	DefaultHealthCheckTimeout       = time.Second
	DefaultHealthyThreshold         = 2
	DefaultUnhealthyThreshold       = 3
	DefaultMirrorPercent            = 100
	MaxRetryAttempts                = 10
	MaxPolicyLimit                  = 1 << 20
	DefaultRateLimitPeriod          = time.Second
	MaxFaultDelay                   = 5 * time.Minute
	MaxSlowStartWindow              = time.Hour
	MaxHealthCheckInterval          = time.Hour
	MinHealthCheckInterval          = 100 * time.Millisecond
	MaxOutlierEjectionTime          = 24 * time.Hour
	MinStreamIdleTimeout            = time.Second
	MaxStreamIdleTimeout            = 7 * 24 * time.Hour
	DefaultRetryBudgetWindowSeconds = 10
)

func applyRoutePolicyDefaults(r *Route) {
	setDur(&r.IdleTimeout, DefaultStreamIdleTimeout)
	if p := r.Retry; p != nil {
		if len(p.On) == 0 {
			p.On = []RetryOn{RetryConnectFailure, RetryReset, RetryGatewayError}
		}
		setDur(&p.BackoffBase, DefaultRetryBackoffBase)
		setDur(&p.BackoffMax, max(DefaultRetryBackoffMax, p.BackoffBase.D()))
		if p.BufferLimit == 0 {
			p.BufferLimit = DefaultRetryBufferLimit
		}
		if p.Budget.Percent == 0 {
			p.Budget.Percent = DefaultRetryBudgetPercent
		}
		if p.Budget.MinPerSecond == nil {
			n := DefaultRetryBudgetMinPerSecond
			p.Budget.MinPerSecond = &n
		}
	}
	if rl := r.RateLimit; rl != nil {
		setDur(&rl.Period, DefaultRateLimitPeriod)
		if rl.Burst == 0 {
			rl.Burst = rl.Requests
		}
		if rl.Key == "" {
			rl.Key = RateLimitByRoute
		}
		if rl.MaxKeys == 0 {
			rl.MaxKeys = DefaultRateLimitMaxKeys
		}
	}
	if m := r.Mirror; m != nil && m.Percent == 0 {
		m.Percent = DefaultMirrorPercent
	}
}

func applyClusterPolicyDefaults(c *Cluster) {
	if o := c.OutlierDetection; o != nil {
		if o.Consecutive5xx == nil {
			n := DefaultOutlierConsecutive5xx
			o.Consecutive5xx = &n
		}
		if o.ConsecutiveConnectFailures == nil {
			n := DefaultOutlierConsecutiveConn
			o.ConsecutiveConnectFailures = &n
		}
		setDur(&o.BaseEjectionTime, DefaultOutlierBaseEjectionTime)
		setDur(&o.MaxEjectionTime, max(DefaultOutlierMaxEjectionTime, o.BaseEjectionTime.D()))
		if o.MaxEjectionPercent == 0 {
			o.MaxEjectionPercent = DefaultOutlierMaxEjectionPct
		}
	}
	if h := c.HealthCheck; h != nil {
		if h.Type == HealthCheckHTTP {
			setStr(&h.Path, DefaultHealthCheckPath)
		}
		setDur(&h.Interval, DefaultHealthCheckInterval)
		setDur(&h.Timeout, min(DefaultHealthCheckTimeout, h.Interval.D()))
		if h.HealthyThreshold == 0 {
			h.HealthyThreshold = DefaultHealthyThreshold
		}
		if h.UnhealthyThreshold == 0 {
			h.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
	}
}

func validateRoutePolicies(e *errs, p string, r *Route, clusters map[string]bool) {
	if d := r.IdleTimeout.D(); d < MinStreamIdleTimeout || d > MaxStreamIdleTimeout {
		e.add(p+".idleTimeout", "must be between 1s and 168h, got %s", d)
	}
	if rp := r.Retry; rp != nil {
		q := p + ".retry"
		checkIntRange(e, q+".attempts", rp.Attempts, 1, MaxRetryAttempts)
		if d := rp.PerTryTimeout.D(); d < 0 || d > r.Timeout.D() && !r.Streaming {
			e.add(q+".perTryTimeout", "must be between 0 (the route timeout) and the route timeout %s, got %s", r.Timeout.D(), d)
		}
		seen := map[RetryOn]bool{}
		for i, on := range rp.On {
			if !validRetryOn(on) {
				e.add(idx(q+".on", i), "must be one of %s; got %q", retryOnList(), on)
			} else if seen[on] {
				e.add(idx(q+".on", i), "duplicate condition %q", on)
			}
			seen[on] = true
		}
		if seen[RetryStatusCodes] != (len(rp.StatusCodes) > 0) {
			e.add(q+".statusCodes", "statusCodes and the retriable-status-codes condition go together")
		}
		for i, c := range rp.StatusCodes {
			checkIntRange(e, idx(q+".statusCodes", i), c, 400, 599)
		}
		if b := rp.BackoffBase.D(); b <= 0 || b > time.Minute {
			e.add(q+".backoffBase", "must be between 1ns and 1m, got %s", b)
		}
		if m := rp.BackoffMax.D(); m < rp.BackoffBase.D() || m > 5*time.Minute {
			e.add(q+".backoffMax", "must be between backoffBase and 5m, got %s", m)
		}
		checkIntRange(e, q+".bufferLimit", rp.BufferLimit, 0, MaxRetryBufferLimit)
		checkIntRange(e, q+".budget.percent", rp.Budget.Percent, 1, 100)
		checkIntRange(e, q+".budget.minPerSecond", *rp.Budget.MinPerSecond, 0, 10000)
	}
	if rl := r.RateLimit; rl != nil {
		q := p + ".rateLimit"
		checkIntRange(e, q+".requests", rl.Requests, 1, MaxPolicyLimit)
		checkIntRange(e, q+".burst", rl.Burst, 1, MaxPolicyLimit)
		if d := rl.Period.D(); d < time.Millisecond || d > 24*time.Hour {
			e.add(q+".period", "must be between 1ms and 24h, got %s", d)
		}
		switch rl.Key {
		case RateLimitByRoute, RateLimitByClientIP:
			if rl.Header != "" {
				e.add(q+".header", "is only used with key: header")
			}
		case RateLimitByHeader:
			if !isToken(rl.Header) {
				e.add(q+".header", "%q is not a valid header name", rl.Header)
			}
		default:
			e.add(q+".key", "must be one of route, clientIP, header; got %q", rl.Key)
		}
		checkIntRange(e, q+".maxKeys", rl.MaxKeys, 1, 1<<24)
	}
	if m := r.Mirror; m != nil {
		if !clusters[m.Cluster] {
			e.add(p+".mirror.cluster", "no cluster named %q", m.Cluster)
		}
		checkPercent(e, p+".mirror.percent", m.Percent)
	}
	if f := r.Fault; f != nil {
		if f.Delay == nil && f.Abort == nil {
			e.add(p+".fault", "set delay, abort or both")
		}
		if d := f.Delay; d != nil {
			if d.Duration.D() <= 0 || d.Duration.D() > MaxFaultDelay {
				e.add(p+".fault.delay.duration", "must be between 1ns and %s, got %s", MaxFaultDelay, d.Duration.D())
			}
			checkPercent(e, p+".fault.delay.percent", d.Percent)
		}
		if a := f.Abort; a != nil {
			checkIntRange(e, p+".fault.abort.status", a.Status, 400, 599)
			checkPercent(e, p+".fault.abort.percent", a.Percent)
		}
	}
}

func validateClusterPolicies(e *errs, p string, c *Cluster) {
	if b := c.CircuitBreaker; b != nil {
		q := p + ".circuitBreaker"
		checkIntRange(e, q+".maxConnections", b.MaxConnections, 0, MaxPolicyLimit)
		checkIntRange(e, q+".maxPendingRequests", b.MaxPendingRequests, 0, MaxPolicyLimit)
		checkIntRange(e, q+".maxRequests", b.MaxRequests, 0, MaxPolicyLimit)
		checkIntRange(e, q+".maxRetries", b.MaxRetries, 0, MaxPolicyLimit)
		if b.MaxPendingRequests > 0 && b.MaxConnections == 0 {
			e.add(q+".maxPendingRequests", "needs maxConnections: requests wait only for a connection slot")
		}
		if b.MaxConnections > 0 && c.Protocol != UpstreamHTTP1 {
			e.add(q+".maxConnections", "applies to http1 clusters (h2c multiplexes one connection per endpoint); use maxRequests")
		}
	}
	if o := c.OutlierDetection; o != nil {
		q := p + ".outlierDetection"
		checkIntRange(e, q+".consecutive5xx", *o.Consecutive5xx, 0, 1000)
		checkIntRange(e, q+".consecutiveGatewayErrors", o.ConsecutiveGatewayErrors, 0, 1000)
		checkIntRange(e, q+".consecutiveConnectFailures", *o.ConsecutiveConnectFailures, 0, 1000)
		if *o.Consecutive5xx == 0 && o.ConsecutiveGatewayErrors == 0 && *o.ConsecutiveConnectFailures == 0 {
			e.add(q, "every threshold is 0: nothing would be ejected")
		}
		if d := o.BaseEjectionTime.D(); d < 100*time.Millisecond || d > MaxOutlierEjectionTime {
			e.add(q+".baseEjectionTime", "must be between 100ms and 24h, got %s", d)
		}
		if d := o.MaxEjectionTime.D(); d < o.BaseEjectionTime.D() || d > MaxOutlierEjectionTime {
			e.add(q+".maxEjectionTime", "must be between baseEjectionTime and 24h, got %s", d)
		}
		checkIntRange(e, q+".maxEjectionPercent", o.MaxEjectionPercent, 1, 100)
	}
	if h := c.HealthCheck; h != nil {
		q := p + ".healthCheck"
		switch h.Type {
		case HealthCheckHTTP:
			checkPath(e, q+".path", h.Path)
			if h.Host != "" {
				if err := checkHostPort(h.Host); err != nil && checkHostname(h.Host) != nil {
					e.add(q+".host", "%q is not a valid host", h.Host)
				}
			}
			for i, s := range h.ExpectedStatuses {
				checkIntRange(e, idx(q+".expectedStatuses", i), s, 100, 599)
			}
		case HealthCheckGRPC:
			if h.Service != "" && !grpcName(h.Service, true) {
				e.add(q+".service", "%q is not a fully qualified gRPC service name", h.Service)
			}
			if c.Protocol != UpstreamH2C {
				e.add(q+".type", "grpc health checks need a cluster with protocol h2c")
			}
		case HealthCheckTCP:
		default:
			e.add(q+".type", "must be one of http, grpc, tcp; got %q", h.Type)
		}
		if h.Type != HealthCheckHTTP && (h.Path != "" || h.Host != "" || len(h.ExpectedStatuses) > 0) {
			e.add(q, "path, host and expectedStatuses apply to http checks only")
		}
		if h.Type != HealthCheckGRPC && h.Service != "" {
			e.add(q+".service", "applies to grpc checks only")
		}
		if d := h.Interval.D(); d < MinHealthCheckInterval || d > MaxHealthCheckInterval {
			e.add(q+".interval", "must be between 100ms and 1h, got %s", d)
		}
		if d := h.Timeout.D(); d <= 0 || d > h.Interval.D() {
			e.add(q+".timeout", "must be positive and at most the interval, got %s", d)
		}
		checkIntRange(e, q+".healthyThreshold", h.HealthyThreshold, 1, 100)
		checkIntRange(e, q+".unhealthyThreshold", h.UnhealthyThreshold, 1, 100)
	}
	if hp := c.Hash; hp != nil {
		set := 0
		if hp.Header != "" {
			set++
			if !isToken(hp.Header) {
				e.add(p+".hash.header", "%q is not a valid header name", hp.Header)
			}
		}
		if hp.Cookie != "" {
			set++
			if !isToken(hp.Cookie) {
				e.add(p+".hash.cookie", "%q is not a valid cookie name", hp.Cookie)
			}
		}
		if hp.SourceIP {
			set++
		}
		if set != 1 {
			e.add(p+".hash", "set exactly one of header, cookie, sourceIP")
		}
		if c.LBPolicy != LBMaglev {
			e.add(p+".hash", "is used by lbPolicy maglev only")
		}
	} else if c.LBPolicy == LBMaglev {
		e.add(p+".hash", "lbPolicy maglev needs a hash (header, cookie or sourceIP)")
	}
	if d := c.SlowStart.D(); d < 0 || d > MaxSlowStartWindow {
		e.add(p+".slowStart", "must be between 0 (off) and 1h, got %s", d)
	}
}

func validRetryOn(on RetryOn) bool {
	for _, v := range RetryOnValues {
		if v == on {
			return true
		}
	}
	return false
}

func retryOnList() string {
	s := ""
	for i, v := range RetryOnValues {
		if i > 0 {
			s += ", "
		}
		s += string(v)
	}
	return s
}

func checkIntRange(e *errs, path string, v, lo, hi int) {
	if v < lo || v > hi {
		e.add(path, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func checkPercent(e *errs, path string, v float64) {
	if !(v > 0 && v <= 100) {
		e.add(path, "must be more than 0 and at most 100, got %g", v)
	}
}
