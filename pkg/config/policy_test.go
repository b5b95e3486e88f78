package config

import (
	"testing"
	"time"
)

func policyConfig(route, cluster string) string {
	return `
listeners: [{name: http, address: "127.0.0.1:8080"}]
routes: [{name: r, backends: [{cluster: c}]` + route + `}]
clusters: [{name: c, endpoints: [{address: 10.0.0.1:80}]` + cluster + `}, {name: shadow, endpoints: [{address: 10.0.0.2:80}]}]
`
}

func TestPolicyDefaults(t *testing.T) {
	cfg, err := Parse([]byte(policyConfig(
		`, retry: {attempts: 2}, rateLimit: {requests: 10}, mirror: {cluster: shadow}`,
		`, outlierDetection: {}, healthCheck: {type: http}, circuitBreaker: {maxRequests: 5}`)))
	if err != nil {
		t.Fatal(err)
	}
	r, c := cfg.Routes[0], cfg.Clusters[0]
	if r.IdleTimeout.D() != DefaultStreamIdleTimeout || r.Streaming {
		t.Errorf("route idle %v streaming %v", r.IdleTimeout.D(), r.Streaming)
	}
	rp := r.Retry
	if len(rp.On) != 3 || rp.BackoffBase.D() != 25*time.Millisecond || rp.BackoffMax.D() != 250*time.Millisecond ||
		rp.BufferLimit != 64<<10 || rp.Budget.Percent != 20 || *rp.Budget.MinPerSecond != 3 || rp.NonIdempotent {
		t.Errorf("retry defaults %+v", rp)
	}
	if rl := r.RateLimit; rl.Period.D() != time.Second || rl.Burst != 10 || rl.Key != RateLimitByRoute || rl.MaxKeys != 1<<16 {
		t.Errorf("rate limit defaults %+v", rl)
	}
	if r.Mirror.Percent != 100 {
		t.Errorf("mirror percent %v", r.Mirror.Percent)
	}
	o := c.OutlierDetection
	if *o.Consecutive5xx != 5 || *o.ConsecutiveConnectFailures != 3 || o.ConsecutiveGatewayErrors != 0 ||
		o.BaseEjectionTime.D() != 30*time.Second || o.MaxEjectionTime.D() != 300*time.Second || o.MaxEjectionPercent != 50 {
		t.Errorf("outlier defaults %+v", o)
	}
	h := c.HealthCheck
	if h.Path != "/healthz" || h.Interval.D() != 5*time.Second || h.Timeout.D() != time.Second || h.HealthyThreshold != 2 || h.UnhealthyThreshold != 3 {
		t.Errorf("health check defaults %+v", h)
	}
}

func TestPolicyValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, route, cluster string
		want                 []FieldError
	}{
		{"retry attempts", `, retry: {attempts: 0}`, "", []FieldError{{"routes[0].retry.attempts", "between 1 and 10"}}},
		{"per-try above route timeout", `, timeout: 1s, retry: {attempts: 1, perTryTimeout: 2s}`, "",
			[]FieldError{{"routes[0].retry.perTryTimeout", "route timeout"}}},
		{"unknown retry condition", `, retry: {attempts: 1, on: [5xx, sometimes]}`, "",
			[]FieldError{{"routes[0].retry.on[1]", `got "sometimes"`}}},
		{"status codes without condition", `, retry: {attempts: 1, statusCodes: [409]}`, "",
			[]FieldError{{"routes[0].retry.statusCodes", "go together"}}},
		{"2xx status code", `, retry: {attempts: 1, on: [retriable-status-codes], statusCodes: [200]}`, "",
			[]FieldError{{"routes[0].retry.statusCodes[0]", "between 400 and 599"}}},
		{"backoff max below base", `, retry: {attempts: 1, backoffBase: 1s, backoffMax: 10ms}`, "",
			[]FieldError{{"routes[0].retry.backoffMax", "between backoffBase"}}},
		{"huge buffer", `, retry: {attempts: 1, bufferLimit: 1000000000}`, "",
			[]FieldError{{"routes[0].retry.bufferLimit", "between 0 and 16777216"}}},
		{"budget", `, retry: {attempts: 1, budget: {percent: 101}}`, "",
			[]FieldError{{"routes[0].retry.budget.percent", "between 1 and 100"}}},
		{"rate limit key", `, rateLimit: {requests: 5, key: user}`, "",
			[]FieldError{{"routes[0].rateLimit.key", `got "user"`}}},
		{"rate limit header", `, rateLimit: {requests: 5, key: header, header: "bad header"}`, "",
			[]FieldError{{"routes[0].rateLimit.header", "not a valid header name"}}},
		{"rate limit requests", `, rateLimit: {requests: 0, burst: 1}`, "",
			[]FieldError{{"routes[0].rateLimit.requests", "between 1"}}},
		{"mirror cluster", `, mirror: {cluster: nope}`, "", []FieldError{{"routes[0].mirror.cluster", `no cluster named "nope"`}}},
		{"mirror percent", `, mirror: {cluster: shadow, percent: 101}`, "", []FieldError{{"routes[0].mirror.percent", "at most 100"}}},
		{"empty fault", `, fault: {}`, "", []FieldError{{"routes[0].fault", "set delay, abort or both"}}},
		{"fault abort", `, fault: {abort: {status: 200, percent: 10}}`, "", []FieldError{{"routes[0].fault.abort.status", "between 400 and 599"}}},
		{"fault percent", `, fault: {delay: {duration: 1s, percent: 0}}`, "", []FieldError{{"routes[0].fault.delay.percent", "more than 0"}}},
		{"idle timeout", `, idleTimeout: 10ms`, "", []FieldError{{"routes[0].idleTimeout", "between 1s and 168h"}}},
		{"pending without connections", "", `, circuitBreaker: {maxPendingRequests: 5}`,
			[]FieldError{{"clusters[0].circuitBreaker.maxPendingRequests", "needs maxConnections"}}},
		{"negative breaker", "", `, circuitBreaker: {maxRequests: -1}`,
			[]FieldError{{"clusters[0].circuitBreaker.maxRequests", "between 0"}}},
		{"connections on h2c", "", `, protocol: h2c, circuitBreaker: {maxConnections: 5}`,
			[]FieldError{{"clusters[0].circuitBreaker.maxConnections", "http1 clusters"}}},
		{"outlier off", "", `, outlierDetection: {consecutive5xx: 0, consecutiveConnectFailures: 0}`,
			[]FieldError{{"clusters[0].outlierDetection", "nothing would be ejected"}}},
		{"outlier percent", "", `, outlierDetection: {maxEjectionPercent: 101}`,
			[]FieldError{{"clusters[0].outlierDetection.maxEjectionPercent", "between 1 and 100"}}},
		{"health check type", "", `, healthCheck: {type: icmp}`, []FieldError{{"clusters[0].healthCheck.type", `got "icmp"`}}},
		{"grpc check on http1", "", `, healthCheck: {type: grpc}`, []FieldError{{"clusters[0].healthCheck.type", "protocol h2c"}}},
		{"path on tcp check", "", `, healthCheck: {type: tcp, path: /x}`, []FieldError{{"clusters[0].healthCheck", "http checks only"}}},
		{"timeout above interval", "", `, healthCheck: {type: tcp, interval: 1s, timeout: 2s}`,
			[]FieldError{{"clusters[0].healthCheck.timeout", "at most the interval"}}},
		{"maglev without hash", "", `, lbPolicy: maglev`, []FieldError{{"clusters[0].hash", "needs a hash"}}},
		{"hash without maglev", "", `, hash: {header: X-User}`, []FieldError{{"clusters[0].hash", "maglev only"}}},
		{"two hash keys", "", `, lbPolicy: maglev, hash: {header: X-User, sourceIP: true}`,
			[]FieldError{{"clusters[0].hash", "exactly one"}}},
		{"slow start", "", `, slowStart: 2h`, []FieldError{{"clusters[0].slowStart", "between 0 (off) and 1h"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(policyConfig(tc.route, tc.cluster)))
			assertFieldErrors(t, err, tc.want)
		})
	}
}
