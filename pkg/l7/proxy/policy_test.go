package proxy_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 15 * time.Second}
}

// A retry lands on the healthy endpoint: one of two answers 503, the
// client never sees it, and the attempts header says what happened.
func TestRetryLandsOnHealthyEndpoint(t *testing.T) {
	bad, good := newFlaky(t, "bad"), newFlaky(t, "good")
	bad.set(modeFail)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], retry: {attempts: 2, on: [gateway-error]}}]
clusters: [{name: c, endpoints: [{address: %s}, {address: %s}]}]
`, bad.addr, good.addr))
	c := client()
	twice := 0
	for i := range 20 {
		code, who, _, h, err := call(c, "GET", e.url(fmt.Sprint("/", i)), nil, nil)
		if err != nil || code != 200 || who != "good" {
			t.Fatalf("request %d: %d from %q (%v), want 200 from good", i, code, who, err)
		}
		switch h.Get("Edge-Agent-Attempts") {
		case "2":
			twice++
		case "1":
		default:
			t.Fatalf("Edge-Agent-Attempts = %q", h.Get("Edge-Agent-Attempts"))
		}
	}
	if twice == 0 || bad.hits.Load() == 0 {
		t.Fatalf("no request was retried (bad saw %d)", bad.hits.Load())
	}
	if n := metricValue(t, e, "edge_agent_retries_total", "r", "attempted"); n != float64(twice) {
		t.Fatalf("retries metric %v, want %d", n, twice)
	}
}

// Connect failures, resets and per-try timeouts are retried on another
// endpoint; the per-try timeout cuts a hanging attempt early.
func TestRetryOnConnectFailureResetAndPerTryTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(f *flaky)
	}{
		{"refused", func(f *flaky) { f.stop() }},
		{"reset", func(f *flaky) { f.set(modeReset) }},
		{"hang", func(f *flaky) { f.set(modeHang) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, good := newFlaky(t, "bad"), newFlaky(t, "good")
			tc.set(bad)
			e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 5s, backends: [{cluster: c}], retry: {attempts: 1, perTryTimeout: 200ms, on: [connect-failure, reset]}}]
clusters: [{name: c, endpoints: [{address: %s}, {address: %s}]}]
`, bad.addr, good.addr))
			c := client()
			for i := range 6 {
				start := time.Now()
				code, who, _, _, err := call(c, "GET", e.url("/"), nil, nil)
				if err != nil || code != 200 || who != "good" {
					t.Fatalf("request %d: %d from %q (%v)", i, code, who, err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("request %d took %v: the per-try timeout did not cut the attempt", i, d)
				}
			}
		})
	}
}

// POST is not idempotent: a 503 is returned, not retried, unless the
// route allows it; then the body (streamed, chunked) is sent again whole.
func TestRetryIdempotencyAndBodyReplay(t *testing.T) {
	bad, good := newFlaky(t, "bad"), newFlaky(t, "good")
	bad.set(modeFail)
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], retry: {attempts: 1, on: [5xx], nonIdempotent: %v}}]
clusters: [{name: c, lbPolicy: round_robin, endpoints: [{address: %s}, {address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, false, bad.addr, good.addr))
	c := client()
	saw503 := false
	for range 4 {
		code, _, _, h, err := call(c, "POST", e.url("/"), nil, strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if code == 503 {
			saw503 = true
			if h.Get("Edge-Agent-Attempts") != "1" {
				t.Fatalf("POST retried without nonIdempotent: attempts %q", h.Get("Edge-Agent-Attempts"))
			}
		}
	}
	if !saw503 {
		t.Fatal("POST never reached the failing endpoint")
	}
	e.reload(t, fmt.Sprintf(yaml, true, bad.addr, good.addr))
	body := strings.Repeat("0123456789", 3000)
	for i := range 4 {
		// An io.Reader of unknown length: the client sends it chunked.
		code, who, _, _, err := call(c, "POST", e.url("/"), nil, io.MultiReader(strings.NewReader(body)))
		if err != nil || code != 200 || who != "good" {
			t.Fatalf("request %d: %d from %q (%v)", i, code, who, err)
		}
		if got, _ := good.body(); got != body {
			t.Fatalf("replayed body: %d bytes, want %d", len(got), len(body))
		}
	}
}

// The retry budget stops retries when most requests fail: retries add at
// most 20% to the load on a failing cluster.
func TestRetryBudgetStopsRetryStorm(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	a.set(modeFail)
	b.set(modeFail)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], retry: {attempts: 3, backoffBase: 1ms, backoffMax: 2ms, budget: {percent: 20, minPerSecond: 0}}}]
clusters: [{name: c, endpoints: [{address: %s}, {address: %s}]}]
`, a.addr, b.addr))
	c := client()
	const n = 100
	for range n {
		if code, _, _, _, err := call(c, "GET", e.url("/"), nil, nil); err != nil || code != 503 {
			t.Fatalf("got %d (%v), want 503", code, err)
		}
	}
	hits := a.hits.Load() + b.hits.Load()
	// Without a budget this would be 400 attempts.
	if hits < n+10 || hits > n+n/5+1 {
		t.Fatalf("%d attempts for %d requests; want retries within the 20%% budget (and some retries)", hits, n)
	}
	if metricValue(t, e, "edge_agent_retries_total", "r", "skipped_budget") == 0 {
		t.Fatal("no retry counted as refused by the budget")
	}
}

// gRPC calls are retried on the gRPC status codes the route lists.
func TestRetryOnGRPCStatus(t *testing.T) {
	bad, good := newFlaky(t, "bad"), newFlaky(t, "good")
	bad.set(modeDownGRPC)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], retry: {attempts: 1, on: [unavailable]}}]
clusters: [{name: c, endpoints: [{address: %s}, {address: %s}]}]
`, bad.addr, good.addr))
	c := h2cClient()
	for i := range 6 {
		code, who, _, h, err := call(c, "POST", e.url("/pkg.Svc/Call"), map[string]string{"Content-Type": "application/grpc", "TE": "trailers"}, strings.NewReader("\x00\x00\x00\x00\x00"))
		if err != nil || code != 200 || who != "good" || h.Get("Grpc-Status") == "14" {
			t.Fatalf("call %d: %d from %q grpc-status %q (%v)", i, code, who, h.Get("Grpc-Status"), err)
		}
	}
	if bad.hits.Load() == 0 {
		t.Fatal("the failing endpoint was never tried")
	}
}

// The route timeout covers the whole exchange (a slow body is cut); a
// streaming route is not cut by it but by its idle timeout.
func TestRequestTimeoutAndStreaming(t *testing.T) {
	up := newFlaky(t, "s")
	up.set(modeStream)
	up.delay.Store(int64(150 * time.Millisecond)) // 5 bytes over ~750ms
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 300ms, %s backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, "", up.addr))
	c := client()
	if _, _, body, _, err := call(c, "GET", e.url("/"), nil, nil); err == nil || len(body) >= 5 {
		t.Fatalf("body %q (%v): want the stream cut at the 300ms route timeout", body, err)
	}
	e.reload(t, fmt.Sprintf(yaml, "streaming: true, idleTimeout: 1s,", up.addr))
	if code, _, body, _, err := call(c, "GET", e.url("/"), nil, nil); err != nil || code != 200 || body != "xxxxx" {
		t.Fatalf("streaming route: %d %q (%v), want the whole stream", code, body, err)
	}
	up.delay.Store(int64(1500 * time.Millisecond))
	start := time.Now()
	if _, _, body, _, err := call(c, "GET", e.url("/"), nil, nil); err == nil || body != "x" {
		t.Fatalf("stalled stream: %q (%v), want it cut by the 1s idle timeout", body, err)
	}
	if d := time.Since(start); d > 1400*time.Millisecond {
		t.Fatalf("stalled stream cut after %v, want about 1s", d)
	}
}

// max_requests opens at exactly the limit: the next request gets 503 at
// once, naming the breaker; those in flight are unaffected.
func TestCircuitBreakerMaxRequests(t *testing.T) {
	up := newFlaky(t, "h")
	up.set(modeHang)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 10s, backends: [{cluster: c}]}]
clusters: [{name: c, circuitBreaker: {maxRequests: 3}, endpoints: [{address: %s}]}]
`, up.addr))
	c := client()
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 3 {
		wg.Go(func() {
			code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil)
			codes <- code
		})
	}
	waitUntil(t, 5*time.Second, func() bool { return up.hits.Load() == 3 }, "3 requests never reached the backend")
	start := time.Now()
	code, _, _, h, err := call(c, "GET", e.url("/"), nil, nil)
	if err != nil || code != 503 || h.Get("Edge-Agent-Overflow") != "max_requests" || h.Get("Edge-Agent-Reason") != "upstream_overflow" {
		t.Fatalf("4th request: %d overflow=%q reason=%q (%v)", code, h.Get("Edge-Agent-Overflow"), h.Get("Edge-Agent-Reason"), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("overflow took %v, want at once", d)
	}
	up.unblock()
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("request in flight got %d", code)
		}
	}
	if v := metricValue(t, e, "edge_agent_circuit_breaker_overflows_total", "c", "max_requests"); v != 1 {
		t.Fatalf("overflow metric %v, want 1", v)
	}
	// Under the limit again.
	if code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil); code != 200 {
		t.Fatalf("after release: %d", code)
	}
}

// max_connections with a pending queue: requests beyond the connections
// wait for one; beyond the queue they get 503 max_pending_requests.
func TestCircuitBreakerConnectionsAndPending(t *testing.T) {
	up := newFlaky(t, "h")
	up.set(modeHang)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 10s, backends: [{cluster: c}]}]
clusters: [{name: c, circuitBreaker: {maxConnections: 2, maxPendingRequests: 1}, endpoints: [{address: %s}]}]
`, up.addr))
	c := client()
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	for range 2 {
		wg.Go(func() {
			code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil)
			codes <- code
		})
	}
	waitUntil(t, 5*time.Second, func() bool { return up.hits.Load() == 2 }, "2 requests never reached the backend")
	wg.Go(func() { // waits for a connection
		code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil)
		codes <- code
	})
	time.Sleep(200 * time.Millisecond) // let it queue
	if up.hits.Load() != 2 {
		t.Fatalf("a third connection was opened past maxConnections (%d hits)", up.hits.Load())
	}
	code, _, _, h, err := call(c, "GET", e.url("/"), nil, nil)
	if err != nil || code != 503 || h.Get("Edge-Agent-Overflow") != "max_pending_requests" {
		t.Fatalf("4th request: %d overflow=%q (%v)", code, h.Get("Edge-Agent-Overflow"), err)
	}
	up.unblock()
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("a request that waited got %d", code)
		}
	}
}

// An endpoint failing 5 times in a row is ejected: it gets no traffic for
// the ejection time, then comes back. At most maxEjectionPercent go.
func TestOutlierEjectionAndReturn(t *testing.T) {
	a, b, bad := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "bad")
	bad.set(modeFail)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, outlierDetection: {consecutive5xx: 3, baseEjectionTime: 1s}, endpoints: [{address: %s}, {address: %s}, {address: %s}]}]
`, a.addr, b.addr, bad.addr))
	c := client()
	for range 30 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if v := metricValue(t, e, "edge_agent_outlier_ejections_total", "c", "consecutive_5xx"); v != 1 {
		t.Fatalf("ejections %v, want 1", v)
	}
	if v := metricValue(t, e, "edge_agent_outlier_ejected_endpoints", "c"); v != 1 {
		t.Fatalf("ejected endpoints %v, want 1", v)
	}
	before := bad.hits.Load()
	if before != 3 {
		t.Fatalf("bad endpoint saw %d requests, want exactly 3 before ejection", before)
	}
	bad.set(modeOK)
	for i := range 30 {
		if code, who, _, _, _ := call(c, "GET", e.url("/"), nil, nil); code != 200 || who == "bad" {
			t.Fatalf("request %d while ejected: %d from %q", i, code, who)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	for range 30 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if bad.hits.Load() == before {
		t.Fatal("the endpoint did not return after its ejection time")
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	a, b, good := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "good")
	a.set(modeFail)
	b.set(modeFail)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, outlierDetection: {consecutive5xx: 2, maxEjectionPercent: 34}, endpoints: [{address: %s}, {address: %s}, {address: %s}]}]
`, a.addr, b.addr, good.addr))
	c := client()
	for range 40 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if v := metricValue(t, e, "edge_agent_outlier_ejected_endpoints", "c"); v != 1 {
		t.Fatalf("ejected endpoints %v, want 1 (34%% of 3)", v)
	}
}

// Active health checks take a failing endpoint out of rotation and bring
// it back when it passes again.
func TestActiveHealthCheck(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, healthCheck: {type: http, path: /healthz, interval: 100ms, timeout: 50ms, healthyThreshold: 1, unhealthyThreshold: 2}, endpoints: [{address: %s}, {address: %s}]}]
`, a.addr, b.addr))
	c := client()
	b.healthy.Store(false)
	waitUntil(t, 5*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_endpoint_healthy", "c", b.addr) == 0
	}, "b never marked unhealthy")
	before := b.hits.Load()
	for range 20 {
		if code, who, _, _, _ := call(c, "GET", e.url("/"), nil, nil); code != 200 || who != "a" {
			t.Fatalf("%d from %q while b is unhealthy", code, who)
		}
	}
	if b.hits.Load() != before {
		t.Fatal("unhealthy endpoint got traffic")
	}
	b.healthy.Store(true)
	waitUntil(t, 5*time.Second, func() bool {
		return metricValue(t, e, "edge_agent_endpoint_healthy", "c", b.addr) == 1
	}, "b never came back")
	for range 20 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if b.hits.Load() == before {
		t.Fatal("healthy again but no traffic")
	}
}

// maglev on a header: a key always reaches the same endpoint; keys spread.
func TestMaglevStickyByHeaderCookieAndIP(t *testing.T) {
	fs := []*flaky{newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "c")}
	for _, tc := range []struct{ hash, hdr string }{
		{"{header: X-User}", "X-User"},
		{"{cookie: session}", "Cookie"},
	} {
		t.Run(tc.hdr, func(t *testing.T) {
			e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, lbPolicy: maglev, hash: %s, endpoints: [{address: %s}, {address: %s}, {address: %s}]}]
`, tc.hash, fs[0].addr, fs[1].addr, fs[2].addr))
			c := client()
			used := map[string]int{}
			for u := range 60 {
				val := fmt.Sprint("user-", u)
				if tc.hdr == "Cookie" {
					val = "session=" + val
				}
				first := ""
				for range 4 {
					_, who, _, _, err := call(c, "GET", e.url("/"), map[string]string{tc.hdr: val}, nil)
					if err != nil {
						t.Fatal(err)
					}
					if first == "" {
						first = who
					} else if who != first {
						t.Fatalf("%s went to %s then %s", val, first, who)
					}
				}
				used[first]++
			}
			if len(used) != 3 || used["a"] < 8 || used["b"] < 8 || used["c"] < 8 {
				t.Fatalf("keys spread %v over 3 endpoints", used)
			}
		})
	}
	t.Run("sourceIP", func(t *testing.T) {
		e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, lbPolicy: maglev, hash: {sourceIP: true}, endpoints: [{address: %s}, {address: %s}, {address: %s}]}]
`, fs[0].addr, fs[1].addr, fs[2].addr))
		c := client()
		first := ""
		for range 10 {
			_, who, _, _, _ := call(c, "GET", e.url("/"), nil, nil)
			if first == "" {
				first = who
			} else if who != first {
				t.Fatalf("one client went to %s then %s", first, who)
			}
		}
	})
}

// Slow start: an endpoint added to a serving cluster starts with a small
// share that grows over the window.
func TestSlowStart(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, slowStart: 3s, endpoints: [%s]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, "{address: "+a.addr+"}"))
	c := client()
	e.reload(t, fmt.Sprintf(yaml, "{address: "+a.addr+"}, {address: "+b.addr+"}"))
	for range 200 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	// In the first ~10% of the window b is taken with probability ~0.1–0.2,
	// so with round robin it gets well under its 50% share.
	if n := b.hits.Load(); n > 60 || n == 0 {
		t.Fatalf("new endpoint got %d of 200 requests at the start of slow start; want a small share", n)
	}
	time.Sleep(3 * time.Second)
	a.hits.Store(0)
	b.hits.Store(0)
	for range 200 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if n := b.hits.Load(); n < 90 || n > 110 {
		t.Fatalf("after the window b got %d of 200, want its 50%%", n)
	}
}

// The rate limit admits the burst, then answers 429 with Retry-After and
// RateLimit-* headers; keys are independent; a reload keeps the buckets.
func TestRateLimit(t *testing.T) {
	up := newFlaky(t, "u")
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
- {name: r, backends: [{cluster: c}], rateLimit: {requests: 5, period: 1m, key: header, header: X-Api-Key}}
- {name: other, match: {path: {prefix: /other}}, timeout: %s, backends: [{cluster: c}]}
clusters: [{name: c, endpoints: [{address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, "10s", up.addr))
	c := client()
	key := map[string]string{"X-Api-Key": "team-a"}
	for i := range 5 {
		code, _, _, h, _ := call(c, "GET", e.url("/"), key, nil)
		if code != 200 || h.Get("RateLimit-Limit") != "5" || h.Get("RateLimit-Remaining") != strconv.Itoa(4-i) {
			t.Fatalf("request %d: %d limit=%q remaining=%q", i, code, h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"))
		}
	}
	code, _, _, h, _ := call(c, "GET", e.url("/"), key, nil)
	ra, _ := strconv.Atoi(h.Get("Retry-After"))
	if code != 429 || ra < 1 || ra > 12 || h.Get("RateLimit-Remaining") != "0" || h.Get("Edge-Agent-Reason") != "rate_limited" {
		t.Fatalf("6th: %d Retry-After=%q remaining=%q", code, h.Get("Retry-After"), h.Get("RateLimit-Remaining"))
	}
	if code, _, _, _, _ := call(c, "GET", e.url("/"), map[string]string{"X-Api-Key": "team-b"}, nil); code != 200 {
		t.Fatalf("another key: %d", code)
	}
	// Another team's change reloads the config: this bucket stays empty.
	e.reload(t, fmt.Sprintf(yaml, "20s", up.addr))
	if code, _, _, _, _ := call(c, "GET", e.url("/"), key, nil); code != 429 {
		t.Fatalf("after an unrelated reload: %d, want 429 (bucket kept)", code)
	}
	if v := metricValue(t, e, "edge_agent_rate_limited_total", "r"); v != 2 {
		t.Fatalf("rate-limited metric %v, want 2", v)
	}
}

// A 10% canary gets 10% ± 4σ of 2000 requests; a reload to 50/50 shifts
// traffic and request counters carry on.
func TestCanaryWeightsAndShift(t *testing.T) {
	stable, canary := newFlaky(t, "stable"), newFlaky(t, "canary")
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: stable, weight: %d}, {cluster: canary, weight: %d}]}]
clusters: [{name: stable, endpoints: [{address: %s}]}, {name: canary, endpoints: [{address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, 90, 10, stable.addr, canary.addr))
	c := client()
	const n = 2000
	for i := range n {
		if code, _, _, _, err := call(c, "GET", e.url("/"), nil, nil); err != nil || code != 200 {
			t.Fatalf("request %d: %d, %v", i, code, err)
		}
	}
	share := float64(canary.hits.Load()) / n
	sigma := math.Sqrt(0.1 * 0.9 / n)
	if math.Abs(share-0.1) > 4*sigma {
		t.Fatalf("canary share %.3f, want 0.10 ± %.3f", share, 4*sigma)
	}
	before := canary.hits.Load()
	e.reload(t, fmt.Sprintf(yaml, 50, 50, stable.addr, canary.addr))
	canary.hits.Store(0)
	for range 400 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if h := canary.hits.Load(); h < 140 || h > 260 {
		t.Fatalf("after the shift the canary got %d of 400", h)
	}
	// A request is counted just after its response is written: give the
	// last one a moment.
	want := float64(before + canary.hits.Load())
	var after float64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if after = metricValue(t, e, "edge_agent_http_requests_total", "r", "canary", "200"); after == want || time.Now().After(deadline) {
			break
		}
	}
	if after != want {
		t.Fatalf("canary counter %v after %d + %d requests: reset by the reload?", after, before, canary.hits.Load())
	}
}

// Mirrored requests reach the shadow (Host marked -shadow, body intact);
// a slow shadow does not slow the primary.
func TestMirror(t *testing.T) {
	primary, shadow := newFlaky(t, "primary"), newFlaky(t, "shadow")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: p}], mirror: {cluster: s}}]
clusters: [{name: p, endpoints: [{address: %s}]}, {name: s, endpoints: [{address: %s}]}]
`, primary.addr, shadow.addr))
	c := client()
	if code, who, _, _, err := call(c, "POST", e.url("/m"), map[string]string{"Host": "app.test"}, strings.NewReader("payload")); err != nil || code != 200 || who != "primary" {
		t.Fatalf("%d from %q (%v)", code, who, err)
	}
	waitUntil(t, 5*time.Second, func() bool { return shadow.hits.Load() == 1 }, "mirror never arrived")
	if body, host := shadow.body(); body != "payload" || !strings.HasSuffix(host, "-shadow") {
		t.Fatalf("shadow got body %q host %q", body, host)
	}
	shadow.set(modeSlow)
	shadow.delay.Store(int64(2 * time.Second))
	start := time.Now()
	for range 20 {
		if code, _, _, _, err := call(c, "GET", e.url("/"), nil, nil); err != nil || code != 200 {
			t.Fatalf("primary: %d (%v)", code, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("20 primary requests took %v with a slow shadow", d)
	}
	waitUntil(t, 5*time.Second, func() bool { return metricValue(t, e, "edge_agent_mirrored_requests_total", "r", "sent") >= 21 }, "mirrors not counted")
}

// Fault injection: aborts with the status for its share of requests;
// delays hold requests.
func TestFaultInjection(t *testing.T) {
	up := newFlaky(t, "u")
	yaml := `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], fault: %s}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, "{abort: {status: 503, percent: 50}}", up.addr))
	c := client()
	const n = 400
	aborted := 0
	for range n {
		code, _, _, h, _ := call(c, "GET", e.url("/"), nil, nil)
		if code == 503 {
			if h.Get("Edge-Agent-Reason") != "fault_injected" {
				t.Fatalf("503 reason %q", h.Get("Edge-Agent-Reason"))
			}
			aborted++
		}
	}
	if sigma := math.Sqrt(0.25 * n); math.Abs(float64(aborted)-n/2) > 4*sigma {
		t.Fatalf("%d of %d aborted, want half ± %.0f", aborted, n, 4*sigma)
	}
	if int(up.hits.Load()) != n-aborted {
		t.Fatalf("upstream saw %d, want %d", up.hits.Load(), n-aborted)
	}
	e.reload(t, fmt.Sprintf(yaml, "{delay: {duration: 200ms, percent: 100}}", up.addr))
	start := time.Now()
	if code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil); code != 200 || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("delayed request: %d after %v", code, time.Since(start))
	}
}

// Chaos: three endpoints, one killed and later restarted while a client
// sends a steady stream of GETs. With retries and outlier detection on,
// the client sees no errors: a request in flight on the killed endpoint
// is reset and retried on another, new connections to it are refused and
// retried, and after 3 connect failures it is ejected.
func TestChaosKillAndRestartEndpoint(t *testing.T) {
	fs := []*flaky{newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "c")}
	for _, f := range fs {
		f.set(modeSlow)
		f.delay.Store(int64(2 * time.Millisecond))
	}
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 5s, backends: [{cluster: c}], retry: {attempts: 2, on: [connect-failure, reset, gateway-error]}}]
clusters: [{name: c, outlierDetection: {consecutiveConnectFailures: 3, baseEjectionTime: 500ms}, endpoints: [{address: %s}, {address: %s}, {address: %s}]}]
`, fs[0].addr, fs[1].addr, fs[2].addr))
	c := client()
	var errs, total int
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, _, _, err := call(c, "GET", e.url("/"), nil, nil)
				mu.Lock()
				total++
				if err != nil || code != 200 {
					errs++
					t.Logf("error: %d %v", code, err)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	fs[1].stop()
	time.Sleep(1500 * time.Millisecond)
	fs[1].start()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d errors; retries %v", total, errs, metricValue(t, e, "edge_agent_retries_total", "r", "attempted"))
	if total < 200 {
		t.Fatalf("only %d requests", total)
	}
	if errs > 0 {
		t.Fatalf("%d of %d requests failed", errs, total)
	}
	before := fs[1].hits.Load()
	for range 30 {
		call(c, "GET", e.url("/"), nil, nil)
	}
	if fs[1].hits.Load() == before {
		t.Fatal("the restarted endpoint got no traffic")
	}
}

// max_retries: with one retry in flight, another failed attempt is not
// retried; its answer goes back as is and the breaker counts it.
func TestCircuitBreakerMaxRetries(t *testing.T) {
	bad, hang := newFlaky(t, "bad"), newFlaky(t, "hang")
	bad.set(modeFail)
	hang.set(modeHang)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, timeout: 10s, backends: [{cluster: c}], retry: {attempts: 1, on: [gateway-error]}}]
clusters: [{name: c, lbPolicy: round_robin, circuitBreaker: {maxRetries: 1}, endpoints: [{address: %s}, {address: %s}]}]
`, bad.addr, hang.addr))
	c := client()
	done := make(chan int, 1)
	go func() { // bad, then its retry hangs on the other endpoint
		code, _, _, _, _ := call(c, "GET", e.url("/"), nil, nil)
		done <- code
	}()
	waitUntil(t, 5*time.Second, func() bool { return hang.hits.Load() == 1 }, "the first retry never reached the hanging endpoint")
	var code int
	var h http.Header
	for range 4 { // round robin: some of these start on the failing endpoint
		code, _, _, h, _ = call(c, "GET", e.url("/"), nil, nil)
		if code == 503 {
			break
		}
	}
	if code != 503 || h.Get("Edge-Agent-Attempts") != "1" {
		t.Fatalf("while a retry is in flight: %d attempts %q, want the failed attempt's 503 unretried", code, h.Get("Edge-Agent-Attempts"))
	}
	if v := metricValue(t, e, "edge_agent_circuit_breaker_overflows_total", "c", "max_retries"); v < 1 {
		t.Fatalf("max_retries overflows %v", v)
	}
	hang.unblock()
	if code := <-done; code != 200 {
		t.Fatalf("retried request: %d", code)
	}
}
