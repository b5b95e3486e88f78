package extauth

import (
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// newCluster builds a real upstream cluster named "auth" over addrs.
func newCluster(tb testing.TB, proto config.UpstreamProtocol, addrs ...string) *upstream.Cluster {
	tb.Helper()
	cfg := config.Cluster{
		Name:                    "auth",
		Protocol:                proto,
		LBPolicy:                config.LBRoundRobin,
		ConnectTimeout:          config.Duration(2 * time.Second),
		IdleConnTimeout:         config.Duration(time.Minute),
		MaxIdleConnsPerEndpoint: 16,
	}
	for _, a := range addrs {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: a, Weight: 1})
	}
	mgr := upstream.NewManager(slog.New(slog.DiscardHandler), metrics.New())
	tb.Cleanup(mgr.Close)
	cl := mgr.Update([]config.Cluster{cfg})["auth"]
	if cl == nil {
		tb.Fatal("cluster missing after Update")
	}
	return cl
}

// deadAddr is a local address nothing listens on.
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// serveHTTP serves h on a local port (HTTP/1.1, or h2c with h2c set);
// newConns, if set, counts the connections it accepts.
func serveHTTP(tb testing.TB, h http.Handler, h2c bool, newConns *atomic.Int32) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	if newConns != nil {
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				newConns.Add(1)
			}
		}
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func hdrs(kv ...string) message.Headers {
	hs := make(message.Headers, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, message.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func get(hs message.Headers, name string) (string, bool) {
	v, ok := hs.Get(name)
	return string(v), ok
}

func extAuth(timeout time.Duration, failOpen bool) config.ExtAuth {
	return config.ExtAuth{Timeout: config.Duration(timeout), FailOpen: failOpen}
}
