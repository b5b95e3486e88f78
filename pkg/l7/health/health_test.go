package health

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const (
	interval = 50 * time.Millisecond
	timeout  = 40 * time.Millisecond
)

func hc(typ config.HealthCheckType, rise, fall int) config.HealthCheck {
	return config.HealthCheck{
		Type:               typ,
		Path:               "/healthz",
		Interval:           config.Duration(interval),
		Timeout:            config.Duration(timeout),
		HealthyThreshold:   rise,
		UnhealthyThreshold: fall,
	}
}

// waitFor polls cond until it holds or fails the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// changes records onChange calls.
type changes struct {
	mu    sync.Mutex
	calls []bool
	hook  func(healthy bool) // run inside onChange, before recording
}

func (c *changes) onChange(healthy bool) {
	if c.hook != nil {
		c.hook(healthy)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, healthy)
}

// wait waits for as many calls as want holds and checks them.
func (c *changes) wait(t *testing.T, want ...bool) {
	t.Helper()
	waitFor(t, "onChange calls", func() bool { return len(c.get()) >= len(want) })
	if got := c.get(); !slices.Equal(got, want) {
		t.Fatalf("onChange calls %v, want %v", got, want)
	}
}

func (c *changes) get() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits for the log to hold want.
func waitLog(t *testing.T, logs *logBuf, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %s:\n%s", want, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newLog() (*slog.Logger, *logBuf) {
	b := &logBuf{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func hostPort(rawURL string) string {
	return strings.TrimPrefix(rawURL, "http://")
}

func TestHTTPThresholds(t *testing.T) {
	// phase 0: 200, phase 1: 503, phase 2: 200; served[phase] counts the
	// probes answered in each phase.
	var phase atomic.Int32
	var served [3]atomic.Int32
	var host, ua atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		host.Store(r.Host)
		ua.Store(r.Header.Get("User-Agent"))
		p := phase.Load()
		served[p].Add(1)
		if p == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	cfg := hc(config.HealthCheckHTTP, 2, 3)
	cfg.Host = "health.example"
	var ch changes
	var atFlip []int32 // served[phase] when onChange ran
	ch.hook = func(bool) { atFlip = append(atFlip, served[phase.Load()].Load()) }
	log, logs := newLog()
	c := Start(context.Background(), cfg, hostPort(srv.URL), nil, true, ch.onChange, log)
	defer c.Stop()

	waitFor(t, "a few passing probes", func() bool { return served[0].Load() >= 3 })
	if !c.Healthy() || len(ch.get()) != 0 {
		t.Fatalf("healthy=%v calls=%v after passing probes, want healthy and no calls", c.Healthy(), ch.get())
	}
	if h := host.Load(); h != "health.example" {
		t.Errorf("Host header %q, want health.example", h)
	}
	if u := ua.Load(); u != UserAgent {
		t.Errorf("User-Agent %q, want %q", u, UserAgent)
	}

	phase.Store(1)
	waitFor(t, "unhealthy", func() bool { return !c.Healthy() })
	waitFor(t, "more failing probes", func() bool { return served[1].Load() >= 6 })
	ch.wait(t, false)
	waitLog(t, logs, `reason="status 503"`)

	phase.Store(2)
	waitFor(t, "healthy again", func() bool { return c.Healthy() })
	waitFor(t, "more passing probes", func() bool { return served[2].Load() >= 4 })
	ch.wait(t, false, true)
	c.Stop()
	// Read atFlip only after Stop: the checker goroutine wrote it.
	if !slices.Equal(atFlip, []int32{3, 2}) {
		t.Errorf("probes seen in the phase when the state flipped: %v, want [3 2] (unhealthy, healthy thresholds)", atFlip)
	}
}

func TestHTTPExpectedStatuses(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusOK)
	var host atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()

	cfg := hc(config.HealthCheckHTTP, 1, 2)
	cfg.ExpectedStatuses = []int{204}
	addr := hostPort(srv.URL)
	var ch changes
	log, logs := newLog()
	c := Start(context.Background(), cfg, addr, nil, true, ch.onChange, log)
	defer c.Stop()
	waitFor(t, "unhealthy on 200 when 204 is expected", func() bool { return !c.Healthy() })
	waitLog(t, logs, `reason="status 200"`)
	if h := host.Load(); h != addr {
		t.Errorf("Host header %q, want the address %q when cfg.Host is empty", h, addr)
	}
	code.Store(http.StatusNoContent)
	waitFor(t, "healthy on 204", func() bool { return c.Healthy() })
	ch.wait(t, false, true)
}

func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			http.Redirect(w, r, "/ok", http.StatusFound)
		}
	}))
	defer srv.Close()
	c := Start(context.Background(), hc(config.HealthCheckHTTP, 1, 1), hostPort(srv.URL), nil, true, nil, nil)
	defer c.Stop()
	waitFor(t, "unhealthy on 302", func() bool { return !c.Healthy() })
}

func TestHTTPS(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := Start(context.Background(), hc(config.HealthCheckHTTP, 1, 1), strings.TrimPrefix(srv.URL, "https://"), tlsCfg, false, nil, nil)
	defer c.Stop()
	waitFor(t, "healthy over TLS", func() bool { return c.Healthy() })
	if hits.Load() == 0 {
		t.Fatal("no probe reached the server")
	}
}

func TestHTTPHang(t *testing.T) {
	var hung atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		select {
		case <-r.Context().Done(): // the checker gave up
		case <-time.After(10 * timeout):
		}
	}))
	defer srv.Close()
	var ch changes
	log, logs := newLog()
	c := Start(context.Background(), hc(config.HealthCheckHTTP, 2, 2), hostPort(srv.URL), nil, true, ch.onChange, log)
	defer c.Stop()
	waitFor(t, "unhealthy", func() bool { return !c.Healthy() })
	ch.wait(t, false)
	waitLog(t, logs, `reason="timeout after 40ms"`)
	n := hung.Load()
	waitFor(t, "more hanging probes", func() bool { return hung.Load() >= n+3 })
	ch.wait(t, false) // still exactly one call
}

func TestGRPC(t *testing.T) {
	const service = "echo.v1.Echo"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	hs := health.NewServer()
	serve := func(ln net.Listener) *grpc.Server {
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, hs)
		go func() { _ = s.Serve(ln) }()
		return s
	}
	srv := serve(ln)
	defer func() { srv.Stop() }()
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)

	cfg := hc(config.HealthCheckGRPC, 2, 2)
	cfg.Service = service
	var ch changes
	log, logs := newLog()
	c := Start(context.Background(), cfg, addr, nil, false, ch.onChange, log)
	defer c.Stop()

	waitFor(t, "healthy while SERVING", func() bool { return c.Healthy() })
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	waitFor(t, "unhealthy while NOT_SERVING", func() bool { return !c.Healthy() })
	waitLog(t, logs, "reason=NOT_SERVING")
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	waitFor(t, "healthy again", func() bool { return c.Healthy() })

	srv.Stop()
	waitFor(t, "unhealthy with the server stopped", func() bool { return !c.Healthy() })

	// The same port again: the client reconnects within about an interval.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	srv = serve(ln)
	waitFor(t, "healthy with the server back", func() bool { return c.Healthy() })
	ch.wait(t, true, false, true, false, true)
}

func TestGRPCOverTLS(t *testing.T) {
	// Borrow httptest's certificate (valid for 127.0.0.1) and a client
	// config shaped like the cluster's (ALPN http/1.1).
	hs := httptest.NewTLSServer(http.NotFoundHandler())
	cert := hs.TLS.Certificates[0]
	clientTLS := hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	hs.Close()
	clientTLS.NextProtos = []string{"http/1.1"}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()

	c := Start(context.Background(), hc(config.HealthCheckGRPC, 1, 1), ln.Addr().String(), clientTLS, false, nil, nil)
	defer c.Stop()
	waitFor(t, "healthy over TLS", func() bool { return c.Healthy() })
}

func TestGRPCUnknownService(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()

	cfg := hc(config.HealthCheckGRPC, 1, 1)
	cfg.Service = "nope"
	log, logs := newLog()
	c := Start(context.Background(), cfg, ln.Addr().String(), nil, true, nil, log)
	defer c.Stop()
	waitFor(t, "unhealthy for an unknown service", func() bool { return !c.Healthy() })
	waitLog(t, logs, "NotFound")
}

// acceptAll accepts and closes connections until ln is closed.
func acceptAll(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		_ = conn.Close()
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go acceptAll(ln)

	var ch changes
	log, logs := newLog()
	c := Start(context.Background(), hc(config.HealthCheckTCP, 2, 2), addr, nil, false, ch.onChange, log)
	defer c.Stop()
	waitFor(t, "healthy while listening", func() bool { return c.Healthy() })

	_ = ln.Close()
	waitFor(t, "unhealthy with the listener closed", func() bool { return !c.Healthy() })
	waitLog(t, logs, `reason="connection refused"`)

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	defer func() { _ = ln.Close() }()
	go acceptAll(ln)
	waitFor(t, "healthy again", func() bool { return c.Healthy() })
	ch.wait(t, true, false, true)
}

func TestStop(t *testing.T) {
	var probes atomic.Int32
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := hostPort(srv.URL)

	// Stop while flips are due on every probe: no onChange once Stop returned.
	for i := range 5 {
		var stopped atomic.Bool
		var late atomic.Int32
		c := Start(context.Background(), hc(config.HealthCheckHTTP, 1, 1), addr, nil, true, func(bool) {
			if stopped.Load() {
				late.Add(1)
			}
		}, nil)
		failing.Store(i%2 == 0)
		base := probes.Load()
		waitFor(t, "a probe", func() bool { return probes.Load() > base })
		c.Stop()
		stopped.Store(true)
		c.Stop() // idempotent
		n := probes.Load()
		time.Sleep(4 * interval) // quiet period: nothing may happen in it
		if got := probes.Load(); got != n {
			t.Fatalf("round %d: %d probes after Stop returned", i, got-n)
		}
		if late.Load() != 0 {
			t.Fatalf("round %d: onChange called after Stop returned", i)
		}
	}
}

func TestStopConcurrentAndContextCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go acceptAll(ln)

	ctx, cancel := context.WithCancel(context.Background())
	c := Start(ctx, hc(config.HealthCheckTCP, 1, 1), ln.Addr().String(), nil, true, nil, nil)
	cancel()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("checker still running after its context was canceled")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(c.Stop)
	}
	wg.Wait()
	if !c.Healthy() {
		t.Error("state changed without a probe")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		httpSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		defer httpSrv.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ln.Close() }()
		go acceptAll(ln)
		gln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go func() { _ = gs.Serve(gln) }()
		defer gs.Stop()

		var cs []*Checker
		for range 10 {
			cs = append(cs,
				Start(context.Background(), hc(config.HealthCheckHTTP, 1, 1), hostPort(httpSrv.URL), nil, false, nil, nil),
				Start(context.Background(), hc(config.HealthCheckTCP, 1, 1), ln.Addr().String(), nil, false, nil, nil),
				Start(context.Background(), hc(config.HealthCheckGRPC, 1, 1), gln.Addr().String(), nil, false, nil, nil),
			)
		}
		waitFor(t, "all healthy", func() bool {
			for _, c := range cs {
				if !c.Healthy() {
					return false
				}
			}
			return true
		})
		for _, c := range cs {
			c.Stop()
		}
	}()
	var after int
	deadline := time.Now().Add(5 * time.Second)
	for after = runtime.NumGoroutine(); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestUnknownTypeFails(t *testing.T) {
	log, logs := newLog()
	c := Start(context.Background(), hc("udp", 1, 1), "127.0.0.1:1", nil, true, nil, log)
	defer c.Stop()
	waitFor(t, "unhealthy", func() bool { return !c.Healthy() })
	waitLog(t, logs, "unknown health check type")
}

func TestJitter(t *testing.T) {
	for _, iv := range []time.Duration{interval, 5 * time.Second, time.Hour} {
		for range 1000 {
			if d := firstDelay(iv); d < 0 || d > min(iv, time.Second)/2 {
				t.Fatalf("firstDelay(%v) = %v", iv, d)
			}
			if d := jitter(iv); d < iv-iv/10 || d > iv+iv/10 {
				t.Fatalf("jitter(%v) = %v", iv, d)
			}
		}
	}
}
