package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/netnstest"
	"github.com/edge-agent/edge-agent/internal/testproc"
	"github.com/edge-agent/edge-agent/pkg/admin"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

// childEnv makes the test binary run as edge-agent (restart test).
const childEnv = "EDGE_AGENT_TEST_AS_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const (
	slowChunks   = 20
	slowInterval = 100 * time.Millisecond
)

// upstream answers /fast at once and streams /slow for two seconds.
func upstream(ln net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/fast", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		for i := range slowChunks {
			fmt.Fprintf(w, "chunk %02d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(slowInterval)
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return srv
}

// load sends requests in a loop and counts what failed.
type load struct {
	name      string
	ok, fails atomic.Int64
	refused   atomic.Int64
	mu        sync.Mutex
	errs      []string
}

func (l *load) run(ctx context.Context, c *http.Client, url string) {
	for ctx.Err() == nil {
		err := fetch(c, url, "ok")
		if err == nil {
			l.ok.Add(1)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		l.fails.Add(1)
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.refused.Add(1)
		}
		l.mu.Lock()
		if len(l.errs) < 5 {
			l.errs = append(l.errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		}
		l.mu.Unlock()
	}
}

func fetch(c *http.Client, url, want string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(b) != want {
		return fmt.Errorf("%s: %d %q", url, resp.StatusCode, b)
	}
	return nil
}

// TestRestartDropsNothing replaces the agent with a new process five times
// while clients send requests on keep-alive and new connections and one
// long streamed request is in flight on the old agent each time: nothing
// may fail or be refused, and every long request completes.
func TestRestartDropsNothing(t *testing.T) {
	requireRoot(t)
	h := netnstest.New(t, 3)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("edge-agent-restarttest-%d", os.Getpid()))
	t.Cleanup(func() { _ = l4.Cleanup(dir) })
	upLn := netnstest.ListenIn(t, h.Name, "127.0.0.1:0")
	up := upstream(upLn)
	t.Cleanup(func() { up.Close() })

	tmp := t.TempDir()
	web := netip.AddrPortFrom(h.Addrs[0], 8080)
	vip := netip.AddrPortFrom(h.Addrs[1], 80)
	admin := netip.AddrPortFrom(h.Addrs[2], 9901)
	cfg := fmt.Sprintf(`admin:
  address: %s
server:
  accessLog: false
  drainTimeout: 10s
listeners:
  - name: web
    address: %s
    steer: ["%s"]
routes:
  - name: all
    match: {path: {prefix: /}}
    backends: [{cluster: app}]
clusters:
  - name: app
    endpoints: [{address: "%s"}]
steering:
  enabled: true
  handoverSocket: %s
`, admin, web, vip, upLn.Addr(), filepath.Join(tmp, "run", "handover.sock"))
	cfgPath := filepath.Join(tmp, "edge-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := newNetnsAgents(t, h.Name, cfgPath, dir, admin)
	start, waitReady := ns.start, ns.waitReady
	cur := start(0)
	waitReady(cur)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var loads []*load
	var wg sync.WaitGroup
	for _, target := range []netip.AddrPort{web, vip} {
		for _, keepAlive := range []bool{true, false} {
			l := &load{name: fmt.Sprintf("%s keep-alive=%v", target, keepAlive)}
			tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			loads = append(loads, l)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer tr.CloseIdleConnections()
				l.run(ctx, c, fmt.Sprintf("http://%s/fast", target))
			}()
		}
	}
	var cookies []uint64
	for gen := 1; gen <= 5; gen++ {
		time.Sleep(300 * time.Millisecond)
		// A long request in flight on the old agent.
		resp, err := http.Get(fmt.Sprintf("http://%s/slow", web))
		if err != nil {
			t.Fatalf("generation %d: long request: %v", gen, err)
		}
		slow := make(chan error, 1)
		go func() {
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && strings.Count(string(b), "chunk") != slowChunks {
				err = fmt.Errorf("got %d of %d chunks", strings.Count(string(b), "chunk"), slowChunks)
			}
			slow <- err
		}()
		old := cur
		cur = start(gen)
		select {
		case <-old.Done():
			if err := old.Err(); err != nil {
				t.Fatalf("generation %d: old agent exited with %v\n%s", gen, err, old.Tail(30))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("generation %d: old agent did not hand over and exit\n%s\n%s", gen, old.Tail(30), cur.Tail(30))
		}
		if err := <-slow; err != nil {
			t.Errorf("generation %d: long request across the handover: %v", gen, err)
		}
		waitReady(cur)
		st, err := l4.ReadSteering(dir)
		if err != nil {
			t.Fatal(err)
		}
		cookies = append(cookies, st.SocketCookie)
		if logs, _ := os.ReadFile(old.Log()); !strings.Contains(string(logs), "handed over to a new agent") {
			t.Errorf("generation %d: the old agent did not log the handover\n%s", gen, old.Tail(20))
		}
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	for i := 1; i < len(cookies); i++ {
		if cookies[i] == 0 || cookies[i] == cookies[i-1] {
			t.Errorf("SOCKMAP socket cookies %v: each agent should have put its own socket in", cookies)
		}
	}
	for _, l := range loads {
		t.Logf("%s: %d ok, %d failed (%d refused)", l.name, l.ok.Load(), l.fails.Load(), l.refused.Load())
		if l.fails.Load() != 0 {
			t.Errorf("%s: %d requests failed, %d refused: %v", l.name, l.fails.Load(), l.refused.Load(), l.errs)
		}
		if l.ok.Load() < 50 {
			t.Errorf("%s: only %d requests: the load did not run", l.name, l.ok.Load())
		}
	}
}

// netnsAgents starts edge-agent processes (this test binary, see TestMain)
// inside a test network namespace.
type netnsAgents struct {
	t                  *testing.T
	netns, cfg, pinDir string
	admin              netip.AddrPort
	self               string
	// client, when set, reaches the admin server (from another namespace);
	// else `edge-agent probe ready` runs here.
	client *http.Client
}

func newNetnsAgents(t *testing.T, netns, cfgPath, pinDir string, admin netip.AddrPort) *netnsAgents {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	return &netnsAgents{t: t, netns: netns, cfg: cfgPath, pinDir: pinDir, admin: admin, self: self}
}

// start runs generation gen. nsenter changes only the network namespace:
// the agents share the host's bpffs, where the pinned SOCKMAP is.
func (a *netnsAgents) start(gen int) *testproc.Proc {
	t := a.t
	t.Helper()
	p, err := testproc.Start(fmt.Sprintf("agent-%d", gen), filepath.Join(filepath.Dir(a.cfg), fmt.Sprintf("agent-%d.log", gen)),
		"nsenter", "--net="+netnstest.NetnsPath(a.netns), a.self,
		"run", "--config", a.cfg, "--pin-dir", a.pinDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(15 * time.Second) })
	return p
}

// waitReady waits until p itself answers /readyz (during a hand-over the
// admin address moves from one process to the next).
func (a *netnsAgents) waitReady(p *testproc.Proc) {
	t := a.t
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var out, errOut bytes.Buffer
	for time.Now().Before(deadline) {
		out.Reset()
		errOut.Reset()
		if a.client != nil {
			if resp, err := a.client.Get("http://" + a.admin.String() + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 && resp.Header.Get(admin.InstanceHeader) == fmt.Sprint(p.Pid()) {
					return
				}
			}
		} else if realMain([]string{"probe", "ready", "--admin", a.admin.String(), "--instance", fmt.Sprint(p.Pid())}, &out, &errOut) == 0 {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("agent exited: %v\n%s", p.Err(), p.Tail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("agent pid %d not ready: %s\n%s", p.Pid(), errOut.String(), p.Tail(30))
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
}
