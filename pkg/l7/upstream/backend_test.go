package upstream

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// reply is what the scripted backend does with one request.
type reply struct {
	raw   string // bytes written verbatim
	close bool   // close the connection after writing raw
	hang  bool   // write nothing; keep reading the connection
}

// backendReq is one request as the backend saw it.
type backendReq struct {
	conn   int // 1-based connection number
	method string
	target string
	body   string
}

// backend is a raw TCP HTTP/1.1 server on 127.0.0.1 whose answers are
// scripted per request. It counts connections and reports which ones the
// client (the proxy) closed.
type backend struct {
	t       *testing.T
	ln      net.Listener
	handler func(r backendReq) reply

	mu     sync.Mutex
	conns  []net.Conn
	reqs   chan backendReq
	eofs   chan int // connection numbers that read EOF from the proxy
	closed map[int]bool
	wg     sync.WaitGroup
}

func okReply(body string) reply {
	return reply{raw: "HTTP/1.1 200 OK\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body}
}

func itoa(n int) string { return strconv.Itoa(n) }

func newBackend(t *testing.T, handler func(r backendReq) reply) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if handler == nil {
		handler = func(r backendReq) reply { return okReply("hello " + r.target) }
	}
	b := &backend{t: t, ln: ln, handler: handler,
		reqs: make(chan backendReq, 1024), eofs: make(chan int, 1024), closed: map[int]bool{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.shutdown)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) accept() {
	defer b.wg.Done()
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns = append(b.conns, nc)
		id := len(b.conns)
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(id, nc)
	}
}

func (b *backend) serve(id int, nc net.Conn) {
	defer b.wg.Done()
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			b.mu.Lock()
			byUs := b.closed[id]
			b.mu.Unlock()
			if !byUs && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				select {
				case b.eofs <- id:
				default:
				}
			}
			return
		}
		body, _ := io.ReadAll(req.Body)
		r := backendReq{conn: id, method: req.Method, target: req.RequestURI, body: string(body)}
		select {
		case b.reqs <- r:
		default: // a test that does not look at requests must not block the backend
		}
		rep := b.handler(r)
		if rep.hang {
			continue
		}
		if _, err := io.WriteString(nc, rep.raw); err != nil {
			return
		}
		if rep.close {
			b.closeConn(id)
			return
		}
	}
}

// closeConn closes connection id from the backend side, as an upstream's
// own keep-alive timeout would.
func (b *backend) closeConn(id int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed[id] = true
	_ = b.conns[id-1].Close()
}

// closeAll closes every connection from the backend side.
func (b *backend) closeAll() {
	b.mu.Lock()
	n := len(b.conns)
	b.mu.Unlock()
	for id := 1; id <= n; id++ {
		b.closeConn(id)
	}
}

func (b *backend) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// waitEOF waits until the proxy has closed connection id.
func (b *backend) waitEOF(id int) {
	b.t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case got := <-b.eofs:
			if got == id {
				return
			}
			// Put back others for later waits.
			defer func() { b.eofs <- got }()
		case <-deadline:
			b.t.Fatalf("backend connection %d was not closed by the proxy", id)
		}
	}
}

// noEOF checks that the proxy has not closed any connection for d.
func (b *backend) noEOF(d time.Duration) {
	b.t.Helper()
	select {
	case id := <-b.eofs:
		b.t.Fatalf("proxy closed backend connection %d unexpectedly", id)
	case <-time.After(d):
	}
}

func (b *backend) shutdown() {
	_ = b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// testCluster builds cluster "c" through a Manager.
type testEnv struct {
	m   *metrics.Metrics
	mgr *Manager
	cfg config.Cluster
	c   *Cluster

	closeOnce sync.Once
}

func (env *testEnv) closeManager() { env.closeOnce.Do(env.mgr.Close) }

func newEnv(t *testing.T, addrs ...string) *testEnv {
	t.Helper()
	cfg := config.Cluster{
		Name:                    "c",
		Protocol:                config.UpstreamHTTP1,
		LBPolicy:                config.LBRoundRobin,
		ConnectTimeout:          config.Duration(2 * time.Second),
		IdleConnTimeout:         config.Duration(time.Minute),
		MaxIdleConnsPerEndpoint: 16,
	}
	for _, a := range addrs {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a, Weight: 1})
	}
	m := metrics.New()
	mgr := NewManager(slog.New(slog.DiscardHandler), m)
	env := &testEnv{m: m, mgr: mgr, cfg: cfg}
	t.Cleanup(env.closeManager)
	env.update(t)
	return env
}

func (env *testEnv) update(t *testing.T) {
	t.Helper()
	cs := env.mgr.Update([]config.Cluster{env.cfg})
	env.c = cs[env.cfg.Name]
	if env.c == nil {
		t.Fatal("cluster missing after Update")
	}
}

func (env *testEnv) ep() *Endpoint { return env.c.Endpoints()[0] }

func getReq(target string) *OutRequest {
	return &OutRequest{Method: []byte("GET"), Target: []byte(target), Host: []byte("example.test"),
		Timeout: 3 * time.Second}
}

// roundTrip runs one exchange and reads the whole body; the caller finishes.
func roundTrip(t *testing.T, c *Cluster, ep *Endpoint, req *OutRequest) (*Exchange, string, error) {
	t.Helper()
	x := &Exchange{}
	if err := c.RoundTrip(ep, req, x); err != nil {
		return x, "", err
	}
	body, err := io.ReadAll(x.Response.Body)
	return x, string(body), err
}

// mustGet performs a GET, reads it fully and finishes it as delivered.
func mustGet(t *testing.T, c *Cluster, ep *Endpoint, target string) string {
	t.Helper()
	x, body, err := roundTrip(t, c, ep, getReq(target))
	if err != nil {
		x.Finish(false)
		t.Fatalf("GET %s: %v", target, err)
	}
	if x.Response.Status != 200 {
		t.Fatalf("GET %s: status %d", target, x.Response.Status)
	}
	x.Finish(true)
	return body
}

func idleLen(e *Endpoint) int {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	return len(e.pool.idle)
}

// gauge reads a metric value from the registry by name and label values.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
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
			have := map[string]string{}
			for _, lp := range mt.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func openConns(t *testing.T, env *testEnv) float64 {
	return metricValue(t, env.m, "edge_agent_upstream_connections", map[string]string{"cluster": env.cfg.Name})
}

func expectKind(t *testing.T, err error, want Kind) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want.Reason())
	}
	ue, ok := AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *upstream.Error", err, err)
	}
	if ue.Kind != want {
		t.Fatalf("error kind %s (%v), want %s", ue.Kind.Reason(), err, want.Reason())
	}
	return ue
}
