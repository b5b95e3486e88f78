package kubescale

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testproc"
)

const (
	readyTimeout = 60 * time.Second
	stopGrace    = 5 * time.Second
	// clkTck is USER_HZ, the unit of utime/stime in /proc/PID/stat (100 on
	// every Linux architecture we build for).
	clkTck = 100
)

// agentProc is the edge-agent binary running as a subprocess.
type agentProc struct {
	proc   *testproc.Proc // its log holds the agent's stderr (and stdout)
	admin  string         // host:port of the admin server
	listen string         // host:port of the HTTP listener
}

// startAgent builds cmd/edge-agent, runs it in Kubernetes mode against
// kubeconfig, and waits for /readyz. It is stopped in t.Cleanup.
func startAgent(t *testing.T, kubeconfig, outDir string) *agentProc {
	t.Helper()
	bin := buildAgent(t)
	ports, err := testproc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{
		admin:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
	}
	cfg := fmt.Sprintf(`admin:
  address: %s
listeners:
  - name: http
    address: %s
server:
  accessLog: false
kubernetes:
  namespaces: [%s]
  debounce: 100ms
`, a.admin, a.listen, namespace)
	cfgPath := filepath.Join(outDir, "edge-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write agent config: %v", err)
	}
	a.proc, err = testproc.Start("edge-agent", filepath.Join(outDir, "agent.log"), bin,
		"run", "--config", cfgPath, "--kubeconfig", kubeconfig,
		"--log-level", "warn", "--node-name", "bench")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.proc.Stop(stopGrace) })

	start := time.Now()
	if err := a.waitReady(); err != nil {
		t.Fatalf("edge-agent: %v\n%s", err, a.logTail())
	}
	t.Logf("edge-agent pid %d ready in %v (listener %s, admin %s, log %s)",
		a.proc.Pid(), time.Since(start).Round(time.Millisecond), a.listen, a.admin, a.proc.Log())
	return a
}

// buildAgent builds ./cmd/edge-agent from the module root into a temp dir.
func buildAgent(t *testing.T) string {
	t.Helper()
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "edge-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/edge-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/edge-agent: %v\n%s", err, out)
	}
	return bin
}

func (a *agentProc) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get("http://" + a.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s", resp.Status)
		}
		select {
		case <-a.proc.Done():
			return fmt.Errorf("exited before ready: %v", a.proc.Err())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logTail returns the end of the agent's log for failure messages.
func (a *agentProc) logTail() string { return a.proc.Tail(40) }

// sample is the agent's resource use and config state at one moment.
type sample struct {
	cpu        time.Duration // utime+stime since start
	peakRSS    int64         // VmHWM, bytes
	rss        int64         // VmRSS, bytes
	heapInuse  float64       // go_memstats_heap_inuse_bytes
	generation float64       // edge_agent_config_generation
	serving    float64       // edge_agent_kubernetes_services{state="serving"}
}

func (a *agentProc) sample(t *testing.T) sample {
	t.Helper()
	s := sample{cpu: a.cpu(t)}
	var err error
	if s.peakRSS, s.rss, err = memory(a.proc.Pid()); err != nil {
		t.Fatal(err)
	}
	m, err := a.metrics()
	if err != nil {
		t.Fatal(err)
	}
	s.heapInuse = m["go_memstats_heap_inuse_bytes"]
	s.generation = m["edge_agent_config_generation"]
	s.serving = m[`edge_agent_kubernetes_services{state="serving"}`]
	return s
}

func (a *agentProc) cpu(t *testing.T) time.Duration {
	t.Helper()
	d, err := cpuTime(a.proc.Pid())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// cpuTime is utime+stime of pid from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("agent cpu: %w", err)
	}
	// Fields after the command name, which may hold spaces and ")": the
	// first is field 3 (state), so utime (14) and stime (15) are 11 and 12.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("agent cpu: short /proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("agent cpu: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clkTck, nil
}

// memory returns VmHWM and VmRSS of pid in bytes.
func memory(pid int) (peak, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("agent memory: %w", err)
	}
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		f := strings.Fields(sc.Text()) // "VmHWM:", "12345", "kB"
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		var dst *int64
		switch f[0] {
		case "VmHWM:":
			dst = &peak
		case "VmRSS:":
			dst = &rss
		default:
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("agent memory: %s: %w", f[0], err)
		}
		*dst = kb << 10
	}
	if peak == 0 || rss == 0 {
		return 0, 0, fmt.Errorf("agent memory: no VmHWM/VmRSS in /proc/%d/status", pid)
	}
	return peak, rss, nil
}

// metrics scrapes the admin /metrics page into "name{labels}" -> value.
func (a *agentProc) metrics() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape agent metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape agent metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read agent metrics: %w", err)
	}
	return m, nil
}
