package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// mode is how a flaky backend answers.
type mode int32

const (
	modeOK       mode = iota
	modeFail          // answers with its failure status (503 unless set)
	modeSlow          // waits its delay, then answers 200
	modeReset         // closes the connection without answering (RST)
	modeHang          // never answers (until released or the test ends)
	modeStream        // answers 200 at once, then a body byte every delay
	modeDownGRPC      // trailers-only gRPC UNAVAILABLE
)

// flaky is a real HTTP/1.1 server on 127.0.0.1 that misbehaves on
// command: its mode changes what it does, stop and start close and reopen
// its port (connection refused in between).
type flaky struct {
	t       *testing.T
	name    string
	addr    string
	mode    atomic.Int32
	status  atomic.Int32
	delay   atomic.Int64
	hits    atomic.Int64
	healthy atomic.Bool // what /healthz answers
	release chan struct{}
	// lastBody and lastHost are what the last request carried.
	mu       sync.Mutex
	lastBody string
	lastHost string
	srv      *http.Server
	ln       net.Listener
}

func newFlaky(t *testing.T, name string) *flaky {
	t.Helper()
	f := &flaky{t: t, name: name, release: make(chan struct{})}
	f.healthy.Store(true)
	f.status.Store(503)
	f.delay.Store(int64(100 * time.Millisecond))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(func() {
		f.unblock()
		f.stop()
	})
	return f
}

func (f *flaky) serve(ln net.Listener) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ln = ln
	f.srv = &http.Server{Handler: http.HandlerFunc(f.handle)}
	go f.srv.Serve(ln)
}

// stop closes the listener and every connection: the backend is gone.
func (f *flaky) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// start reopens the same port.
func (f *flaky) start() {
	f.t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("reopen %s: %v", f.addr, err)
	}
	f.serve(ln)
}

func (f *flaky) set(m mode) { f.mode.Store(int32(m)) }

// unblock lets hanging requests go (once).
func (f *flaky) unblock() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

func (f *flaky) handle(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		if f.healthy.Load() {
			w.WriteHeader(200)
		} else {
			w.WriteHeader(503)
		}
		return
	}
	f.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.lastBody, f.lastHost = string(body), r.Host
	release := f.release
	f.mu.Unlock()
	w.Header().Set("X-Backend", f.name)
	switch mode(f.mode.Load()) {
	case modeFail:
		w.WriteHeader(int(f.status.Load()))
		fmt.Fprintf(w, "%s failed\n", f.name)
	case modeSlow:
		time.Sleep(time.Duration(f.delay.Load()))
		fmt.Fprintf(w, "%s slow\n", f.name)
	case modeReset:
		hj, _ := w.(http.Hijacker)
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
		}
	case modeHang:
		select {
		case <-release:
			fmt.Fprintf(w, "%s released\n", f.name)
		case <-r.Context().Done():
		}
	case modeStream:
		w.WriteHeader(200)
		for range 5 {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			time.Sleep(time.Duration(f.delay.Load()))
		}
	case modeDownGRPC:
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14")
		w.WriteHeader(200)
	default:
		fmt.Fprintf(w, "%s ok\n", f.name)
	}
}

func (f *flaky) body() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBody, f.lastHost
}

// reload applies yaml (with {{PORT}} as startProxy has it) to e.
func (e *env) reload(t *testing.T, yaml string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(e.addr)
	cfg, err := config.Parse([]byte(strings.ReplaceAll(yaml, "{{PORT}}", port)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := e.srv.Apply(&config.Snapshot{Config: cfg, Generation: 2}); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// call sends one request and returns status, the answering backend, the
// body and the response headers; transport errors are returned.
func call(c *http.Client, method, url string, hdr map[string]string, body io.Reader) (int, string, string, http.Header, error) {
	return callWithin(10*time.Second, c, method, url, hdr, body)
}

// callWithin is call with a time limit other than 10 s.
func callWithin(limit time.Duration, c *http.Client, method, url string, hdr map[string]string, body io.Reader) (int, string, string, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, "", "", nil, err
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v // net/http takes the Host from here, not the header map
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(b), resp.Header, err
}
