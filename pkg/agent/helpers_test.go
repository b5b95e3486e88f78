package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/agent"
)

// quiet discards log output; set EDGE_AGENT_TEST_LOG=1 to see the agent's log.
func quiet() *slog.Logger {
	if os.Getenv("EDGE_AGENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other call in this test binary has returned: config validation
// rejects port 0, so tests pick real ports, and a port closed here is not
// bound again until the agent starts, so the kernel may hand it out twice.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("freePort: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			t.Fatalf("freePort: %v", err)
		}
		if !ports[port] {
			ports[port] = true
			return port
		}
	}
	t.Fatal("freePort: no unused port after 100 tries")
	return 0
}

// writeAtomic replaces path the way editors do: write a temporary file in the
// same directory, then rename it over path, so no reader sees a partial file.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-config-*")
	if err != nil {
		t.Fatalf("write config: %v", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		t.Fatalf("write config: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("write config: %v", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatalf("write config: %v", err)
	}
}

// backend is a real HTTP server on 127.0.0.1 that answers with its name.
type backend struct {
	name string
	addr string
	mu   sync.Mutex
	hits int
}

func (b *backend) Hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// newBackend starts a backend whose responses carry X-Backend: name and the
// body "name\n". handler, when set, runs instead of the default reply.
func newBackend(t *testing.T, name string, handler http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		if handler != nil {
			handler(w, r)
			return
		}
		io.WriteString(w, name+"\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// cfgParams describes one generated standalone config.
type cfgParams struct {
	AdminPort    int
	ListenPort   int
	DrainTimeout string // "" means 3s
	Routes       []routeParams
	Clusters     map[string]string // cluster name → endpoint address
}

type routeParams struct {
	Name      string
	Prefix    string
	Cluster   string
	SetHeader [2]string // response header name, value ("" for none)
}

// yaml renders p as a config file; routes keep their order, clusters are
// sorted by name so equal params give equal files.
func (p cfgParams) yaml() string {
	var b strings.Builder
	if p.AdminPort != 0 {
		fmt.Fprintf(&b, "admin:\n  address: 127.0.0.1:%d\n", p.AdminPort)
	}
	b.WriteString("server:\n  accessLog: false\n")
	// A short drain by default, so a connection the proxy cannot drain
	// costs a test seconds, not the default 30s.
	drain := p.DrainTimeout
	if drain == "" {
		drain = "3s"
	}
	fmt.Fprintf(&b, "  drainTimeout: %s\n", drain)
	fmt.Fprintf(&b, "listeners:\n  - name: http\n    address: 127.0.0.1:%d\n    protocol: http\n", p.ListenPort)
	b.WriteString("routes:\n")
	for _, r := range p.Routes {
		fmt.Fprintf(&b, "  - name: %s\n    match:\n      path: {prefix: %s}\n", r.Name, r.Prefix)
		if r.SetHeader[0] != "" {
			fmt.Fprintf(&b, "    responseHeaders:\n      set:\n        - {name: %s, value: %q}\n", r.SetHeader[0], r.SetHeader[1])
		}
		fmt.Fprintf(&b, "    backends:\n      - cluster: %s\n", r.Cluster)
	}
	b.WriteString("clusters:\n")
	names := make([]string, 0, len(p.Clusters))
	for n := range p.Clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    endpoints:\n      - address: %s\n", n, p.Clusters[n])
	}
	return b.String()
}

// harness runs one agent for one test.
type harness struct {
	t *testing.T
	// configPath is what the agent was started with; file is the regular
	// file behind it (they differ when the config is reached by symlink).
	configPath string
	file       string
	a          *agent.Agent
	cancel     context.CancelFunc
	done       chan error

	stopOnce sync.Once
	runErr   error
	stopTook time.Duration
}

type startOpts struct {
	// hidden: reach the config through a symlink the file watcher cannot see.
	hidden bool
	// adminAddress is passed as Options.AdminAddress.
	adminAddress string
	// kube runs the agent in Kubernetes mode.
	kube *agent.KubernetesOptions
	// bpfPinDir is passed as Options.BPFPinDir.
	bpfPinDir string
}

// startAgent writes cfg and runs the agent on it until the test ends.
//
// With o.hidden set, the agent is given a symlink in a watched directory that
// points at a file in another directory: writes to the real file are invisible
// to the file watcher, so only agent.Reload or SIGHUP pick them up. This keeps
// reload counts exact in tests that are not about file watching.
func startAgent(t *testing.T, cfg string, o startOpts) *harness {
	t.Helper()
	hidden := o.hidden
	dir := t.TempDir()
	h := &harness{t: t, configPath: filepath.Join(dir, "config.yaml")}
	h.file = h.configPath
	if hidden {
		real := filepath.Join(dir, "real")
		watched := filepath.Join(dir, "watched")
		for _, d := range []string{real, watched} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		h.file = filepath.Join(real, "config.yaml")
		h.configPath = filepath.Join(watched, "config.yaml")
		if err := os.Symlink(h.file, h.configPath); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, h.file, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	ready := make(chan *agent.Agent, 1)
	go func() {
		h.done <- agent.Run(ctx, agent.Options{
			ConfigPath: h.configPath,
			Log:        quiet(),
			AccessLog:  quiet(),
			Ready:      ready,

			AdminAddress: o.adminAddress,
			Kubernetes:   o.kube,
			BPFPinDir:    o.bpfPinDir,
		})
	}()
	select {
	case h.a = <-ready:
	case err := <-h.done:
		cancel()
		t.Fatalf("agent.Run returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("agent not ready after 30s")
	}
	t.Cleanup(func() {
		if err := h.stop(15 * time.Second); err != nil {
			t.Errorf("agent.Run: %v", err)
		}
	})
	return h
}

// stop cancels the agent's context and waits up to max for Run to return.
// It returns Run's error; later calls return the same result.
func (h *harness) stop(max time.Duration) error {
	h.stopOnce.Do(func() {
		start := time.Now()
		h.cancel()
		select {
		case h.runErr = <-h.done:
		case <-time.After(max):
			h.runErr = fmt.Errorf("agent.Run did not return within %v", max)
		}
		h.stopTook = time.Since(start)
	})
	return h.runErr
}

func (h *harness) write(cfg string) { h.t.Helper(); writeAtomic(h.t, h.file, cfg) }

func (h *harness) proxyURL(path string) string {
	addr := h.a.Proxy().Addr("http")
	if addr == nil {
		h.t.Fatalf("no listener named http")
	}
	return "http://" + addr.String() + path
}

func (h *harness) adminURL(path string) string {
	return "http://" + h.a.AdminAddr().String() + path
}

// newClient is a plain HTTP client with a timeout, so a hung proxy fails the
// test instead of the test binary.
func newClient(keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 16,
			Proxy:               nil,
		},
	}
}

type result struct {
	status int
	header http.Header
	body   string
}

// get does one GET and reads the whole body.
func get(c *http.Client, url string) (result, error) {
	resp, err := c.Get(url)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("reading body: %w", err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

func mustGet(t *testing.T, c *http.Client, url string) result {
	t.Helper()
	r, err := get(c, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return r
}

// debugConfig is the part of /debug/config the tests read.
type debugConfig struct {
	Generation uint64 `json:"generation"`
	Source     string `json:"source"`
	Config     struct {
		Admin struct {
			Address string `json:"address"`
		} `json:"admin"`
		Routes []struct {
			Name string `json:"name"`
		} `json:"routes"`
	} `json:"config"`
}

func (h *harness) debugConfig() debugConfig {
	h.t.Helper()
	r := mustGet(h.t, newClient(false), h.adminURL("/debug/config"))
	if r.status != http.StatusOK {
		h.t.Fatalf("/debug/config: status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("/debug/config Content-Type = %q, want application/json", ct)
	}
	var dc debugConfig
	if err := json.Unmarshal([]byte(r.body), &dc); err != nil {
		h.t.Fatalf("/debug/config is not JSON: %v\n%s", err, r.body)
	}
	return dc
}

// debugConfigRaw returns /debug/config as text.
func (h *harness) debugConfigRaw() string {
	h.t.Helper()
	r := mustGet(h.t, newClient(false), h.adminURL("/debug/config"))
	if r.status != http.StatusOK {
		h.t.Fatalf("/debug/config: status %d: %s", r.status, r.body)
	}
	return r.body
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sample is one series from a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape fetches /metrics from the admin server and parses the text format.
func (h *harness) scrape() []sample {
	h.t.Helper()
	r := mustGet(h.t, newClient(false), h.adminURL("/metrics"))
	if r.status != http.StatusOK {
		h.t.Fatalf("/metrics: status %d", r.status)
	}
	out, err := parseMetrics(r.body)
	if err != nil {
		h.t.Fatalf("/metrics: %v", err)
	}
	return out
}

// parseMetrics reads the Prometheus text format (0.0.4): comments are
// skipped, every other line is name{labels} value [timestamp].
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(rest, "{ "); i < 0 {
			return nil, fmt.Errorf("line %d: %q", n+1, line)
		} else {
			s.name, rest = rest[:i], rest[i:]
		}
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.Index(rest, "=\"")
				if eq < 0 {
					return nil, fmt.Errorf("line %d: bad labels in %q", n+1, line)
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				i := 0
				for ; i < len(rest) && rest[i] != '"'; i++ {
					if rest[i] == '\\' && i+1 < len(rest) {
						i++
						switch rest[i] {
						case 'n':
							val.WriteByte('\n')
						default:
							val.WriteByte(rest[i])
						}
						continue
					}
					val.WriteByte(rest[i])
				}
				if i >= len(rest) {
					return nil, fmt.Errorf("line %d: unterminated label value in %q", n+1, line)
				}
				s.labels[key] = val.String()
				rest = rest[i+1:]
			}
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 {
			return nil, fmt.Errorf("line %d: no value in %q", n+1, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n+1, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// find returns the value of the series named name whose labels include
// want, and whether there was exactly one such series.
func find(samples []sample, name string, want map[string]string) (float64, error) {
	var found []sample
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		found = append(found, s)
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no series %s%v", name, want)
	case 1:
		return found[0].value, nil
	default:
		return 0, fmt.Errorf("%d series match %s%v", len(found), name, want)
	}
}

func mustFind(t *testing.T, samples []sample, name string, want map[string]string) float64 {
	t.Helper()
	v, err := find(samples, name, want)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// dialRefused reports nil when a connection to addr is refused (nothing
// listens), and otherwise why not.
func dialRefused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return errors.New("connection was accepted")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("dial failed, but not with connection refused: %w", err)
	}
	return nil
}
