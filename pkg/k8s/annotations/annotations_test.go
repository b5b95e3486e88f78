package annotations

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

func TestParseFullService(t *testing.T) {
	svc, err := Parse(map[string]string{
		"edge-agent.io/hosts":                   "Shop.example.com, *.shop.example.com",
		"edge-agent.io/lb-policy":               "least_request",
		"edge-agent.io/connect-timeout":         "2s",
		"edge-agent.io/timeout":                 "30s",
		"edge-agent.io/path-prefix":             "/",
		"edge-agent.io/request-headers-set":     "X-Team: shop\nCache-Control: no-cache, no-store\n",
		"edge-agent.io/response-headers-remove": "Server, X-Powered-By",
		"edge-agent.io/canary-service":          "shop-v2",
		"edge-agent.io/canary-weight":           "10",
		"edge-agent.io/canary-header":           "X-Beta: always",
		"edge-agent.io/canary-cookie":           "beta",
		"edge-agent.io/api.path-prefix":         "/api",
		"edge-agent.io/api.rewrite-prefix":      "/",
		"edge-agent.io/api.port":                "grpc",
		"edge-agent.io/api.methods":             "GET,POST",
		"edge-agent.io/api.match-headers":       "X-Version: 2\nX-Debug",
		"edge-agent.io/api.match-query":         "lang: en",
		"edge-agent.io/old.path-exact":          "/old",
		"edge-agent.io/old.redirect-path":       "/new",
		"edge-agent.io/old.redirect-code":       "301",
		"other.io/ignored":                      "whatever",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(svc.Hosts, ","); got != "shop.example.com,*.shop.example.com" {
		t.Errorf("hosts = %s", got)
	}
	if svc.LBPolicy != config.LBLeastRequest || svc.ConnectTimeout.D() != 2*time.Second {
		t.Errorf("service settings = %+v", svc)
	}
	if c := svc.Canary; c == nil || c.Service != "shop-v2" || c.Weight != 10 || c.Header.Name != "X-Beta" || c.Header.Exact != "always" || c.Cookie.Name != "beta" || c.Cookie.Exact != "" {
		t.Errorf("canary = %+v", svc.Canary)
	}
	if len(svc.Routes) != 3 || svc.Routes[0].Name != DefaultRouteName || svc.Routes[1].Name != "api" || svc.Routes[2].Name != "old" {
		t.Fatalf("routes = %+v", svc.Routes)
	}
	def, api, old := svc.Routes[0], svc.Routes[1], svc.Routes[2]
	if def.Timeout.D() != 30*time.Second || def.Match.Path.Prefix != "/" {
		t.Errorf("default route = %+v", def)
	}
	if hs := def.RequestHeaders.Set; len(hs) != 2 || hs[1].Name != "Cache-Control" || hs[1].Value != "no-cache, no-store" {
		t.Errorf("request-headers-set = %+v", hs)
	}
	if rm := def.ResponseHeaders.Remove; len(rm) != 2 || rm[0] != "Server" || rm[1] != "X-Powered-By" {
		t.Errorf("response-headers-remove = %+v", rm)
	}
	if api.Port != "grpc" || api.Match.Path.Prefix != "/api" || api.Rewrite.Prefix != "/" || strings.Join(api.Match.Methods, ",") != "GET,POST" {
		t.Errorf("api route = %+v", api)
	}
	if h := api.Match.Headers; len(h) != 2 || h[0] != (config.ValueMatch{Name: "X-Version", Exact: "2"}) || h[1] != (config.ValueMatch{Name: "X-Debug"}) {
		t.Errorf("api headers = %+v", h)
	}
	if q := api.Match.Query; len(q) != 1 || q[0] != (config.ValueMatch{Name: "lang", Exact: "en"}) {
		t.Errorf("api query = %+v", q)
	}
	if old.Match.Path.Exact != "/old" || old.Redirect.Path != "/new" || old.Redirect.Code != 301 {
		t.Errorf("old route = %+v / %+v", old.Match.Path, old.Redirect)
	}
}

// parseErrorCase is annotations that Parse must refuse, with an error on
// key whose reason contains reason.
type parseErrorCase struct {
	name   string
	annots map[string]string
	key    string
	reason string
}

// expectParseErrors runs the cases; with defaultHost, a case that sets no
// mode gets edge-agent.io/hosts, so it fails only for its own reason.
func expectParseErrors(t *testing.T, cases []parseErrorCase, defaultHost bool) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if defaultHost && tc.annots["edge-agent.io/mode"] == "" {
				tc.annots["edge-agent.io/hosts"] = "a.example.com"
			}
			svc, err := Parse(tc.annots)
			if err == nil {
				t.Fatalf("Parse accepted %v: %+v", tc.annots, svc)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			for _, e := range es {
				if e.Key == tc.key && strings.Contains(e.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("no error on %s containing %q; got %v", tc.key, tc.reason, err)
		})
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []parseErrorCase{
		{"unknown key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timout": "1s"}, "edge-agent.io/timout", "unknown annotation"},
		{"planned key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/auth-jwt-jwks-secret": "x"}, "edge-agent.io/auth-jwt-jwks-secret", "not supported by this version"},
		{"renamed security key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/auth-jwt-issuer": "x"}, "edge-agent.io/auth-jwt-issuer", "did you mean edge-agent.io/jwt-issuer?"},
		{"renamed source ranges", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/api.allow-source-ranges": "10.0.0.0/8"}, "edge-agent.io/api.allow-source-ranges", "did you mean edge-agent.io/api.ip-allow?"},
		{"renamed key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/retries": "3"}, "edge-agent.io/retries", "did you mean edge-agent.io/retry-attempts?"},
		{"renamed route key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/api.per-try-timeout": "1s"}, "edge-agent.io/api.per-try-timeout", "did you mean edge-agent.io/api.retry-per-try-timeout?"},
		{"bare number duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "30"}, "edge-agent.io/timeout", "invalid duration"},
		{"negative duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "-1s"}, "edge-agent.io/timeout", "must not be negative"},
		{"zero duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "0s"}, "edge-agent.io/timeout", "more than 0s"},
		{"huge duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "2h"}, "edge-agent.io/timeout", "at most 1h"},
		{"bad host", map[string]string{"edge-agent.io/hosts": "a.example.com,bad_host"}, "edge-agent.io/hosts", "not a valid hostname"},
		{"empty host item", map[string]string{"edge-agent.io/hosts": "a.example.com,,b.example.com"}, "edge-agent.io/hosts", "empty item"},
		{"duplicate host", map[string]string{"edge-agent.io/hosts": "a.example.com,A.example.com"}, "edge-agent.io/hosts", "listed twice"},
		{"missing hosts", map[string]string{"edge-agent.io/timeout": "1s"}, "edge-agent.io/hosts", "required"},
		{"enum", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/lb-policy": "fastest"}, "edge-agent.io/lb-policy", `"fastest" is not one of round_robin, least_request, random, maglev`},
		{"weight range", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-service": "b", "edge-agent.io/canary-weight": "101"}, "edge-agent.io/canary-weight", "out of range 0-100"},
		{"weight not int", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-service": "b", "edge-agent.io/canary-weight": "10%"}, "edge-agent.io/canary-weight", "not an integer"},
		{"canary without service", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-weight": "10"}, "edge-agent.io/canary-service", "required"},
		{"two path kinds", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-prefix": "/a", "edge-agent.io/path-exact": "/b"}, "edge-agent.io/path-prefix", "only one of"},
		{"relative path", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-prefix": "api"}, "edge-agent.io/path-prefix", "must start with /"},
		{"regex too complex", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-regex": "(a{1000}){1000}"}, "edge-agent.io/path-regex", "regex"},
		{"reserved header", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-set": "Host: evil.example.com"}, "edge-agent.io/request-headers-set", "managed by the proxy"},
		{"header injection", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/response-headers-add": "X-A: b\x01c"}, "edge-agent.io/response-headers-add", "control characters"},
		{"header without value", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-add": "X-A"}, "edge-agent.io/request-headers-add", `want "Name: value"`},
		{"lower-case method", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/methods": "get"}, "edge-agent.io/methods", "upper-case"},
		{"bad route name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/Api.timeout": "1s"}, "edge-agent.io/Api.timeout", "DNS label"},
		{"reserved route name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/default.timeout": "1s"}, "edge-agent.io/default.timeout", "reserved"},
		{"service key on a route", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/api.lb-policy": "random"}, "edge-agent.io/api.lb-policy", "whole Service"},
		{"l4 mode with hosts", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/mode": "l4"}, "edge-agent.io/hosts", "does not apply to mode l4"},
		{"l4 mode with a route key", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/api.path-prefix": "/x"}, "edge-agent.io/api.path-prefix", "no HTTP routes"},
		{"preserve source without l4", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/l4-preserve-source": "true"}, "edge-agent.io/l4-preserve-source", "only to mode l4"},
		{"preserve source not a bool", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/l4-preserve-source": "yes"}, "edge-agent.io/l4-preserve-source", "not one of true, false"},
		{"redirect code", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/redirect-code": "304"}, "edge-agent.io/redirect-code", "not one of"},
		{"redirect and rewrite", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/redirect-host": "b.example.com", "edge-agent.io/rewrite-host": "c.example.com"}, "edge-agent.io/redirect-code", "not both"},
		{"port", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/port": "70000"}, "edge-agent.io/port", "neither a port number nor a port name"},
		{"tls secret name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/tls-secret": "../etc"}, "edge-agent.io/tls-secret", "not a valid Secret name"},
		{"huge value", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-set": "X-A: " + strings.Repeat("a", MaxValueLen)}, "edge-agent.io/request-headers-set", "longer than"},
	}
	expectParseErrors(t, cases, false)
}

func TestParseTrafficPolicy(t *testing.T) {
	svc, err := Parse(map[string]string{
		"edge-agent.io/hosts":                                "shop.example.com",
		"edge-agent.io/timeout":                              "20s",
		"edge-agent.io/streaming":                            "false",
		"edge-agent.io/idle-timeout":                         "2m",
		"edge-agent.io/retry-attempts":                       "3",
		"edge-agent.io/retry-on":                             "5xx, retriable-status-codes,unavailable",
		"edge-agent.io/retry-status-codes":                   "409,429",
		"edge-agent.io/retry-per-try-timeout":                "2s",
		"edge-agent.io/retry-backoff-base":                   "50ms",
		"edge-agent.io/retry-backoff-max":                    "1s",
		"edge-agent.io/retry-non-idempotent":                 "true",
		"edge-agent.io/retry-buffer-limit":                   "131072",
		"edge-agent.io/retry-budget-percent":                 "10",
		"edge-agent.io/retry-budget-min-per-second":          "0",
		"edge-agent.io/rate-limit-requests":                  "100",
		"edge-agent.io/rate-limit-period":                    "1m",
		"edge-agent.io/rate-limit-burst":                     "150",
		"edge-agent.io/rate-limit-key":                       "header",
		"edge-agent.io/rate-limit-header":                    "X-Api-Key",
		"edge-agent.io/mirror-service":                       "shop-shadow",
		"edge-agent.io/mirror-percent":                       "0.5",
		"edge-agent.io/fault-delay":                          "150ms",
		"edge-agent.io/fault-delay-percent":                  "12.5",
		"edge-agent.io/fault-abort-status":                   "503",
		"edge-agent.io/fault-abort-percent":                  "1",
		"edge-agent.io/events.path-prefix":                   "/events",
		"edge-agent.io/events.streaming":                     "true",
		"edge-agent.io/events.rate-limit-requests":           "5",
		"edge-agent.io/events.rate-limit-key":                "clientIP",
		"edge-agent.io/lb-policy":                            "maglev",
		"edge-agent.io/hash-cookie":                          "session",
		"edge-agent.io/slow-start":                           "30s",
		"edge-agent.io/max-connections":                      "200",
		"edge-agent.io/max-pending-requests":                 "50",
		"edge-agent.io/max-requests":                         "1000",
		"edge-agent.io/max-retries":                          "20",
		"edge-agent.io/outlier-consecutive-5xx":              "0",
		"edge-agent.io/outlier-consecutive-gateway-errors":   "4",
		"edge-agent.io/outlier-consecutive-connect-failures": "2",
		"edge-agent.io/outlier-base-ejection-time":           "10s",
		"edge-agent.io/outlier-max-ejection-time":            "5m",
		"edge-agent.io/outlier-max-ejection-percent":         "30",
		"edge-agent.io/health-check-type":                    "http",
		"edge-agent.io/health-check-path":                    "/ready",
		"edge-agent.io/health-check-interval":                "10s",
		"edge-agent.io/health-check-timeout":                 "2s",
		"edge-agent.io/health-check-healthy-threshold":       "1",
		"edge-agent.io/health-check-unhealthy-threshold":     "4",
		"edge-agent.io/health-check-expected-statuses":       "200, 204",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Routes) != 2 {
		t.Fatalf("routes = %+v", svc.Routes)
	}
	def, events := svc.Routes[0], svc.Routes[1]
	if def.Streaming || def.IdleTimeout.D() != 2*time.Minute || def.Timeout.D() != 20*time.Second {
		t.Errorf("default route = %+v", def)
	}
	rp := def.Retry
	if rp == nil || rp.Attempts != 3 || rp.PerTryTimeout.D() != 2*time.Second || rp.BackoffBase.D() != 50*time.Millisecond ||
		rp.BackoffMax.D() != time.Second || !rp.NonIdempotent || rp.BufferLimit != 128<<10 || rp.Budget.Percent != 10 ||
		rp.Budget.MinPerSecond == nil || *rp.Budget.MinPerSecond != 0 {
		t.Fatalf("retry = %+v", rp)
	}
	if on := rp.On; len(on) != 3 || on[0] != config.Retry5xx || on[1] != config.RetryStatusCodes || on[2] != config.RetryGRPCUnavailable {
		t.Errorf("retry-on = %v", on)
	}
	if c := rp.StatusCodes; len(c) != 2 || c[0] != 409 || c[1] != 429 {
		t.Errorf("retry-status-codes = %v", c)
	}
	if rl := def.RateLimit; rl == nil || *rl != (config.RateLimit{Requests: 100, Period: config.Duration(time.Minute), Burst: 150, Key: config.RateLimitByHeader, Header: "X-Api-Key"}) {
		t.Errorf("rate limit = %+v", def.RateLimit)
	}
	if m := def.Mirror; m == nil || *m != (Mirror{Service: "shop-shadow", Percent: 0.5}) {
		t.Errorf("mirror = %+v", def.Mirror)
	}
	if f := def.Fault; f == nil || f.Delay == nil || f.Abort == nil ||
		*f.Delay != (config.FaultDelay{Duration: config.Duration(150 * time.Millisecond), Percent: 12.5}) ||
		*f.Abort != (config.FaultAbort{Status: 503, Percent: 1}) {
		t.Errorf("fault = %+v", def.Fault)
	}
	if !events.Streaming || events.Retry != nil || events.Mirror != nil || events.Fault != nil ||
		events.RateLimit == nil || *events.RateLimit != (config.RateLimit{Requests: 5, Key: config.RateLimitByClientIP}) {
		t.Errorf("events route = %+v (rate limit %+v)", events, events.RateLimit)
	}
	if svc.LBPolicy != config.LBMaglev || svc.Hash == nil || *svc.Hash != (config.HashPolicy{Cookie: "session"}) || svc.SlowStart.D() != 30*time.Second {
		t.Errorf("lb = %s %+v %s", svc.LBPolicy, svc.Hash, svc.SlowStart.D())
	}
	if b := svc.CircuitBreaker; b == nil || *b != (config.CircuitBreaker{MaxConnections: 200, MaxPendingRequests: 50, MaxRequests: 1000, MaxRetries: 20}) {
		t.Errorf("circuit breaker = %+v", svc.CircuitBreaker)
	}
	o := svc.OutlierDetection
	if o == nil || o.Consecutive5xx == nil || *o.Consecutive5xx != 0 || o.ConsecutiveGatewayErrors != 4 || o.ConsecutiveConnectFailures == nil ||
		*o.ConsecutiveConnectFailures != 2 || o.BaseEjectionTime.D() != 10*time.Second || o.MaxEjectionTime.D() != 5*time.Minute || o.MaxEjectionPercent != 30 {
		t.Errorf("outlier detection = %+v", o)
	}
	h := svc.HealthCheck
	if h == nil || h.Type != config.HealthCheckHTTP || h.Path != "/ready" || h.Interval.D() != 10*time.Second || h.Timeout.D() != 2*time.Second ||
		h.HealthyThreshold != 1 || h.UnhealthyThreshold != 4 || len(h.ExpectedStatuses) != 2 || h.ExpectedStatuses[1] != 204 {
		t.Errorf("health check = %+v", h)
	}

	// The other hash and health check forms.
	svc, err = Parse(map[string]string{
		"edge-agent.io/hosts":                     "a.example.com",
		"edge-agent.io/lb-policy":                 "maglev",
		"edge-agent.io/hash-source-ip":            "true",
		"edge-agent.io/health-check-type":         "grpc",
		"edge-agent.io/health-check-grpc-service": "shop.v1.Cart",
	})
	if err != nil {
		t.Fatal(err)
	}
	if *svc.Hash != (config.HashPolicy{SourceIP: true}) || svc.HealthCheck.Service != "shop.v1.Cart" || svc.Routes[0].Retry != nil || svc.CircuitBreaker != nil || svc.OutlierDetection != nil {
		t.Errorf("service = %+v", svc)
	}
	svc, err = Parse(map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/lb-policy": "maglev", "edge-agent.io/hash-header": "X-User"})
	if err != nil || *svc.Hash != (config.HashPolicy{Header: "X-User"}) {
		t.Errorf("hash-header: %+v %v", svc, err)
	}
}

func TestParsePolicyErrorsNameTheKey(t *testing.T) {
	cases := []parseErrorCase{
		// Values.
		{"duration", map[string]string{"edge-agent.io/idle-timeout": "abc"}, "edge-agent.io/idle-timeout", `invalid duration "abc"`},
		{"idle timeout range", map[string]string{"edge-agent.io/idle-timeout": "500ms"}, "edge-agent.io/idle-timeout", `"500ms" must be between 1s and 168h`},
		{"streaming bool", map[string]string{"edge-agent.io/streaming": "yes"}, "edge-agent.io/streaming", `"yes" is not one of true, false`},
		{"retry attempts range", map[string]string{"edge-agent.io/retry-attempts": "11"}, "edge-agent.io/retry-attempts", "11 is out of range 1-10"},
		{"retry attempts zero", map[string]string{"edge-agent.io/retry-attempts": "0"}, "edge-agent.io/retry-attempts", "0 is out of range 1-10"},
		{"retry on unknown", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "5xx,sometimes"}, "edge-agent.io/retry-on", `"sometimes" is not one of connect-failure, reset, 5xx, gateway-error, retriable-status-codes, cancelled`},
		{"retry on duplicate", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "5xx,5xx"}, "edge-agent.io/retry-on", "listed twice"},
		{"retry status 200", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "retriable-status-codes", "edge-agent.io/retry-status-codes": "503,200"}, "edge-agent.io/retry-status-codes", "200 is out of range 400-599"},
		{"retry status not int", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "retriable-status-codes", "edge-agent.io/retry-status-codes": "5xx"}, "edge-agent.io/retry-status-codes", `"5xx" is not an integer`},
		{"per try timeout", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-per-try-timeout": "abc"}, "edge-agent.io/retry-per-try-timeout", "invalid duration"},
		{"backoff base range", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-backoff-base": "2m"}, "edge-agent.io/retry-backoff-base", "at most 1m"},
		{"buffer limit range", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-buffer-limit": "16777217"}, "edge-agent.io/retry-buffer-limit", "out of range 1-16777216"},
		{"buffer limit suffix", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-buffer-limit": "64Ki"}, "edge-agent.io/retry-buffer-limit", "not an integer"},
		{"budget percent", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-budget-percent": "0"}, "edge-agent.io/retry-budget-percent", "out of range 1-100"},
		{"budget min", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-budget-min-per-second": "-1"}, "edge-agent.io/retry-budget-min-per-second", "out of range 0-10000"},
		{"rate limit range", map[string]string{"edge-agent.io/rate-limit-requests": "0"}, "edge-agent.io/rate-limit-requests", "out of range 1-1048576"},
		{"rate limit period", map[string]string{"edge-agent.io/rate-limit-requests": "1", "edge-agent.io/rate-limit-period": "25h"}, "edge-agent.io/rate-limit-period", "between 1ms and 24h"},
		{"rate limit key", map[string]string{"edge-agent.io/rate-limit-requests": "1", "edge-agent.io/rate-limit-key": "user"}, "edge-agent.io/rate-limit-key", `"user" is not one of route, clientIP, header`},
		{"rate limit header name", map[string]string{"edge-agent.io/rate-limit-requests": "1", "edge-agent.io/rate-limit-key": "header", "edge-agent.io/rate-limit-header": "X Key"}, "edge-agent.io/rate-limit-header", "not a valid header name"},
		{"mirror service name", map[string]string{"edge-agent.io/mirror-service": "other.ns"}, "edge-agent.io/mirror-service", "not a valid Service name"},
		{"mirror percent zero", map[string]string{"edge-agent.io/mirror-service": "s", "edge-agent.io/mirror-percent": "0"}, "edge-agent.io/mirror-percent", "more than 0 and at most 100"},
		{"mirror percent over", map[string]string{"edge-agent.io/mirror-service": "s", "edge-agent.io/mirror-percent": "100.5"}, "edge-agent.io/mirror-percent", "more than 0 and at most 100"},
		{"mirror percent syntax", map[string]string{"edge-agent.io/mirror-service": "s", "edge-agent.io/mirror-percent": "1e1"}, "edge-agent.io/mirror-percent", "not a percentage"},
		{"mirror percent sign", map[string]string{"edge-agent.io/mirror-service": "s", "edge-agent.io/mirror-percent": "50%"}, "edge-agent.io/mirror-percent", "not a percentage"},
		{"fault delay range", map[string]string{"edge-agent.io/fault-delay": "6m", "edge-agent.io/fault-delay-percent": "1"}, "edge-agent.io/fault-delay", "at most 5m"},
		{"fault abort status", map[string]string{"edge-agent.io/fault-abort-status": "200", "edge-agent.io/fault-abort-percent": "1"}, "edge-agent.io/fault-abort-status", "200 is out of range 400-599"},
		{"lb policy maglev needs a hash", map[string]string{"edge-agent.io/lb-policy": "maglev"}, "edge-agent.io/lb-policy", "maglev needs what to hash"},
		{"hash without maglev", map[string]string{"edge-agent.io/hash-header": "X-User"}, "edge-agent.io/hash-header", "only with lb-policy maglev"},
		{"two hashes", map[string]string{"edge-agent.io/lb-policy": "maglev", "edge-agent.io/hash-header": "X-User", "edge-agent.io/hash-source-ip": "true"}, "edge-agent.io/hash-source-ip", "only one of"},
		{"hash cookie name", map[string]string{"edge-agent.io/lb-policy": "maglev", "edge-agent.io/hash-cookie": "a=b"}, "edge-agent.io/hash-cookie", "not a valid cookie name"},
		{"slow start", map[string]string{"edge-agent.io/slow-start": "2h"}, "edge-agent.io/slow-start", "at most 1h"},
		{"max connections zero", map[string]string{"edge-agent.io/max-connections": "0"}, "edge-agent.io/max-connections", "0 is out of range 1-1048576"},
		{"max requests huge", map[string]string{"edge-agent.io/max-requests": "99999999"}, "edge-agent.io/max-requests", "out of range"},
		{"max retries word", map[string]string{"edge-agent.io/max-retries": "none"}, "edge-agent.io/max-retries", "not an integer"},
		{"outlier threshold", map[string]string{"edge-agent.io/outlier-consecutive-5xx": "1001"}, "edge-agent.io/outlier-consecutive-5xx", "out of range 0-1000"},
		{"outlier ejection time", map[string]string{"edge-agent.io/outlier-base-ejection-time": "abc"}, "edge-agent.io/outlier-base-ejection-time", "invalid duration"},
		{"outlier percent", map[string]string{"edge-agent.io/outlier-max-ejection-percent": "101"}, "edge-agent.io/outlier-max-ejection-percent", "out of range 1-100"},
		{"health check type", map[string]string{"edge-agent.io/health-check-type": "icmp"}, "edge-agent.io/health-check-type", `"icmp" is not one of http, grpc, tcp`},
		{"health check path", map[string]string{"edge-agent.io/health-check-type": "http", "edge-agent.io/health-check-path": "healthz"}, "edge-agent.io/health-check-path", "must start with /"},
		{"health check interval", map[string]string{"edge-agent.io/health-check-type": "tcp", "edge-agent.io/health-check-interval": "10ms"}, "edge-agent.io/health-check-interval", "between 100ms and 1h"},
		{"health check threshold", map[string]string{"edge-agent.io/health-check-type": "tcp", "edge-agent.io/health-check-unhealthy-threshold": "0"}, "edge-agent.io/health-check-unhealthy-threshold", "out of range 1-100"},
		{"health check statuses", map[string]string{"edge-agent.io/health-check-type": "http", "edge-agent.io/health-check-expected-statuses": "200,700"}, "edge-agent.io/health-check-expected-statuses", "700 is out of range 100-599"},
		{"health check grpc service", map[string]string{"edge-agent.io/health-check-type": "grpc", "edge-agent.io/health-check-grpc-service": "shop/Cart"}, "edge-agent.io/health-check-grpc-service", "not a fully qualified gRPC service name"},
		// Groups and pairs.
		{"retry without attempts", map[string]string{"edge-agent.io/retry-on": "5xx"}, "edge-agent.io/retry-attempts", "required when another retry-* key is set"},
		{"named route retry without attempts", map[string]string{"edge-agent.io/api.retry-per-try-timeout": "1s"}, "edge-agent.io/api.retry-attempts", "required"},
		{"status codes without condition", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-status-codes": "409"}, "edge-agent.io/retry-status-codes", "needs retriable-status-codes in edge-agent.io/retry-on"},
		{"condition without status codes", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "retriable-status-codes"}, "edge-agent.io/retry-on", "needs edge-agent.io/retry-status-codes"},
		{"backoff max below base", map[string]string{"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-backoff-base": "1s", "edge-agent.io/retry-backoff-max": "500ms"}, "edge-agent.io/retry-backoff-max", "at least retry-backoff-base (1s)"},
		{"rate limit without requests", map[string]string{"edge-agent.io/rate-limit-burst": "5"}, "edge-agent.io/rate-limit-requests", "required"},
		{"rate limit header key without header", map[string]string{"edge-agent.io/rate-limit-requests": "5", "edge-agent.io/rate-limit-key": "header"}, "edge-agent.io/rate-limit-header", "required with rate-limit-key header"},
		{"rate limit header without header key", map[string]string{"edge-agent.io/rate-limit-requests": "5", "edge-agent.io/rate-limit-header": "X-Key"}, "edge-agent.io/rate-limit-header", "only with rate-limit-key header"},
		{"mirror percent without service", map[string]string{"edge-agent.io/mirror-percent": "5"}, "edge-agent.io/mirror-service", "required"},
		{"fault delay without percent", map[string]string{"edge-agent.io/fault-delay": "1s"}, "edge-agent.io/fault-delay-percent", "required with fault-delay"},
		{"fault abort percent without status", map[string]string{"edge-agent.io/fault-abort-percent": "5"}, "edge-agent.io/fault-abort-status", "required"},
		{"mirror on a redirect", map[string]string{"edge-agent.io/redirect-scheme": "https", "edge-agent.io/mirror-service": "s"}, "edge-agent.io/mirror-service", "route that redirects"},
		{"pending without connections", map[string]string{"edge-agent.io/max-pending-requests": "5"}, "edge-agent.io/max-pending-requests", "needs max-connections"},
		{"ejection times", map[string]string{"edge-agent.io/outlier-max-ejection-time": "10s"}, "edge-agent.io/outlier-max-ejection-time", "at least outlier-base-ejection-time (30s)"},
		{"all thresholds off", map[string]string{"edge-agent.io/outlier-consecutive-5xx": "0", "edge-agent.io/outlier-consecutive-connect-failures": "0"}, "edge-agent.io/outlier-consecutive-5xx", "nothing would be ejected"},
		{"health check without type", map[string]string{"edge-agent.io/health-check-path": "/ready"}, "edge-agent.io/health-check-type", "required when another health-check-* key is set"},
		{"health check path on tcp", map[string]string{"edge-agent.io/health-check-type": "tcp", "edge-agent.io/health-check-path": "/ready"}, "edge-agent.io/health-check-path", "http only"},
		{"health check service on http", map[string]string{"edge-agent.io/health-check-type": "http", "edge-agent.io/health-check-grpc-service": "a.B"}, "edge-agent.io/health-check-grpc-service", "grpc only"},
		{"health check timeout over interval", map[string]string{"edge-agent.io/health-check-type": "tcp", "edge-agent.io/health-check-timeout": "6s"}, "edge-agent.io/health-check-timeout", "at most health-check-interval (5s)"},
		{"service policy on a route", map[string]string{"edge-agent.io/api.max-connections": "5"}, "edge-agent.io/api.max-connections", "whole Service"},
		{"policy in mode l4", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/max-connections": "5"}, "edge-agent.io/max-connections", "does not apply to mode l4"},
		{"route policy in mode l4", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/retry-attempts": "2"}, "edge-agent.io/retry-attempts", "no HTTP routes"},
	}
	expectParseErrors(t, cases, true)
}

func TestParseReportsEveryProblemSorted(t *testing.T) {
	_, err := Parse(map[string]string{
		"edge-agent.io/hosts":   "a.example.com",
		"edge-agent.io/zzz":     "1",
		"edge-agent.io/timeout": "soon",
		"edge-agent.io/aaa":     "1",
	})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	if es[0].Key != "edge-agent.io/aaa" || es[1].Key != "edge-agent.io/timeout" || es[2].Key != "edge-agent.io/zzz" {
		t.Fatalf("not sorted by key: %v", es)
	}
}

func TestParseL4Mode(t *testing.T) {
	svc, err := Parse(map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/l4-preserve-source": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Mode != ModeL4 || !svc.L4PreserveSource || len(svc.Routes) != 0 {
		t.Fatalf("service = %+v", svc)
	}
}

func TestHas(t *testing.T) {
	if Has(map[string]string{"other.io/x": "1"}) || Has(nil) {
		t.Error("Has without our prefix")
	}
	if !Has(map[string]string{"edge-agent.io/hosts": "a.example.com"}) {
		t.Error("Has with our prefix")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hosts", "a.example.com", "api.match-headers", "X-A: 1\nX-B")
	f.Add("path-regex", "/a(b|c)*", "request-headers-set", "X-A: b")
	f.Add("ip-allow", "10.0.0.0/8, ::1", "cors-allow-origins", "https://*.a.example.com:8443")
	f.Add("jwt-jwks-url", "https://[fe80::1%25eth0]/k", "jwt-claims-to-headers", "sub=X-User,a=b=c")
	f.Add("max-body-bytes", "10Mi", "api.basic-auth-realm", "a\\")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		svc, err := Parse(map[string]string{Prefix + k1: v1, Prefix + k2: v2})
		if err == nil && svc == nil {
			t.Fatal("nil service without error")
		}
	})
}

func TestParseSecurity(t *testing.T) {
	svc, err := Parse(map[string]string{
		"edge-agent.io/hosts":                     "shop.example.com",
		"edge-agent.io/ip-allow":                  "10.0.0.0/8, 192.168.1.7, 2001:db8::/32",
		"edge-agent.io/ip-deny":                   "10.6.6.0/24,fd00::1",
		"edge-agent.io/api-keys-secret":           "shop-api-keys",
		"edge-agent.io/api-keys-header":           "X-Shop-Key",
		"edge-agent.io/basic-auth-secret":         "shop-users",
		"edge-agent.io/basic-auth-realm":          "Shop staff",
		"edge-agent.io/jwt-issuer":                "https://issuer.example.com/",
		"edge-agent.io/jwt-jwks-url":              "https://issuer.example.com/.well-known/jwks.json",
		"edge-agent.io/jwt-algorithms":            "RS256, ES256",
		"edge-agent.io/jwt-audiences":             "shop,shop-admin",
		"edge-agent.io/jwt-from-cookie":           "session",
		"edge-agent.io/jwt-claims-to-headers":     "sub=X-User, https://example.com/roles = X-Roles",
		"edge-agent.io/jwt-optional":              "true",
		"edge-agent.io/jwt-clock-skew":            "1m",
		"edge-agent.io/ext-auth-bypass":           "true",
		"edge-agent.io/waf":                       "block",
		"edge-agent.io/waf-paranoia-level":        "2",
		"edge-agent.io/waf-exclude-rules":         "920350, 942100",
		"edge-agent.io/max-body-bytes":            "10Mi",
		"edge-agent.io/cors-allow-origins":        "https://app.example.com, https://*.Shop.example.com, http://localhost:3000",
		"edge-agent.io/cors-allow-methods":        "GET,PUT",
		"edge-agent.io/cors-allow-headers":        "content-type, x-requested-with",
		"edge-agent.io/cors-expose-headers":       "X-Request-Id",
		"edge-agent.io/cors-allow-credentials":    "true",
		"edge-agent.io/cors-max-age":              "1h",
		"edge-agent.io/upload.path-prefix":        "/upload",
		"edge-agent.io/upload.max-body-bytes":     "1073741824",
		"edge-agent.io/upload.jwt-issuer":         "shop",
		"edge-agent.io/upload.jwt-jwks-url":       "http://keys.auth.svc.cluster.local:8080/jwks",
		"edge-agent.io/upload.jwt-algorithms":     "EdDSA",
		"edge-agent.io/upload.jwt-from-header":    "X-Token",
		"edge-agent.io/upload.ext-auth-bypass":    "false",
		"edge-agent.io/upload.waf":                "detect",
		"edge-agent.io/upload.ip-allow":           "0.0.0.0/0",
		"edge-agent.io/upload.api-keys-secret":    "upload-keys",
		"edge-agent.io/upload.cors-allow-origins": "*",
	})
	if err != nil {
		t.Fatal(err)
	}
	def, up := svc.Routes[0], svc.Routes[1]
	if ip := def.IPRules; ip == nil || strings.Join(ip.Allow, ",") != "10.0.0.0/8,192.168.1.7,2001:db8::/32" || strings.Join(ip.Deny, ",") != "10.6.6.0/24,fd00::1" {
		t.Errorf("ip rules = %+v", def.IPRules)
	}
	if k := def.APIKeys; k == nil || *k != (APIKeys{Secret: "shop-api-keys", Header: "X-Shop-Key"}) {
		t.Errorf("api keys = %+v", def.APIKeys)
	}
	if b := def.BasicAuth; b == nil || *b != (BasicAuth{Secret: "shop-users", Realm: "Shop staff"}) {
		t.Errorf("basic auth = %+v", def.BasicAuth)
	}
	j := def.JWT
	if j == nil || !j.Optional || len(j.Providers) != 1 {
		t.Fatalf("jwt = %+v", def.JWT)
	}
	p := j.Providers[0]
	if p.Name != JWTProviderName || p.Issuer != "https://issuer.example.com/" || p.JWKSURL != "https://issuer.example.com/.well-known/jwks.json" ||
		strings.Join(p.Algorithms, ",") != "RS256,ES256" || strings.Join(p.Audiences, ",") != "shop,shop-admin" ||
		p.FromCookie != "session" || p.FromHeader != "" || p.ClockSkew.D() != time.Minute || p.JWKSFile != "" {
		t.Errorf("jwt provider = %+v", p)
	}
	if c := p.ClaimsToHeaders; len(c) != 2 || c[0] != (config.ClaimHeader{Claim: "sub", Header: "X-User"}) || c[1] != (config.ClaimHeader{Claim: "https://example.com/roles", Header: "X-Roles"}) {
		t.Errorf("claims to headers = %+v", c)
	}
	if !def.ExtAuthBypass || up.ExtAuthBypass {
		t.Errorf("ext auth bypass = %v / %v", def.ExtAuthBypass, up.ExtAuthBypass)
	}
	if w := def.WAF; w == nil || w.Mode != config.WAFBlock || w.ParanoiaLevel != 2 || len(w.ExcludeRules) != 2 || w.ExcludeRules[1] != 942100 {
		t.Errorf("waf = %+v", def.WAF)
	}
	if def.MaxBodyBytes != 10<<20 || up.MaxBodyBytes != 1<<30 {
		t.Errorf("max body bytes = %d / %d", def.MaxBodyBytes, up.MaxBodyBytes)
	}
	c := def.CORS
	if c == nil || strings.Join(c.AllowOrigins, ",") != "https://app.example.com,https://*.shop.example.com,http://localhost:3000" ||
		strings.Join(c.AllowMethods, ",") != "GET,PUT" || strings.Join(c.AllowHeaders, ",") != "content-type,x-requested-with" ||
		strings.Join(c.ExposeHeaders, ",") != "X-Request-Id" || !c.AllowCredentials || c.MaxAge.D() != time.Hour {
		t.Errorf("cors = %+v", def.CORS)
	}
	// The named route has its own controls, none of the default route's.
	if up.JWT == nil || up.JWT.Optional || up.JWT.Providers[0].FromHeader != "X-Token" || up.JWT.Providers[0].JWKSURL != "http://keys.auth.svc.cluster.local:8080/jwks" {
		t.Errorf("upload jwt = %+v", up.JWT)
	}
	if up.WAF == nil || up.WAF.Mode != config.WAFDetect || up.WAF.ParanoiaLevel != 0 || up.BasicAuth != nil || up.APIKeys.Header != "" || up.CORS.AllowOrigins[0] != "*" {
		t.Errorf("upload route = %+v", up)
	}
	// No security key: nothing set.
	svc, err = Parse(map[string]string{"edge-agent.io/hosts": "a.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if r := svc.Routes[0]; r.IPRules != nil || r.APIKeys != nil || r.BasicAuth != nil || r.JWT != nil || r.ExtAuthBypass || r.WAF != nil || r.MaxBodyBytes != 0 || r.CORS != nil {
		t.Errorf("route = %+v", r)
	}
}

func TestParseSecurityErrorsNameTheKey(t *testing.T) {
	jwt := func(extra ...string) map[string]string {
		m := map[string]string{
			"edge-agent.io/jwt-issuer":     "https://issuer.example.com",
			"edge-agent.io/jwt-jwks-url":   "https://issuer.example.com/jwks",
			"edge-agent.io/jwt-algorithms": "RS256",
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	cases := []parseErrorCase{
		// IP rules.
		{"bad cidr", map[string]string{"edge-agent.io/ip-allow": "10.0.0.0/33"}, "edge-agent.io/ip-allow", `"10.0.0.0/33" is not a CIDR`},
		{"hostname as cidr", map[string]string{"edge-agent.io/ip-deny": "10.0.0.1,evil.example.com"}, "edge-agent.io/ip-deny", `"evil.example.com" is not a CIDR`},
		{"host bits", map[string]string{"edge-agent.io/ip-allow": "10.1.2.3/8"}, "edge-agent.io/ip-allow", "did you mean 10.0.0.0/8?"},
		{"mapped v4", map[string]string{"edge-agent.io/ip-allow": "::ffff:10.0.0.1"}, "edge-agent.io/ip-allow", "write IPv4 addresses as IPv4"},
		{"zone", map[string]string{"edge-agent.io/ip-allow": "fe80::1%eth0"}, "edge-agent.io/ip-allow", "is not a CIDR"},
		{"empty cidr item", map[string]string{"edge-agent.io/api.ip-allow": "10.0.0.0/8,"}, "edge-agent.io/api.ip-allow", "empty item"},
		// API keys and basic auth.
		{"api keys secret name", map[string]string{"edge-agent.io/api-keys-secret": "Keys_1"}, "edge-agent.io/api-keys-secret", "not a valid Secret name"},
		{"api keys header", map[string]string{"edge-agent.io/api-keys-secret": "k", "edge-agent.io/api-keys-header": "X Key"}, "edge-agent.io/api-keys-header", "not a valid header name"},
		{"api keys managed header", map[string]string{"edge-agent.io/api-keys-secret": "k", "edge-agent.io/api-keys-header": "Host"}, "edge-agent.io/api-keys-header", "managed by the proxy"},
		{"api keys header alone", map[string]string{"edge-agent.io/api-keys-header": "X-Key"}, "edge-agent.io/api-keys-secret", "required when api-keys-header is set"},
		{"basic auth secret name", map[string]string{"edge-agent.io/basic-auth-secret": "../users"}, "edge-agent.io/basic-auth-secret", "not a valid Secret name"},
		{"realm quote", map[string]string{"edge-agent.io/basic-auth-secret": "u", "edge-agent.io/basic-auth-realm": `a" b`}, "edge-agent.io/basic-auth-realm", "without quotes or backslashes"},
		{"realm backslash", map[string]string{"edge-agent.io/basic-auth-secret": "u", "edge-agent.io/basic-auth-realm": `a\`}, "edge-agent.io/basic-auth-realm", "without quotes or backslashes"},
		{"realm control", map[string]string{"edge-agent.io/basic-auth-secret": "u", "edge-agent.io/basic-auth-realm": "a\r\nX-Evil: 1"}, "edge-agent.io/basic-auth-realm", "printable ASCII"},
		{"realm alone", map[string]string{"edge-agent.io/basic-auth-realm": "staff"}, "edge-agent.io/basic-auth-secret", "required when basic-auth-realm is set"},
		// JWT.
		{"hmac algorithm", jwt("edge-agent.io/jwt-algorithms", "RS256,HS256"), "edge-agent.io/jwt-algorithms", `"HS256" is not one of RS256`},
		{"none algorithm", jwt("edge-agent.io/jwt-algorithms", "none"), "edge-agent.io/jwt-algorithms", "none and HMAC are never allowed"},
		{"lower-case algorithm", jwt("edge-agent.io/jwt-algorithms", "rs256"), "edge-agent.io/jwt-algorithms", `"rs256" is not one of`},
		{"claims mapping without =", jwt("edge-agent.io/jwt-claims-to-headers", "sub"), "edge-agent.io/jwt-claims-to-headers", `"sub": want claim=Header-Name`},
		{"claims mapping empty claim", jwt("edge-agent.io/jwt-claims-to-headers", "=X-User"), "edge-agent.io/jwt-claims-to-headers", "want claim=Header-Name"},
		{"claims mapping bad header", jwt("edge-agent.io/jwt-claims-to-headers", "sub=X User"), "edge-agent.io/jwt-claims-to-headers", "not a valid header name"},
		{"claims mapping managed header", jwt("edge-agent.io/jwt-claims-to-headers", "sub=Host"), "edge-agent.io/jwt-claims-to-headers", "managed by the proxy"},
		{"claims mapping duplicate header", jwt("edge-agent.io/jwt-claims-to-headers", "sub=X-User,email=x-user"), "edge-agent.io/jwt-claims-to-headers", "listed twice"},
		{"claims mapping two =", jwt("edge-agent.io/jwt-claims-to-headers", "a=b=X-C"), "edge-agent.io/jwt-claims-to-headers", "not a valid header name"},
		{"issuer spaces", jwt("edge-agent.io/jwt-issuer", "https://issuer.example.com\n"), "edge-agent.io/jwt-issuer", "not an issuer"},
		{"jwks plain http", jwt("edge-agent.io/jwt-jwks-url", "http://issuer.example.com/jwks"), "edge-agent.io/jwt-jwks-url", "plain http is allowed only to in-cluster hosts"},
		{"jwks loopback", jwt("edge-agent.io/jwt-jwks-url", "https://127.0.0.1:9901/jwks"), "edge-agent.io/jwt-jwks-url", "loopback"},
		{"jwks localhost", jwt("edge-agent.io/jwt-jwks-url", "https://localhost/jwks"), "edge-agent.io/jwt-jwks-url", "the node itself"},
		{"jwks metadata", jwt("edge-agent.io/jwt-jwks-url", "https://169.254.169.254/latest"), "edge-agent.io/jwt-jwks-url", "link-local"},
		{"jwks credentials", jwt("edge-agent.io/jwt-jwks-url", "https://user:pw@issuer.example.com/jwks"), "edge-agent.io/jwt-jwks-url", "without credentials"},
		{"jwks relative", jwt("edge-agent.io/jwt-jwks-url", "/jwks"), "edge-agent.io/jwt-jwks-url", "not an absolute https URL"},
		{"jwks scheme", jwt("edge-agent.io/jwt-jwks-url", "file:///etc/jwks.json"), "edge-agent.io/jwt-jwks-url", "not an absolute https URL"},
		{"jwks ftp", jwt("edge-agent.io/jwt-jwks-url", "ftp://issuer.example.com/jwks"), "edge-agent.io/jwt-jwks-url", "scheme must be https"},
		{"clock skew", jwt("edge-agent.io/jwt-clock-skew", "10m"), "edge-agent.io/jwt-clock-skew", "at most 5m"},
		{"jwt optional bool", jwt("edge-agent.io/jwt-optional", "yes"), "edge-agent.io/jwt-optional", "not one of true, false"},
		{"jwt from cookie name", jwt("edge-agent.io/jwt-from-cookie", "a=b"), "edge-agent.io/jwt-from-cookie", "not a valid cookie name"},
		{"jwt header and cookie", jwt("edge-agent.io/jwt-from-cookie", "s", "edge-agent.io/jwt-from-header", "X-Token"), "edge-agent.io/jwt-from-header", "only one of jwt-from-header, jwt-from-cookie"},
		{"jwt without issuer", map[string]string{"edge-agent.io/jwt-jwks-url": "https://i.example.com/k", "edge-agent.io/jwt-algorithms": "RS256"}, "edge-agent.io/jwt-issuer", "required when another jwt-* key is set"},
		{"jwt without jwks", map[string]string{"edge-agent.io/api.jwt-issuer": "i", "edge-agent.io/api.jwt-algorithms": "RS256"}, "edge-agent.io/api.jwt-jwks-url", "required"},
		{"jwt without algorithms", map[string]string{"edge-agent.io/jwt-issuer": "i", "edge-agent.io/jwt-jwks-url": "https://i.example.com/k"}, "edge-agent.io/jwt-algorithms", "required"},
		{"jwt optional alone", map[string]string{"edge-agent.io/jwt-optional": "true"}, "edge-agent.io/jwt-issuer", "required"},
		// External authorization, WAF, body size.
		{"ext auth bool", map[string]string{"edge-agent.io/ext-auth-bypass": "bypass"}, "edge-agent.io/ext-auth-bypass", "not one of true, false"},
		{"ext auth service", map[string]string{"edge-agent.io/ext-auth": "bypass"}, "edge-agent.io/ext-auth", "did you mean edge-agent.io/ext-auth-bypass?"},
		{"waf mode", map[string]string{"edge-agent.io/waf": "on"}, "edge-agent.io/waf", `"on" is not one of detect, block`},
		{"waf level 5", map[string]string{"edge-agent.io/waf": "block", "edge-agent.io/waf-paranoia-level": "5"}, "edge-agent.io/waf-paranoia-level", "5 is out of range 1-4"},
		{"waf level 0", map[string]string{"edge-agent.io/waf": "block", "edge-agent.io/waf-paranoia-level": "0"}, "edge-agent.io/waf-paranoia-level", "out of range 1-4"},
		{"waf rules", map[string]string{"edge-agent.io/waf": "block", "edge-agent.io/waf-exclude-rules": "920350,abc"}, "edge-agent.io/waf-exclude-rules", `"abc" is not an integer`},
		{"waf rules range", map[string]string{"edge-agent.io/waf": "block", "edge-agent.io/waf-exclude-rules": "0"}, "edge-agent.io/waf-exclude-rules", "out of range 1-999999"},
		{"waf without mode", map[string]string{"edge-agent.io/waf-paranoia-level": "2"}, "edge-agent.io/waf", "required when waf-paranoia-level or waf-exclude-rules is set"},
		{"body zero", map[string]string{"edge-agent.io/max-body-bytes": "0"}, "edge-agent.io/max-body-bytes", "not a size"},
		{"body negative", map[string]string{"edge-agent.io/max-body-bytes": "-1"}, "edge-agent.io/max-body-bytes", "not a size"},
		{"body decimal suffix", map[string]string{"edge-agent.io/max-body-bytes": "10M"}, "edge-agent.io/max-body-bytes", "binary suffix Ki, Mi, Gi or Ti"},
		{"body fraction", map[string]string{"edge-agent.io/max-body-bytes": "1.5Gi"}, "edge-agent.io/max-body-bytes", "not a size"},
		{"body too big", map[string]string{"edge-agent.io/max-body-bytes": "2Ti"}, "edge-agent.io/max-body-bytes", "at most 1Ti"},
		{"body too big bytes", map[string]string{"edge-agent.io/max-body-bytes": "1099511627777"}, "edge-agent.io/max-body-bytes", "at most 1Ti"},
		{"body on a redirect", map[string]string{"edge-agent.io/redirect-scheme": "https", "edge-agent.io/max-body-bytes": "1Mi"}, "edge-agent.io/max-body-bytes", "route that redirects"},
		// CORS.
		{"origin with path", map[string]string{"edge-agent.io/cors-allow-origins": "https://app.example.com/"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin without scheme", map[string]string{"edge-agent.io/cors-allow-origins": "app.example.com"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin scheme", map[string]string{"edge-agent.io/cors-allow-origins": "ftp://app.example.com"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin deep wildcard", map[string]string{"edge-agent.io/cors-allow-origins": "https://a.*.example.com"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin bare wildcard", map[string]string{"edge-agent.io/cors-allow-origins": "https://*"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin port", map[string]string{"edge-agent.io/cors-allow-origins": "https://app.example.com:99999"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin userinfo", map[string]string{"edge-agent.io/cors-allow-origins": "https://u@app.example.com"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"origin null", map[string]string{"edge-agent.io/cors-allow-origins": "null"}, "edge-agent.io/cors-allow-origins", "is not an origin"},
		{"star with credentials", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-allow-credentials": "true"}, "edge-agent.io/cors-allow-credentials", "browsers refuse it"},
		{"cors without origins", map[string]string{"edge-agent.io/cors-allow-methods": "GET"}, "edge-agent.io/cors-allow-origins", "required when another cors-* key is set"},
		{"cors method", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-allow-methods": "get"}, "edge-agent.io/cors-allow-methods", "upper-case"},
		{"cors header", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-allow-headers": "x a"}, "edge-agent.io/cors-allow-headers", "not a valid header name"},
		{"cors expose header", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-expose-headers": "a:b"}, "edge-agent.io/cors-expose-headers", "not a valid header name"},
		{"cors max age", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-max-age": "48h"}, "edge-agent.io/cors-max-age", "at most 24h"},
		{"cors credentials bool", map[string]string{"edge-agent.io/cors-allow-origins": "*", "edge-agent.io/cors-allow-credentials": "1"}, "edge-agent.io/cors-allow-credentials", "not one of true, false"},
		// Mode l4 has no routes to protect.
		{"security in mode l4", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/ip-allow": "10.0.0.0/8"}, "edge-agent.io/ip-allow", "no HTTP routes"},
	}
	expectParseErrors(t, cases, true)
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1048576": 1 << 20, "512Ki": 512 << 10, "10Mi": 10 << 20, "3Gi": 3 << 30, "1Ti": 1 << 40, "1099511627776": 1 << 40} {
		if got, err := parseByteSize(in, MaxBodyBytes); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "01", "1K", "1ki", "1 Mi", "1MiB", "1e6", "+1", "9999999999999Ti", "1099511627777"} {
		if got, err := parseByteSize(in, MaxBodyBytes); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", in, got)
		}
	}
}
