package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// tunnel is what an upgraded connection (WebSocket) needs from its route:
// its limits and where to count it.
type tunnel struct {
	route   *Route
	metrics *metrics.Metrics
}

var (
	errTunnelIdle     = errors.New("websocket idle timeout")
	errTunnelLifetime = errors.New("websocket max lifetime")
)

// relay copies bytes both ways between the client (reading from cbr) and
// the upstream until both directions are done, or until the route's idle
// timeout or maximum lifetime ends the tunnel (both sockets are closed).
// It returns the bytes sent to the client. Nothing in it depends on the
// config snapshot: reloads leave established tunnels alone.
func (t tunnel) relay(client net.Conn, cbr *bufio.Reader, up net.Conn, ubr io.Reader) (int64, error) {
	name := t.route.Name
	t.metrics.WebSocketsTotal.WithLabelValues(name).Inc()
	open := t.metrics.WebSockets.WithLabelValues(name)
	open.Inc()
	defer open.Dec()

	var last atomic.Int64 // unix nanos of the last byte either way
	last.Store(time.Now().UnixNano())
	var ended atomic.Pointer[error]
	stop := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		idle := time.NewTimer(t.route.wsIdle)
		defer idle.Stop()
		var life <-chan time.Time
		if t.route.wsLifetime > 0 {
			lt := time.NewTimer(t.route.wsLifetime)
			defer lt.Stop()
			life = lt.C
		}
		for {
			select {
			case <-stop:
				return
			case <-life:
				ended.Store(&errTunnelLifetime)
			case <-idle.C:
				if since := time.Since(time.Unix(0, last.Load())); since < t.route.wsIdle {
					idle.Reset(t.route.wsIdle - since)
					continue
				}
				ended.Store(&errTunnelIdle)
			}
			_ = client.Close()
			_ = up.Close()
			return
		}
	}()

	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, _ = io.Copy(activity{up, &last}, cbr) // client → upstream, including bytes already read
		closeWrite(up)
	}()
	n, err := io.Copy(activity{client, &last}, ubr)
	closeWrite(client)
	<-upDone
	close(stop)
	<-watchDone
	if e := ended.Load(); e != nil {
		reason := "idle_timeout"
		if *e == errTunnelLifetime {
			reason = "max_lifetime"
		}
		t.metrics.WebSocketsClosed.WithLabelValues(name, reason).Inc()
		return n, *e
	}
	return n, err
}

// activity is a writer that records when bytes last went through.
type activity struct {
	w    io.Writer
	last *atomic.Int64
}

func (a activity) Write(p []byte) (int, error) {
	a.last.Store(time.Now().UnixNano())
	return a.w.Write(p)
}
