package agent_test

// End-to-end tests of the standalone agent over real sockets: real HTTP
// backends on 127.0.0.1, the agent started with agent.Run on a config file in
// a temporary directory, and plain net/http clients.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/agent"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/proxy"
)

// TestReload50TimesNoFailedRequests rewrites the config 50 times while
// clients send requests continuously, and checks that no request fails and
// that every response comes from one config version as a whole (the backend
// and the response header agree).
func TestReload50TimesNoFailedRequests(t *testing.T) {
	ba := newBackend(t, "a", nil)
	bb := newBackend(t, "b", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr, "b": bb.addr},
	}
	// Version v routes to backend a when v is even, b when odd, and says
	// which version it is in a response header.
	version := func(v int) string {
		q := p
		cluster := "a"
		if v%2 == 1 {
			cluster = "b"
		}
		q.Routes = []routeParams{{Name: "main", Prefix: "/", Cluster: cluster,
			SetHeader: [2]string{"X-Config-Version", strconv.Itoa(v)}}}
		return q.yaml()
	}
	h := startAgent(t, version(0), startOpts{})
	gen0 := h.a.Snapshot().Generation
	url := h.proxyURL("/hello")

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		total     atomic.Int64
		failed    atomic.Int64
		mismatch  atomic.Int64
		byBackend [2]atomic.Int64
		mu        sync.Mutex
		firstErrs []string
		versions  = map[int]bool{}
	)
	fail := func(counter *atomic.Int64, format string, args ...any) {
		counter.Add(1)
		mu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	worker := func(c *http.Client) {
		defer wg.Done()
		for !stop.Load() {
			total.Add(1)
			r, err := get(c, url)
			if err != nil {
				fail(&failed, "transport error: %v", err)
				continue
			}
			if r.status != http.StatusOK {
				fail(&failed, "status %d (reason %q): %q", r.status, r.header.Get(proxy.ReasonHeader), r.body)
				continue
			}
			v, err := strconv.Atoi(r.header.Get("X-Config-Version"))
			if err != nil {
				fail(&mismatch, "bad X-Config-Version %q", r.header.Get("X-Config-Version"))
				continue
			}
			want := "a"
			if v%2 == 1 {
				want = "b"
			}
			got := r.header.Get("X-Backend")
			if got != want || r.body != got+"\n" {
				fail(&mismatch, "version %d answered by backend %q (body %q), want %q", v, got, r.body, want)
				continue
			}
			byBackend[v%2].Add(1)
			mu.Lock()
			versions[v] = true
			mu.Unlock()
		}
	}
	keepAlive := newClient(true)
	for range 4 {
		wg.Add(1)
		go worker(keepAlive)
	}
	for range 2 {
		wg.Add(1)
		go worker(newClient(false)) // a new connection per request
	}
	defer func() { stop.Store(true); wg.Wait() }()

	routeVersion := func() string {
		return h.a.Snapshot().Config.Routes[0].ResponseHeaders.Set[0].Value
	}
	watched := 0
	start := time.Now()
	for v := 1; v <= 50; v++ {
		h.write(version(v))
		if v%10 == 5 {
			// Leave this one to the file watcher.
			if !waitFor(5*time.Second, func() bool { return routeVersion() == strconv.Itoa(v) }) {
				t.Fatalf("file watcher did not load version %d within 5s", v)
			}
			watched++
		} else if err := h.a.Reload(); err != nil {
			t.Fatalf("Reload %d: %v", v, err)
		}
		if got := routeVersion(); got != strconv.Itoa(v) {
			t.Fatalf("after reload %d the live route sets version %s", v, got)
		}
		time.Sleep(15 * time.Millisecond)
	}
	reloadTime := time.Since(start)
	time.Sleep(150 * time.Millisecond) // traffic on the final version
	stop.Store(true)
	wg.Wait()

	gen := h.a.Snapshot().Generation
	t.Logf("%d requests during %v of reloads: %d failed, %d inconsistent; backend a %d, b %d; %d versions seen; generation %d → %d (%d via file watch only)",
		total.Load(), reloadTime.Round(time.Millisecond), failed.Load(), mismatch.Load(),
		byBackend[0].Load(), byBackend[1].Load(), len(versions), gen0, gen, watched)
	for _, e := range firstErrs {
		t.Log("  ", e)
	}
	if failed.Load() != 0 || mismatch.Load() != 0 {
		t.Errorf("%d of %d requests failed and %d were inconsistent", failed.Load(), total.Load(), mismatch.Load())
	}
	if byBackend[0].Load() == 0 || byBackend[1].Load() == 0 || ba.Hits() == 0 || bb.Hits() == 0 {
		t.Errorf("both backends should get traffic: client saw a=%d b=%d, backends counted a=%d b=%d",
			byBackend[0].Load(), byBackend[1].Load(), ba.Hits(), bb.Hits())
	}
	if total.Load() < 100 {
		t.Errorf("only %d requests were sent during the reloads; the test proves little", total.Load())
	}
	if len(versions) < 10 {
		t.Errorf("responses came from only %d config versions; reloads did not take effect under traffic", len(versions))
	}
	if gen-gen0 < 50 {
		t.Errorf("generation advanced by %d, want ≥ 50", gen-gen0)
	}
	r := mustGet(t, newClient(false), url)
	if r.status != 200 || r.header.Get("X-Config-Version") != "50" || r.header.Get("X-Backend") != "a" {
		t.Errorf("after the last reload: status %d, version %q, backend %q; want 200, 50, a",
			r.status, r.header.Get("X-Config-Version"), r.header.Get("X-Backend"))
	}
	m := h.scrape()
	if v := mustFind(t, m, "edge_agent_config_reload_errors_total", nil); v != 0 {
		t.Errorf("edge_agent_config_reload_errors_total = %v, want 0 (a reload read a partial file?)", v)
	}
	if v := mustFind(t, m, "edge_agent_config_reloads_total", map[string]string{"result": "success"}); v < 50 {
		t.Errorf("edge_agent_config_reloads_total{result=success} = %v, want ≥ 50", v)
	}
	if v := mustFind(t, m, "edge_agent_config_generation", nil); uint64(v) != h.a.Snapshot().Generation {
		t.Errorf("edge_agent_config_generation = %v, want %d", v, h.a.Snapshot().Generation)
	}
}

// TestInvalidReloadKeepsOldConfig rejects a config with a dangling cluster
// reference, keeps serving the old one, counts the error, and accepts the
// fixed file afterwards.
func TestInvalidReloadKeepsOldConfig(t *testing.T) {
	ba := newBackend(t, "a", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr},
		Routes:     []routeParams{{Name: "web", Prefix: "/", Cluster: "a", SetHeader: [2]string{"X-Version", "1"}}},
	}
	h := startAgent(t, p.yaml(), startOpts{hidden: true})
	// A new connection per request: this test is about which config is live,
	// not about connection reuse (see TestReloadReachesIdleKeepAliveConnections).
	c := newClient(false)
	gen0 := h.debugConfig().Generation
	if gen0 != 1 {
		t.Fatalf("initial generation = %d, want 1", gen0)
	}

	broken := p
	broken.Routes = []routeParams{{Name: "web", Prefix: "/", Cluster: "missing", SetHeader: [2]string{"X-Version", "2"}}}
	h.write(broken.yaml())
	err := h.a.Reload()
	if err == nil {
		t.Fatal("Reload of a config with a dangling cluster reference succeeded")
	}
	if !strings.Contains(err.Error(), "routes[0].backends[0].cluster") {
		t.Errorf("Reload error does not name the field path routes[0].backends[0].cluster: %v", err)
	}
	var fe config.Errors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Path != "routes[0].backends[0].cluster" {
		t.Errorf("Reload error = %#v, want exactly one config.FieldError at routes[0].backends[0].cluster", err)
	}

	r := mustGet(t, c, h.proxyURL("/x"))
	if r.status != 200 || r.body != "a\n" || r.header.Get("X-Version") != "1" {
		t.Errorf("after the rejected reload: status %d body %q X-Version %q; want the old route (200, a, 1)",
			r.status, r.body, r.header.Get("X-Version"))
	}
	m := h.scrape()
	if v := mustFind(t, m, "edge_agent_config_reload_errors_total", nil); v != 1 {
		t.Errorf("edge_agent_config_reload_errors_total = %v, want 1", v)
	}
	if v := mustFind(t, m, "edge_agent_config_reloads_total", map[string]string{"result": "error"}); v != 1 {
		t.Errorf("edge_agent_config_reloads_total{result=error} = %v, want 1", v)
	}
	if v := mustFind(t, m, "edge_agent_config_generation", nil); v != float64(gen0) {
		t.Errorf("edge_agent_config_generation = %v, want %d", v, gen0)
	}
	if g := h.debugConfig().Generation; g != gen0 {
		t.Errorf("/debug/config generation = %d after a rejected reload, want %d", g, gen0)
	}
	if r := mustGet(t, c, h.adminURL("/readyz")); r.status != 200 {
		t.Errorf("/readyz = %d after a rejected reload, want 200", r.status)
	}

	// A config that validates but cannot be applied (its listener address is
	// taken) is rejected whole too, and the old listener keeps serving.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	unbindable := strings.Replace(p.yaml(), fmt.Sprintf("127.0.0.1:%d\n    protocol", p.ListenPort),
		taken.Addr().String()+"\n    protocol", 1)
	h.write(unbindable)
	if err := h.a.Reload(); err == nil {
		t.Error("Reload onto an address in use succeeded")
	} else if !strings.Contains(err.Error(), `listener "http"`) {
		t.Errorf("Reload error does not name the listener: %v", err)
	}
	if r := mustGet(t, newClient(false), h.proxyURL("/x")); r.status != 200 || r.body != "a\n" {
		t.Errorf("after the unbindable reload: status %d body %q; want 200 a", r.status, r.body)
	}
	if v := mustFind(t, h.scrape(), "edge_agent_config_reload_errors_total", nil); v != 2 {
		t.Errorf("edge_agent_config_reload_errors_total = %v, want 2", v)
	}
	if g := h.debugConfig().Generation; g != gen0 {
		t.Errorf("/debug/config generation = %d after a rejected reload, want %d", g, gen0)
	}

	fixed := p
	fixed.Routes = []routeParams{{Name: "web-fixed", Prefix: "/", Cluster: "a", SetHeader: [2]string{"X-Version", "3"}}}
	h.write(fixed.yaml())
	if err := h.a.Reload(); err != nil {
		t.Fatalf("Reload of the fixed config: %v", err)
	}
	dc := h.debugConfig()
	if dc.Generation != gen0+1 {
		t.Errorf("generation after the fixed reload = %d, want %d", dc.Generation, gen0+1)
	}
	if len(dc.Config.Routes) != 1 || dc.Config.Routes[0].Name != "web-fixed" {
		t.Errorf("/debug/config routes = %+v, want [web-fixed]", dc.Config.Routes)
	}
	if r := mustGet(t, c, h.proxyURL("/x")); r.status != 200 || r.header.Get("X-Version") != "3" {
		t.Errorf("after the fixed reload: status %d X-Version %q; want 200, 3", r.status, r.header.Get("X-Version"))
	}
	m = h.scrape()
	if v := mustFind(t, m, "edge_agent_config_reload_errors_total", nil); v != 2 {
		t.Errorf("edge_agent_config_reload_errors_total = %v after a good reload, want still 2", v)
	}
	if v := mustFind(t, m, "edge_agent_config_reloads_total", map[string]string{"result": "success"}); v != 1 {
		t.Errorf("edge_agent_config_reloads_total{result=success} = %v, want 1", v)
	}
}

// TestReloadReachesIdleKeepAliveConnections sends a request on a keep-alive
// connection, reloads while the connection is idle, and sends the next
// request on the same connection: it must be routed by the new config.
func TestReloadReachesIdleKeepAliveConnections(t *testing.T) {
	ba := newBackend(t, "a", nil)
	bb := newBackend(t, "b", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr, "b": bb.addr},
		Routes:     []routeParams{{Name: "web", Prefix: "/", Cluster: "a", SetHeader: [2]string{"X-Version", "1"}}},
	}
	h := startAgent(t, p.yaml(), startOpts{hidden: true})
	c := newClient(true)
	var reused []bool
	trace := func() *http.Request {
		req, err := http.NewRequest("GET", h.proxyURL("/x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = append(reused, ci.Reused) },
		}))
	}
	do := func() (status int, version, body string) {
		resp, err := c.Do(trace())
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET body: %v", err)
		}
		return resp.StatusCode, resp.Header.Get("X-Version"), string(b)
	}
	if st, v, body := do(); st != 200 || v != "1" || body != "a\n" {
		t.Fatalf("before reload: %d %q %q", st, v, body)
	}

	p.Routes = []routeParams{{Name: "web", Prefix: "/", Cluster: "b", SetHeader: [2]string{"X-Version", "2"}}}
	h.write(p.yaml())
	if err := h.a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	st, v, body := do()
	if len(reused) != 2 || !reused[1] {
		t.Fatalf("the second request did not reuse the keep-alive connection (reused: %v); cannot test", reused)
	}
	if st != 200 || v != "2" || body != "b\n" {
		t.Errorf("first request on a connection that was idle during the reload: status %d, X-Version %q, body %q; "+
			"want 200, 2, b (it was routed by the previous config)", st, v, body)
	}
	// The request after that one is routed by the new config in any case.
	if st, v, body := do(); st != 200 || v != "2" || body != "b\n" {
		t.Errorf("second request after the reload: status %d, X-Version %q, body %q; want 200, 2, b", st, v, body)
	}
}

// TestFileWatchReload changes the file on disk without calling Reload: the
// watcher must pick up an editor-style rename and an in-place rewrite.
func TestFileWatchReload(t *testing.T) {
	ba := newBackend(t, "a", nil)
	bb := newBackend(t, "b", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr, "b": bb.addr},
		Routes:     []routeParams{{Name: "old", Prefix: "/old", Cluster: "a"}},
	}
	h := startAgent(t, p.yaml(), startOpts{})
	c := newClient(false)
	gen0 := h.debugConfig().Generation
	if r := mustGet(t, c, h.proxyURL("/new")); r.status != 404 {
		t.Fatalf("/new before the change: status %d, want 404", r.status)
	}

	// Rename over the file, as editors save.
	p.Routes = append(p.Routes, routeParams{Name: "new", Prefix: "/new", Cluster: "b"})
	h.write(p.yaml())
	var gen uint64
	if !waitFor(5*time.Second, func() bool { gen = h.debugConfig().Generation; return gen > gen0 }) {
		t.Fatalf("generation still %d 5s after renaming a new config into place", gen0)
	}
	if r := mustGet(t, c, h.proxyURL("/new")); r.status != 200 || r.body != "b\n" {
		t.Errorf("/new after the watched reload: status %d body %q, want 200 b", r.status, r.body)
	}
	if r := mustGet(t, c, h.proxyURL("/old")); r.status != 200 || r.body != "a\n" {
		t.Errorf("/old after the watched reload: status %d body %q, want 200 a", r.status, r.body)
	}

	// Rewrite in place (truncate + write), as `echo > file` does.
	gen1 := h.debugConfig().Generation
	p.Routes = append(p.Routes, routeParams{Name: "newer", Prefix: "/newer", Cluster: "a"})
	if err := os.WriteFile(h.file, []byte(p.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	var r result
	if !waitFor(5*time.Second, func() bool {
		r = mustGet(t, c, h.proxyURL("/newer"))
		return r.status == 200
	}) {
		t.Fatalf("/newer still answers %d (%s) 5s after rewriting the file in place", r.status, r.header.Get(proxy.ReasonHeader))
	}
	if g := h.debugConfig().Generation; g <= gen1 {
		t.Errorf("generation %d after the in-place rewrite, want > %d", g, gen1)
	}
	if v := mustFind(t, h.scrape(), "edge_agent_config_reload_errors_total", nil); v != 0 {
		t.Errorf("edge_agent_config_reload_errors_total = %v, want 0", v)
	}
}

// TestFileWatchLiveWhenReady changes the file the moment Run reports ready:
// the watcher must already be watching (regression: it used to be set up in
// a goroutine after Ready, and about half of such changes were lost).
func TestFileWatchLiveWhenReady(t *testing.T) {
	ba := newBackend(t, "a", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr},
		Routes:     []routeParams{{Name: "old", Prefix: "/old", Cluster: "a"}},
	}
	for i := range 5 {
		h := startAgent(t, p.yaml(), startOpts{})
		gen0 := h.a.Snapshot().Generation
		q := p
		q.Routes = append(q.Routes, routeParams{Name: "new", Prefix: "/new", Cluster: "a"})
		h.write(q.yaml())
		if !waitFor(3*time.Second, func() bool { return h.a.Snapshot().Generation > gen0 }) {
			t.Fatalf("start %d: a change written right after Ready was never loaded", i)
		}
		if err := h.stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSIGHUPReload changes a file the watcher cannot see and checks that
// SIGHUP, and only SIGHUP, loads it.
func TestSIGHUPReload(t *testing.T) {
	ba := newBackend(t, "a", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr},
		Routes:     []routeParams{{Name: "old", Prefix: "/old", Cluster: "a"}},
	}
	h := startAgent(t, p.yaml(), startOpts{hidden: true})
	c := newClient(false)
	gen0 := h.debugConfig().Generation

	p.Routes = append(p.Routes, routeParams{Name: "new", Prefix: "/new", Cluster: "a"})
	h.write(p.yaml())
	// Longer than the watcher's settle delay: nothing may reload by itself.
	time.Sleep(400 * time.Millisecond)
	if g := h.debugConfig().Generation; g != gen0 {
		t.Fatalf("generation changed to %d without SIGHUP; the test cannot isolate the signal", g)
	}
	if r := mustGet(t, c, h.proxyURL("/new")); r.status != 404 {
		t.Fatalf("/new before SIGHUP: status %d, want 404", r.status)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var r result
	if !waitFor(5*time.Second, func() bool {
		r = mustGet(t, c, h.proxyURL("/new"))
		return r.status == 200
	}) {
		t.Fatalf("/new still answers %d 5s after SIGHUP", r.status)
	}
	if r.body != "a\n" {
		t.Errorf("/new body %q, want a", r.body)
	}
	if g := h.debugConfig().Generation; g != gen0+1 {
		t.Errorf("generation after SIGHUP = %d, want %d", g, gen0+1)
	}
}

// TestInFlightRequestFinishesOnOldConfig removes a route (and its cluster)
// while a request on it waits for its backend: the request still completes
// on the old config, and new requests get 404 no_route.
func TestInFlightRequestFinishesOnOldConfig(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, _ *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		fmt.Fprint(w, "slow-done\n")
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	fast := newBackend(t, "fast", nil)
	p := cfgParams{
		AdminPort:  freePort(t),
		ListenPort: freePort(t),
		Clusters:   map[string]string{"slow": slow.addr, "fast": fast.addr},
		Routes: []routeParams{
			{Name: "slow", Prefix: "/slow", Cluster: "slow", SetHeader: [2]string{"X-Route-Version", "1"}},
			{Name: "fast", Prefix: "/fast", Cluster: "fast"},
		},
	}
	h := startAgent(t, p.yaml(), startOpts{hidden: true})
	gen0 := h.a.Snapshot().Generation

	type res struct {
		r   result
		err error
	}
	inflight := make(chan res, 1)
	go func() {
		r, err := get(newClient(false), h.proxyURL("/slow/x"))
		inflight <- res{r, err}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach its backend")
	}

	p.Routes = p.Routes[1:]
	p.Clusters = map[string]string{"fast": fast.addr}
	h.write(p.yaml())
	if err := h.a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if g := h.a.Snapshot().Generation; g != gen0+1 {
		t.Fatalf("generation %d, want %d", g, gen0+1)
	}
	c := newClient(false)
	r := mustGet(t, c, h.proxyURL("/slow/x"))
	if r.status != 404 || r.header.Get(proxy.ReasonHeader) != "no_route" {
		t.Errorf("new request to the removed route: status %d %s=%q, want 404 no_route",
			r.status, proxy.ReasonHeader, r.header.Get(proxy.ReasonHeader))
	}
	if r := mustGet(t, c, h.proxyURL("/fast")); r.status != 200 || r.body != "fast\n" {
		t.Errorf("/fast: status %d body %q, want 200 fast", r.status, r.body)
	}
	select {
	case got := <-inflight:
		t.Fatalf("the in-flight request ended before its backend answered: %+v", got)
	default:
	}

	close(release)
	select {
	case got := <-inflight:
		if got.err != nil {
			t.Fatalf("in-flight request failed: %v", got.err)
		}
		if got.r.status != 200 || got.r.body != "slow-done\n" {
			t.Errorf("in-flight request: status %d body %q, want 200 slow-done", got.r.status, got.r.body)
		}
		if v := got.r.header.Get("X-Route-Version"); v != "1" {
			t.Errorf("in-flight request X-Route-Version = %q, want 1 (the old route's response header)", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request did not finish after its backend answered")
	}
}

// TestGracefulShutdownDrains cancels Run's context with a request in flight.
func TestGracefulShutdownDrains(t *testing.T) {
	t.Run("in-flight request completes", func(t *testing.T) {
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		slow := newBackend(t, "slow", func(w http.ResponseWriter, _ *http.Request) {
			started <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			fmt.Fprint(w, "slow-done\n")
		})
		var releaseOnce sync.Once
		releaseNow := func() { releaseOnce.Do(func() { close(release) }) }
		defer releaseNow()
		p := cfgParams{
			AdminPort:    freePort(t),
			ListenPort:   freePort(t),
			DrainTimeout: "5s",
			Clusters:     map[string]string{"slow": slow.addr},
			Routes:       []routeParams{{Name: "slow", Prefix: "/", Cluster: "slow"}},
		}
		h := startAgent(t, p.yaml(), startOpts{hidden: true})
		listenAddr := h.a.Proxy().Addr("http").String()
		adminAddr := h.a.AdminAddr().String()
		c := newClient(true)

		type res struct {
			r   result
			err error
		}
		inflight := make(chan res, 1)
		go func() {
			r, err := get(c, h.proxyURL("/slow"))
			inflight <- res{r, err}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the slow request did not reach its backend")
		}

		stopped := make(chan error, 1)
		stopStart := time.Now()
		go func() { stopped <- h.stop(10 * time.Second) }()

		// While draining: new connections are refused, /readyz says 503,
		// and the request in flight is still waiting.
		var derr error
		if !waitFor(2*time.Second, func() bool { derr = dialRefused(listenAddr); return derr == nil }) {
			t.Errorf("listener still accepts during drain: %v", derr)
		}
		if r, err := get(newClient(false), "http://"+adminAddr+"/readyz"); err != nil || r.status != http.StatusServiceUnavailable {
			t.Errorf("/readyz during drain: %+v %v, want 503", r.status, err)
		}
		select {
		case got := <-inflight:
			t.Fatalf("in-flight request ended before its backend answered: %+v", got)
		case err := <-stopped:
			t.Fatalf("Run returned (%v) with a request in flight and drain time left", err)
		default:
		}

		time.Sleep(300 * time.Millisecond) // the backend takes a while
		releaseNow()
		select {
		case got := <-inflight:
			if got.err != nil {
				t.Fatalf("in-flight request failed during drain: %v", got.err)
			}
			if got.r.status != 200 || got.r.body != "slow-done\n" {
				t.Errorf("in-flight request: status %d body %q, want 200 slow-done", got.r.status, got.r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("in-flight request did not finish during drain")
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			took := time.Since(stopStart)
			t.Logf("Run returned %v after cancel", took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("Run took %v, longer than drainTimeout 5s", took)
			}
		case <-time.After(6 * time.Second):
			t.Fatal("Run did not return within drainTimeout after the last request finished")
		}
		if err := dialRefused(listenAddr); err != nil {
			t.Errorf("proxy listener after shutdown: %v", err)
		}
		if err := dialRefused(adminAddr); err != nil {
			t.Errorf("admin listener after shutdown: %v", err)
		}
	})

	t.Run("drain timeout cuts a stuck request", func(t *testing.T) {
		started := make(chan struct{}, 1)
		done := make(chan struct{})
		defer close(done)
		slow := newBackend(t, "stuck", func(w http.ResponseWriter, _ *http.Request) {
			started <- struct{}{}
			select {
			case <-time.After(5 * time.Second):
			case <-done:
			}
			fmt.Fprint(w, "too-late\n")
		})
		p := cfgParams{
			AdminPort:    freePort(t),
			ListenPort:   freePort(t),
			DrainTimeout: "300ms",
			Clusters:     map[string]string{"stuck": slow.addr},
			Routes:       []routeParams{{Name: "stuck", Prefix: "/", Cluster: "stuck"}},
		}
		h := startAgent(t, p.yaml(), startOpts{hidden: true})
		listenAddr := h.a.Proxy().Addr("http").String()

		type res struct {
			r   result
			err error
		}
		inflight := make(chan res, 1)
		go func() {
			r, err := get(newClient(false), h.proxyURL("/stuck"))
			inflight <- res{r, err}
		}()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the request did not reach its backend")
		}
		start := time.Now()
		err := h.stop(10 * time.Second)
		took := time.Since(start)
		t.Logf("Run returned %v after cancel (drainTimeout 300ms, backend needs 5s)", took.Round(time.Millisecond))
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("Run took %v to return; drainTimeout is 300ms", took)
		}
		select {
		case got := <-inflight:
			if got.err == nil {
				t.Errorf("the stuck request got a response (status %d %s=%q body %q); the drain deadline should close its connection",
					got.r.status, proxy.ReasonHeader, got.r.header.Get(proxy.ReasonHeader), got.r.body)
			} else {
				t.Logf("stuck request failed as expected: %v", got.err)
			}
		case <-time.After(2 * time.Second):
			t.Error("the stuck request's connection was not closed at the drain deadline")
		}
		if err := dialRefused(listenAddr); err != nil {
			t.Errorf("proxy listener after shutdown: %v", err)
		}
	})

	// Connections with no request in progress must not hold up shutdown:
	// an idle keep-alive connection, and one that was opened but has not
	// sent anything yet (browsers and HTTP clients pre-connect).
	for _, tc := range []struct {
		name string
		open func(t *testing.T, h *harness)
	}{
		{"idle keep-alive connection", func(t *testing.T, h *harness) {
			c := newClient(true)
			if r := mustGet(t, c, h.proxyURL("/")); r.status != 200 {
				t.Fatalf("GET: %d", r.status)
			}
		}},
		{"connection with no request yet", func(t *testing.T, h *harness) {
			nc, err := net.Dial("tcp", h.a.Proxy().Addr("http").String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			time.Sleep(50 * time.Millisecond) // let the proxy accept it
		}},
	} {
		t.Run(tc.name+" does not delay shutdown", func(t *testing.T) {
			ba := newBackend(t, "a", nil)
			p := cfgParams{
				AdminPort:    freePort(t),
				ListenPort:   freePort(t),
				DrainTimeout: "5s",
				Clusters:     map[string]string{"a": ba.addr},
				Routes:       []routeParams{{Name: "web", Prefix: "/", Cluster: "a"}},
			}
			h := startAgent(t, p.yaml(), startOpts{hidden: true})
			tc.open(t, h)
			start := time.Now()
			if err := h.stop(10 * time.Second); err != nil {
				t.Fatalf("Run: %v", err)
			}
			took := time.Since(start)
			t.Logf("Run returned %v after cancel", took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("Run took %v with nothing in flight; the %s was waited on until the drain deadline (5s)", took, tc.name)
			}
		})
	}
}

// TestRunFailsCleanly: when Run cannot start it returns an error, never
// signals Ready, and leaves nothing bound.
func TestRunFailsCleanly(t *testing.T) {
	ba := newBackend(t, "a", nil)
	run := func(t *testing.T, cfg string) (readied bool, err error) {
		path := t.TempDir() + "/config.yaml"
		writeAtomic(t, path, cfg)
		ready := make(chan *agent.Agent, 1)
		done := make(chan error, 1)
		go func() {
			done <- agent.Run(t.Context(), agent.Options{ConfigPath: path, Log: quiet(), AccessLog: quiet(), Ready: ready})
		}()
		select {
		case err := <-done:
			return len(ready) > 0, err
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return")
			return false, nil
		}
	}

	t.Run("invalid config", func(t *testing.T) {
		p := cfgParams{AdminPort: freePort(t), ListenPort: freePort(t),
			Clusters: map[string]string{"a": ba.addr},
			Routes:   []routeParams{{Name: "web", Prefix: "/", Cluster: "nope"}}}
		ready, err := run(t, p.yaml())
		if err == nil || !strings.Contains(err.Error(), "routes[0].backends[0].cluster") {
			t.Errorf("Run = %v, want an error naming routes[0].backends[0].cluster", err)
		}
		if ready {
			t.Error("Ready fired for an invalid config")
		}
		if err := dialRefused(fmt.Sprintf("127.0.0.1:%d", p.ListenPort)); err != nil {
			t.Errorf("listener after a failed start: %v", err)
		}
	})

	t.Run("admin address in use", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		p := cfgParams{ListenPort: freePort(t),
			Clusters: map[string]string{"a": ba.addr},
			Routes:   []routeParams{{Name: "web", Prefix: "/", Cluster: "a"}}}
		cfg := "admin:\n  address: " + taken.Addr().String() + "\n" + p.yaml()
		ready, err := run(t, cfg)
		if err == nil || !strings.Contains(err.Error(), "admin listener") {
			t.Errorf("Run = %v, want an admin listener error", err)
		}
		if ready {
			t.Error("Ready fired although the admin listener failed")
		}
		// The proxy listener was bound before the admin one failed; it must
		// be released, or a retry (or the next test) cannot bind it.
		if err := dialRefused(fmt.Sprintf("127.0.0.1:%d", p.ListenPort)); err != nil {
			t.Errorf("proxy listener after a failed start: %v", err)
		}
	})
}

// TestAdminEndpoints checks every admin endpoint over HTTP.
func TestAdminEndpoints(t *testing.T) {
	ba := newBackend(t, "a", nil)
	adminPort := freePort(t)
	p := cfgParams{
		AdminPort:  adminPort,
		ListenPort: freePort(t),
		Clusters:   map[string]string{"a": ba.addr},
		Routes: []routeParams{
			{Name: "api", Prefix: "/api", Cluster: "a"},
			{Name: "web", Prefix: "/web", Cluster: "a"},
		},
	}
	h := startAgent(t, p.yaml(), startOpts{hidden: true})
	c := newClient(true)
	wantAdmin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	if got := h.a.AdminAddr().String(); got != wantAdmin {
		t.Errorf("AdminAddr = %s, want %s (admin.address from the file)", got, wantAdmin)
	}

	if r := mustGet(t, c, h.adminURL("/healthz")); r.status != 200 || r.body != "ok\n" {
		t.Errorf("/healthz: %d %q", r.status, r.body)
	}
	if r := mustGet(t, c, h.adminURL("/readyz")); r.status != 200 {
		t.Errorf("/readyz: %d %q", r.status, r.body)
	}

	if r := mustGet(t, c, h.proxyURL("/api/users")); r.status != 200 {
		t.Fatalf("proxied request: %d %q", r.status, r.body)
	}
	if r := mustGet(t, c, h.proxyURL("/nowhere")); r.status != 404 {
		t.Fatalf("unrouted request: %d %q", r.status, r.body)
	}
	// The proxy counts a request after it has sent the response, so the
	// client can get there first: wait for both series.
	var m []sample
	waitFor(2*time.Second, func() bool {
		m = h.scrape()
		_, err1 := find(m, "edge_agent_http_requests_total", map[string]string{"route": "api", "code": "200"})
		_, err2 := find(m, "edge_agent_http_requests_total", map[string]string{"route": "", "code": "404"})
		return err1 == nil && err2 == nil
	})
	if v := mustFind(t, m, "edge_agent_http_requests_total",
		map[string]string{"route": "api", "cluster": "a", "code": "200"}); v != 1 {
		t.Errorf(`edge_agent_http_requests_total{route="api",cluster="a",code="200"} = %v, want 1`, v)
	}
	if v := mustFind(t, m, "edge_agent_http_requests_total",
		map[string]string{"route": "", "cluster": "", "code": "404"}); v != 1 {
		t.Errorf(`edge_agent_http_requests_total{route="",cluster="",code="404"} = %v, want 1`, v)
	}
	if _, err := find(m, "edge_agent_http_requests_total", map[string]string{"route": "web"}); err == nil {
		t.Errorf("edge_agent_http_requests_total has a series for route web, which got no requests")
	}
	if v := mustFind(t, m, "edge_agent_config_generation", nil); v != 1 {
		t.Errorf("edge_agent_config_generation = %v, want 1", v)
	}
	if v := mustFind(t, m, "edge_agent_config_last_reload_success_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("edge_agent_config_last_reload_success_timestamp_seconds = %v, not recent", v)
	}

	dc := h.debugConfig()
	if dc.Generation != 1 {
		t.Errorf("/debug/config generation = %d, want 1", dc.Generation)
	}
	var names []string
	for _, r := range dc.Config.Routes {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"api", "web"}) {
		t.Errorf("/debug/config route names = %v, want [api web]", names)
	}
	if dc.Source != h.configPath {
		t.Errorf("/debug/config source = %q, want %q", dc.Source, h.configPath)
	}
	if dc.Config.Admin.Address != wantAdmin {
		t.Errorf("/debug/config admin.address = %q, want %q", dc.Config.Admin.Address, wantAdmin)
	}

	if r := mustGet(t, c, h.adminURL("/debug/pprof/")); r.status != 200 || !strings.Contains(r.body, "goroutine") {
		t.Errorf("/debug/pprof/: %d, body mentions goroutine: %v", r.status, strings.Contains(r.body, "goroutine"))
	}
	if r := mustGet(t, c, h.adminURL("/")); r.status != 200 || !strings.Contains(r.body, "/debug/config") {
		t.Errorf("admin index: %d", r.status)
	}
	if r := mustGet(t, c, h.adminURL("/nope")); r.status != 404 {
		t.Errorf("admin /nope: %d, want 404", r.status)
	}

	// admin.address cannot change on reload: the listener is bound once.
	moved := p
	moved.AdminPort = freePort(t)
	h.write(moved.yaml())
	if err := h.a.Reload(); err != nil {
		t.Fatalf("Reload with a new admin.address: %v", err)
	}
	if dc := h.debugConfig(); dc.Generation != 2 || dc.Config.Admin.Address != wantAdmin {
		t.Errorf("after reloading a new admin.address: generation %d, admin.address %q; want 2, %q (unchanged)",
			dc.Generation, dc.Config.Admin.Address, wantAdmin)
	}
}

// TestDefaultAdminAddress checks the default admin address without binding
// it: the parsed config carries 127.0.0.1:9901, and an agent started on such
// a config (with Options.AdminAddress overriding it, to avoid a port clash)
// serves admin on the override.
func TestDefaultAdminAddress(t *testing.T) {
	ba := newBackend(t, "a", nil)
	p := cfgParams{
		ListenPort: freePort(t), // AdminPort 0: no admin section at all
		Clusters:   map[string]string{"a": ba.addr},
		Routes:     []routeParams{{Name: "web", Prefix: "/", Cluster: "a"}},
	}
	if strings.Contains(p.yaml(), "admin") {
		t.Fatalf("config should omit admin:\n%s", p.yaml())
	}
	cfg, err := config.Parse([]byte(p.yaml()))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Admin.Address != "127.0.0.1:9901" || config.DefaultAdminAddress != "127.0.0.1:9901" {
		t.Errorf("default admin.address = %q (DefaultAdminAddress %q), want 127.0.0.1:9901",
			cfg.Admin.Address, config.DefaultAdminAddress)
	}

	override := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h := startAgent(t, p.yaml(), startOpts{hidden: true, adminAddress: override})
	if got := h.a.AdminAddr().String(); got != override {
		t.Errorf("AdminAddr = %s, want the Options.AdminAddress override %s", got, override)
	}
	if dc := h.debugConfig(); dc.Config.Admin.Address != override {
		t.Errorf("/debug/config admin.address = %q, want %q", dc.Config.Admin.Address, override)
	}
	if err := h.a.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if dc := h.debugConfig(); dc.Generation != 2 || dc.Config.Admin.Address != override {
		t.Errorf("after Reload: generation %d admin.address %q, want 2 and the override %q",
			dc.Generation, dc.Config.Admin.Address, override)
	}
}
