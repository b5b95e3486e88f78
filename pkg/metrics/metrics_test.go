package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// value returns the value of the counter, gauge or histogram sample count
// named name whose labels equal labels exactly; found is false if absent.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) (v float64, found bool) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			if len(mt.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range mt.GetLabel() {
				if want, ok := labels[lp.GetName()]; !ok || want != lp.GetValue() {
					continue next
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue(), true
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue(), true
			case mt.GetHistogram() != nil:
				return float64(mt.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func reqLabels(route, cluster, code string) map[string]string {
	return map[string]string{"route": route, "cluster": cluster, "code": code}
}

func TestRouteStatsObserveLabels(t *testing.T) {
	m := New()
	s := m.RouteStats("api", "backend")
	other := m.RouteStats("web", "backend")
	for range 3 {
		s.Observe(200, time.Millisecond)
	}
	s.Observe(404, time.Millisecond)
	s.Observe(503, 2*time.Second)
	s.Observe(503, time.Millisecond)
	other.Observe(200, time.Millisecond)

	for code, want := range map[string]float64{"200": 3, "404": 1, "503": 2} {
		if v, ok := value(t, m, "edge_agent_http_requests_total", reqLabels("api", "backend", code)); !ok || v != want {
			t.Errorf("requests_total{route=api,code=%s} = %v (found %v), want %v", code, v, ok, want)
		}
	}
	if v, ok := value(t, m, "edge_agent_http_requests_total", reqLabels("web", "backend", "200")); !ok || v != 1 {
		t.Errorf("requests_total{route=web,code=200} = %v, want 1", v)
	}
	if _, ok := value(t, m, "edge_agent_http_requests_total", reqLabels("web", "backend", "404")); ok {
		t.Error("a series for a code never observed exists")
	}
	if v, ok := value(t, m, "edge_agent_http_request_duration_seconds", map[string]string{"route": "api", "cluster": "backend"}); !ok || v != 6 {
		t.Errorf("duration sample count for api = %v, want 6", v)
	}
	// The 2s observation lands in the le=2.5 bucket but not le=1.
	mfs, _ := m.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "edge_agent_http_request_duration_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			isAPI := false
			for _, lp := range mt.GetLabel() {
				isAPI = isAPI || (lp.GetName() == "route" && lp.GetValue() == "api")
			}
			if !isAPI {
				continue
			}
			h := mt.GetHistogram()
			if got := h.GetSampleSum(); got < 2.004 || got > 2.006 {
				t.Errorf("duration sum %v, want 2.005", got)
			}
			for _, b := range h.GetBucket() {
				switch b.GetUpperBound() {
				case 1:
					if b.GetCumulativeCount() != 5 {
						t.Errorf("le=1 count %d, want 5", b.GetCumulativeCount())
					}
				case 2.5:
					if b.GetCumulativeCount() != 6 {
						t.Errorf("le=2.5 count %d, want 6", b.GetCumulativeCount())
					}
				}
			}
		}
	}
}

func TestRouteStatsConcurrentObserveExact(t *testing.T) {
	m := New()
	s := m.RouteStats("r", "c")
	codes := []int{200, 201, 204, 301, 404, 500, 502, 503, 504}
	const goroutines, per = 16, 2000
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range per {
				// Every goroutine hits every code, and races to create each
				// code's counter in a different order.
				s.Observe(codes[(g+i)%len(codes)], time.Microsecond)
			}
		}()
	}
	close(start)
	wg.Wait()
	want := map[int]int{}
	for g := range goroutines {
		for i := range per {
			want[codes[(g+i)%len(codes)]]++
		}
	}
	total := 0.0
	for code, n := range want {
		v, ok := value(t, m, "edge_agent_http_requests_total", reqLabels("r", "c", itoa(code)))
		if !ok || v != float64(n) {
			t.Errorf("code %d: %v, want %d", code, v, n)
		}
		total += v
	}
	if total != goroutines*per {
		t.Errorf("total %v, want %d", total, goroutines*per)
	}
	// Each code has exactly one cached counter.
	p := s.codes.Load()
	if p == nil || len(*p) != len(codes) {
		t.Fatalf("cached counters: %v, want %d", p, len(codes))
	}
	seen := map[int]bool{}
	for _, cc := range *p {
		if seen[cc.code] {
			t.Errorf("code %d cached twice", cc.code)
		}
		seen[cc.code] = true
	}
	if v, _ := value(t, m, "edge_agent_http_request_duration_seconds", map[string]string{"route": "r", "cluster": "c"}); v != goroutines*per {
		t.Errorf("duration samples %v, want %d", v, goroutines*per)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestMetricNamesPrefixed(t *testing.T) {
	m := New()
	// Touch every vector so it exposes a series (vectors without children
	// are not gathered).
	m.RouteStats("r", "c").Observe(200, time.Millisecond)
	m.DownstreamActive.WithLabelValues("l").Inc()
	m.DownstreamTotal.WithLabelValues("l").Inc()
	m.UpstreamActive.WithLabelValues("c").Inc()
	m.UpstreamConnects.WithLabelValues("c", "ok").Inc()
	m.UpstreamRequests.WithLabelValues("c").Inc()
	m.ConfigReloads.WithLabelValues("success").Inc()
	m.ConfigGeneration.Set(1)
	m.ConfigReloadErrors.Inc()
	m.ConfigLastSuccess.SetToCurrentTime()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	sawGo := false
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case strings.HasPrefix(name, "edge_agent_"):
			ours++
		case strings.HasPrefix(name, "go_"):
			sawGo = true
		case strings.HasPrefix(name, "process_"):
		default:
			t.Errorf("metric %q lacks the edge_agent_ prefix", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("metric %q has no help text", name)
		}
	}
	if ours != 12 {
		t.Errorf("%d edge_agent_ metric families gathered, want 12", ours)
	}
	if !sawGo {
		t.Error("Go runtime collector not registered")
	}
}

// Each Metrics has its own registry: two instances do not collide or share
// counts (New would panic on duplicate registration with a global one).
func TestNewIsolatedRegistries(t *testing.T) {
	a, b := New(), New()
	a.RouteStats("r", "c").Observe(200, 0)
	if _, ok := value(t, b, "edge_agent_http_requests_total", reqLabels("r", "c", "200")); ok {
		t.Fatal("second Metrics sees the first one's requests")
	}
	if v, _ := value(t, a, "edge_agent_http_requests_total", reqLabels("r", "c", "200")); v != 1 {
		t.Fatalf("first Metrics count %v, want 1", v)
	}
}
