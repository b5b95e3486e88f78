package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// tunnel is a relay's limits and accounting: a WebSocket on its route, or
// a TCP listener's connection.
type tunnel struct {
	idle, lifetime time.Duration // lifetime 0: none
	open           prometheus.Gauge
	total          prometheus.Counter
	// closed counts tunnels the proxy ended, by reason.
	closed func(reason string)
}

// wsTunnel is a WebSocket tunnel on route r.
func wsTunnel(r *Route, m *metrics.Metrics) tunnel {
	return tunnel{idle: r.wsIdle, lifetime: r.wsLifetime,
		open: m.WebSockets.WithLabelValues(r.Name), total: m.WebSocketsTotal.WithLabelValues(r.Name),
		closed: func(reason string) { m.WebSocketsClosed.WithLabelValues(r.Name, reason).Inc() }}
}

var (
	errTunnelIdle     = errors.New("websocket idle timeout")
	errTunnelLifetime = errors.New("websocket max lifetime")
)

// relay copies bytes both ways between the client (reading from cbr) and
// the upstream until both directions are done (each side's end of input
// is passed on as a half-close), or until the idle timeout or maximum
// lifetime ends the tunnel (both sockets are closed).
// It returns the bytes sent to the client. Nothing in it depends on the
// config snapshot: reloads leave established tunnels alone.
func (t tunnel) relay(client net.Conn, cbr *bufio.Reader, up net.Conn, ubr io.Reader) (int64, error) {
	t.total.Inc()
	t.open.Inc()
	defer t.open.Dec()

	var last atomic.Int64 // unix nanos of the last byte either way
	last.Store(time.Now().UnixNano())
	var ended atomic.Pointer[error]
	stop := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		idle := time.NewTimer(t.idle)
		defer idle.Stop()
		var life <-chan time.Time
		if t.lifetime > 0 {
			lt := time.NewTimer(t.lifetime)
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
				if since := time.Since(time.Unix(0, last.Load())); since < t.idle {
					idle.Reset(t.idle - since)
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
		t.closed(reason)
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
