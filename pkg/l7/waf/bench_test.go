package waf

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// A browser GET: 12 headers with cookies, a query string.
func BenchmarkCheckClean(b *testing.B) {
	w := testWAF(b, block1)
	r := get("/products/42?ref=home&page=2")
	r.Headers = browserHeaders
	b.ReportAllocs()
	for b.Loop() {
		if v := w.Check(r); v.Matched {
			b.Fatal(v)
		}
	}
}

func BenchmarkCheckAttack(b *testing.B) {
	w := testWAF(b, block1)
	r := get("/?id=1%27%20OR%20%271%27%3D%271")
	r.Headers = browserHeaders
	b.ReportAllocs()
	for b.Loop() {
		if v := w.Check(r); !v.Blocked {
			b.Fatal(v)
		}
	}
}

// Rules run per argument: a body's cost grows with its arguments (a JSON
// body's leaves) and their length.
func BenchmarkCheckJSON(b *testing.B) {
	for _, items := range []int{1, 20, 100} {
		body := `{"items":[` + strings.Repeat(`{"id":12,"name":"item number 12","ok":true},`, items) + `{}]}`
		b.Run(fmt.Sprintf("%dB", len(body)), func(b *testing.B) {
			w := testWAF(b, block1)
			r := post("/api/items", "application/json", body)
			b.ReportAllocs()
			for b.Loop() {
				if v := w.Check(r); v.Matched {
					b.Fatal(v)
				}
			}
		})
	}
}

// The cost of compiling the CRS. Coraza caches compiled patterns process
// wide, so only the first WAF in a process pays for compiling the regexes
// (~0.3s, ~20MiB); this measures the ones after it. retained-B/op is the
// heap each further live WAF keeps.
func BenchmarkNew(b *testing.B) {
	var live []*WAF
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		w, err := New(config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 2}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		live = append(live, w)
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(live)), "retained-B/op")
	for _, w := range live {
		w.Close()
	}
	runtime.KeepAlive(live)
}
