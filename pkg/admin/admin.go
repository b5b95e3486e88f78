// Package admin is the operator's HTTP endpoint: health, readiness,
// Prometheus metrics, the live config and pprof. It binds to localhost
// unless the platform team configures otherwise.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// Source tells the admin server what is live.
type Source interface {
	// Snapshot returns the config in service, or nil before the first load.
	Snapshot() *config.Snapshot
	// Ready reports whether the agent serves traffic.
	Ready() bool
}

// InstanceHeader carries Instance() on /readyz answers.
const InstanceHeader = "Edge-Agent-Instance"

// Instance names this agent process: the pod ($POD_NAME) in a DaemonSet,
// else the process id.
func Instance() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	return strconv.Itoa(os.Getpid())
}

// Handler returns the admin mux.
func Handler(src Source, m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	instance := Instance()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// Which agent answers: during a hand-over two agents hold the admin
		// address, one after the other (`edge-agent probe ready` checks).
		w.Header().Set(InstanceHeader, instance)
		if !src.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, _ *http.Request) {
		snap := src.Snapshot()
		if snap == nil {
			http.Error(w, "no config loaded", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(indexPage))
	})
	return mux
}

const indexPage = `<!doctype html><title>edge-agent admin</title>
<h1>edge-agent admin</h1>
<ul>
<li><a href="/healthz">/healthz</a> liveness</li>
<li><a href="/readyz">/readyz</a> readiness</li>
<li><a href="/metrics">/metrics</a> Prometheus metrics</li>
<li><a href="/debug/config">/debug/config</a> the live config snapshot (JSON)</li>
<li><a href="/debug/pprof/">/debug/pprof/</a> Go profiles</li>
</ul>`
