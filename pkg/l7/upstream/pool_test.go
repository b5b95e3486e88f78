package upstream

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

func TestIdleTimeoutConnNotReusedAndSwept(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t)
	env.cfg.IdleConnTimeout = config.Duration(100 * time.Millisecond)
	env.cfg.Endpoints = []config.Endpoint{{Address: b.addr(), Weight: 1}}
	env.update(t)
	ep := env.ep()

	mustGet(t, env.c, ep, "/1")
	time.Sleep(200 * time.Millisecond)
	mustGet(t, env.c, ep, "/2")
	if c := b.connCount(); c != 2 {
		t.Fatalf("backend saw %d connections, want 2: a connection idle past the timeout was reused", c)
	}
	b.waitEOF(1) // the expired connection was closed, not leaked
	if v := openConns(t, env); v != 1 {
		t.Fatalf("open connections gauge = %v, want 1", v)
	}

	// A sweep before the timeout keeps the connection. The sweep time is
	// relative to the connection's release, so a slow run cannot age it.
	ep.pool.mu.Lock()
	released := ep.pool.idle[0].lastUsed
	ep.pool.mu.Unlock()
	ep.sweep(released.Add(50 * time.Millisecond))
	if n := idleLen(ep); n != 1 {
		t.Fatalf("sweep of a fresh connection left %d idle, want 1", n)
	}
	b.noEOF(20 * time.Millisecond)

	// A sweep after the timeout closes it.
	time.Sleep(200 * time.Millisecond)
	ep.sweep(time.Now())
	if n := idleLen(ep); n != 0 {
		t.Fatalf("sweep left %d idle connections, want 0", n)
	}
	b.waitEOF(2)
	if v := openConns(t, env); v != 0 {
		t.Fatalf("open connections gauge = %v after sweep, want 0", v)
	}
}

// The sweep keeps the fresh connections and the pool's LIFO order.
func TestSweepKeepsFreshKeepsOrder(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	var xs []*Exchange
	for i := range 4 {
		x, _, err := roundTrip(t, env.c, ep, getReq("/"+itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		xs = append(xs, x)
	}
	for _, x := range xs {
		x.Finish(true)
	}
	// Age the two oldest entries (bottom of the stack) artificially.
	ep.pool.mu.Lock()
	old := time.Now().Add(-2 * time.Minute)
	ep.pool.idle[0].lastUsed = old
	ep.pool.idle[1].lastUsed = old
	keep := []*Conn{ep.pool.idle[2], ep.pool.idle[3]}
	ep.pool.mu.Unlock()
	ep.sweep(time.Now())
	ep.pool.mu.Lock()
	got := append([]*Conn(nil), ep.pool.idle...)
	ep.pool.mu.Unlock()
	if len(got) != 2 || got[0] != keep[0] || got[1] != keep[1] {
		t.Fatalf("after sweep idle = %v, want the two fresh connections in order", got)
	}
	b.waitEOF(1)
	b.waitEOF(2)
	// LIFO: the newest idle connection (released last, conn 4) serves next.
	mustGet(t, env.c, ep, "/next")
	for range 4 {
		<-b.reqs
	}
	if r := <-b.reqs; r.conn != 4 {
		t.Fatalf("next request on connection %d, want 4 (most recently used)", r.conn)
	}
}

func TestMaxIdleConnsPerEndpoint(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t)
	env.cfg.MaxIdleConnsPerEndpoint = 2
	env.cfg.Endpoints = []config.Endpoint{{Address: b.addr(), Weight: 1}}
	env.update(t)
	ep := env.ep()
	var xs []*Exchange
	for i := range 3 {
		x, body, err := roundTrip(t, env.c, ep, getReq("/"+itoa(i)))
		if err != nil || body != "hello /"+itoa(i) {
			t.Fatalf("body %q, %v", body, err)
		}
		xs = append(xs, x)
	}
	if c := b.connCount(); c != 3 {
		t.Fatalf("backend saw %d connections, want 3", c)
	}
	for _, x := range xs {
		x.Finish(true)
	}
	if n := idleLen(ep); n != 2 {
		t.Fatalf("idle = %d, want 2 (maxIdleConnsPerEndpoint)", n)
	}
	b.waitEOF(3) // the third released found the pool full
	if v := openConns(t, env); v != 2 {
		t.Fatalf("open connections gauge = %v, want 2", v)
	}
}

func TestManagerUpdateUnchangedReturnsSameCluster(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	before := env.c
	mustGet(t, env.c, env.ep(), "/")
	cfg := env.cfg
	cfg.Endpoints = append([]config.Endpoint(nil), env.cfg.Endpoints...) // an equal copy
	cs := env.mgr.Update([]config.Cluster{cfg})
	if cs["c"] != before {
		t.Fatal("Update with an unchanged config built a new cluster")
	}
	if n := idleLen(before.Endpoints()[0]); n != 1 {
		t.Fatalf("idle = %d after unchanged update, want 1", n)
	}
	b.noEOF(30 * time.Millisecond)
}

func TestManagerUpdateEndpointsChanged(t *testing.T) {
	ba := newBackend(t, nil)
	bb := newBackend(t, nil)
	bc := newBackend(t, nil)
	env := newEnv(t, ba.addr(), bb.addr())
	oldC := env.c
	epA, epB := oldC.Endpoints()[0], oldC.Endpoints()[1]
	mustGet(t, oldC, epA, "/a")
	// An exchange on B still running across the reload (connection 1), and
	// an idle one (connection 2).
	xb, _, err := roundTrip(t, oldC, epB, getReq("/b-inflight"))
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, oldC, epB, "/b")

	env.cfg.Endpoints = []config.Endpoint{{Address: ba.addr(), Weight: 1}, {Address: bc.addr(), Weight: 1}}
	env.update(t)
	if env.c == oldC {
		t.Fatal("endpoint change returned the old cluster")
	}
	eps := env.c.Endpoints()
	if len(eps) != 2 || eps[0] != epA {
		t.Fatal("surviving endpoint A is not the same *Endpoint")
	}
	if eps[1] == epB || eps[1].Address != bc.addr() {
		t.Fatal("endpoint C not built")
	}
	if n := idleLen(epA); n != 1 {
		t.Fatalf("A's idle connections after update = %d, want 1", n)
	}
	// B's idle connection is closed at once; the in-flight one on Finish.
	bb.waitEOF(2)
	xb.Finish(true)
	bb.waitEOF(1)
	if n := idleLen(epB); n != 0 {
		t.Fatalf("removed endpoint pooled %d connections", n)
	}
	// A keeps using its warm connection.
	mustGet(t, env.c, epA, "/a2")
	if c := ba.connCount(); c != 1 {
		t.Fatalf("A saw %d connections, want 1 (warm connection kept)", c)
	}
	ba.noEOF(30 * time.Millisecond)
	mustGet(t, env.c, eps[1], "/c")
	if v := openConns(t, env); v != 2 {
		t.Fatalf("open connections gauge = %v, want 2 (A and C)", v)
	}
}

func TestManagerUpdateSettingsChangedRebuildsEndpoints(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	oldEp := env.ep()
	mustGet(t, env.c, oldEp, "/")
	env.cfg.IdleConnTimeout = config.Duration(2 * time.Minute)
	env.update(t)
	if env.ep() == oldEp {
		t.Fatal("endpoint reused although the cluster's pool settings changed")
	}
	b.waitEOF(1)
	mustGet(t, env.c, env.ep(), "/")
	if c := b.connCount(); c != 2 {
		t.Fatalf("backend saw %d connections, want 2", c)
	}
}

func TestManagerUpdateRemovedClusterClosesIdle(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	mustGet(t, env.c, env.ep(), "/")
	cs := env.mgr.Update(nil)
	if len(cs) != 0 {
		t.Fatalf("clusters after removing all: %d", len(cs))
	}
	b.waitEOF(1)
}

func TestManagerCloseClosesIdle(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	mustGet(t, env.c, env.ep(), "/")
	env.closeManager()
	b.waitEOF(1)
}

// A connection idle past probeAfter is checked before reuse, so a request
// that must not be replayed does not land on one the upstream closed.
func TestIdleProbeCatchesClosedConnForPOST(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	mustGet(t, env.c, ep, "/warm")
	<-b.reqs
	b.closeAll()
	time.Sleep(probeAfter + 100*time.Millisecond)
	req := &OutRequest{Method: []byte("POST"), Target: []byte("/submit"), Host: []byte("h"),
		ContentLength: 7, Body: bytes.NewReader([]byte("payload")), BodyBuffered: true,
		Timeout: 3 * time.Second}
	x := &Exchange{}
	if err := env.c.RoundTrip(ep, req, x); err != nil {
		x.Finish(false)
		t.Fatalf("POST after the upstream closed an idle connection: %v", err)
	}
	io.Copy(io.Discard, x.Response.Body)
	x.Finish(true)
	if c := b.connCount(); c != 2 {
		t.Fatalf("backend saw %d connections, want 2 (the probe found the closed one)", c)
	}
}

// The probe keeps a healthy idle connection.
func TestIdleProbeKeepsLiveConn(t *testing.T) {
	b := newBackend(t, nil)
	env := newEnv(t, b.addr())
	ep := env.ep()
	mustGet(t, env.c, ep, "/warm")
	<-b.reqs
	time.Sleep(probeAfter + 100*time.Millisecond)
	mustGet(t, env.c, ep, "/again")
	if c := b.connCount(); c != 1 {
		t.Fatalf("backend saw %d connections, want 1", c)
	}
}
