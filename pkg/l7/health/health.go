// Package health runs active health checks of upstream endpoints: one
// Checker per endpoint probes it over HTTP, gRPC (grpc.health.v1) or TCP
// every interval and reports when the endpoint's state flips after enough
// consecutive passes or failures.
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// UserAgent is sent with every HTTP probe.
const UserAgent = "edge-agent-health/1"

// maxDrain bounds how much of an HTTP probe's response body is read so the
// connection can be reused; a longer body closes the connection instead.
const maxDrain = 64 << 10

// Checker probes one endpoint address in its own goroutine until Stop is
// called or the context given to Start is done.
type Checker struct {
	address  string
	typ      config.HealthCheckType
	interval time.Duration
	timeout  time.Duration
	rise     int // consecutive passes that make an unhealthy endpoint healthy
	fall     int // consecutive failures that make a healthy endpoint unhealthy
	probe    prober
	onChange func(healthy bool)
	log      *slog.Logger

	healthy atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// prober runs one check of an endpoint; a nil error is a pass. The error's
// text is the reason logged when the endpoint becomes unhealthy.
type prober interface {
	check(ctx context.Context) error
	close()
}

// Start probes address as cfg says, every cfg.Interval (±10%), each probe
// bounded by cfg.Timeout. The first probe runs after a short random delay
// (below half of min(Interval, 1s)) so that many checkers started together
// do not probe in lockstep.
//
// The endpoint starts in the initiallyHealthy state. It becomes unhealthy
// after cfg.UnhealthyThreshold failed probes in a row and healthy again
// after cfg.HealthyThreshold passed probes in a row; onChange (may be nil)
// is called with the new state on each flip, from the checker's goroutine,
// so never concurrently with itself and never after Stop returns. onChange
// must not call Stop.
//
// tlsCfg (nil: plaintext) is used by HTTP probes (https) and gRPC probes;
// when its ServerName is empty, the name of cfg.Host is verified. TCP probes
// only connect. Zero fields of cfg get the config package's defaults. A nil
// log discards.
func Start(ctx context.Context, cfg config.HealthCheck, address string, tlsCfg *tls.Config, initiallyHealthy bool, onChange func(healthy bool), log *slog.Logger) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		address:  address,
		typ:      cfg.Type,
		interval: cfg.Interval.D(),
		timeout:  cfg.Timeout.D(),
		rise:     cfg.HealthyThreshold,
		fall:     cfg.UnhealthyThreshold,
		onChange: onChange,
		log:      log,
		done:     make(chan struct{}),
	}
	if c.interval <= 0 {
		c.interval = config.DefaultHealthCheckInterval
	}
	if c.timeout <= 0 {
		c.timeout = min(config.DefaultHealthCheckTimeout, c.interval)
	}
	if c.rise <= 0 {
		c.rise = config.DefaultHealthyThreshold
	}
	if c.fall <= 0 {
		c.fall = config.DefaultUnhealthyThreshold
	}
	c.healthy.Store(initiallyHealthy)
	tlsCfg = withServerName(tlsCfg, cfg.Host)
	switch cfg.Type {
	case config.HealthCheckHTTP:
		c.probe = newHTTPProber(cfg, address, tlsCfg)
	case config.HealthCheckGRPC:
		c.probe = newGRPCProber(cfg, address, tlsCfg, c.interval, c.timeout)
	case config.HealthCheckTCP:
		c.probe = tcpProber{address: address}
	default:
		c.probe = failProber{err: fmt.Errorf("unknown health check type %q", cfg.Type)}
	}
	ctx, c.cancel = context.WithCancel(ctx)
	go c.run(ctx)
	return c
}

// Stop stops the checker and waits for its goroutine to end (and its
// connections to close). It is idempotent and safe for concurrent use;
// onChange is not called after Stop returns.
func (c *Checker) Stop() {
	c.cancel()
	<-c.done
}

// Healthy reports the endpoint's current state.
func (c *Checker) Healthy() bool { return c.healthy.Load() }

// Address is the probed endpoint address.
func (c *Checker) Address() string { return c.address }

func (c *Checker) run(ctx context.Context) {
	defer close(c.done)
	defer c.probe.close()
	timer := time.NewTimer(firstDelay(c.interval))
	defer timer.Stop()
	healthy := c.healthy.Load()
	streak := 0 // consecutive probes that disagree with the current state
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := c.probe.check(pctx)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-probe: the outcome means nothing
		}
		if (err == nil) == healthy {
			streak = 0
		} else {
			streak++
		}
		threshold := c.rise
		if healthy {
			threshold = c.fall
		}
		if streak >= threshold {
			healthy, streak = !healthy, 0
			c.healthy.Store(healthy)
			if healthy {
				c.log.Info("upstream endpoint healthy", "address", c.address, "type", c.typ)
			} else {
				c.log.Info("upstream endpoint unhealthy", "address", c.address, "type", c.typ,
					"reason", reason(err, c.timeout))
			}
			if c.onChange != nil {
				c.onChange(healthy)
			}
		}
		timer.Reset(jitter(c.interval))
	}
}

// firstDelay spreads the first probes of checkers started together.
func firstDelay(interval time.Duration) time.Duration {
	return rand.N(min(interval, time.Second)/2 + 1)
}

// jitter returns interval ±10%.
func jitter(interval time.Duration) time.Duration {
	return interval - interval/10 + rand.N(interval/5+1)
}

// reason is the short, loggable cause of a failed probe.
func reason(err error, timeout time.Duration) string {
	var pe probeError
	switch {
	case errors.As(err, &pe):
		return pe.msg
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		return "timeout after " + timeout.String()
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused"):
		// gRPC flattens dial errors into the status message.
		return "connection refused"
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code().String() + ": " + s.Message()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout after " + timeout.String()
	}
	return err.Error()
}

// probeError is a probe that got an answer, and the answer was a failure.
type probeError struct{ msg string }

func (e probeError) Error() string { return e.msg }

// withServerName returns a copy of cfg that verifies host's name when cfg
// names no server.
func withServerName(cfg *tls.Config, host string) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" && host != "" {
		name := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			name = h
		}
		cfg.ServerName = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	}
	return cfg
}

// httpProber GETs a path; it passes on an expected status (any 2xx when
// none is configured).
type httpProber struct {
	url      string
	host     string
	expected []int
	tr       *http.Transport
	client   *http.Client
}

func newHTTPProber(cfg config.HealthCheck, address string, tlsCfg *tls.Config) *httpProber {
	path := cfg.Path
	if path == "" {
		path = config.DefaultHealthCheckPath
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	host := cfg.Host
	if host == "" {
		host = address
	}
	tr := &http.Transport{
		// No Proxy: probes go to the endpoint itself, whatever the environment says.
		DialContext:         (&net.Dialer{}).DialContext,
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &httpProber{
		url:      scheme + "://" + address + path,
		host:     host,
		expected: cfg.ExpectedStatuses,
		tr:       tr,
		client: &http.Client{
			Transport: tr,
			// A redirect is an answer, not something to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (p *httpProber) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	req.Host = p.host
	req.Header.Set("User-Agent", UserAgent)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	if len(p.expected) == 0 && resp.StatusCode >= 200 && resp.StatusCode < 300 ||
		slices.Contains(p.expected, resp.StatusCode) {
		return nil
	}
	return probeError{fmt.Sprintf("status %d", resp.StatusCode)}
}

func (p *httpProber) close() { p.tr.CloseIdleConnections() }

// grpcProber calls grpc.health.v1.Health/Check; it passes on SERVING.
type grpcProber struct {
	service string
	conn    *grpc.ClientConn
	client  healthpb.HealthClient
	err     error // the client could not be built
}

func newGRPCProber(cfg config.HealthCheck, address string, tlsCfg *tls.Config, interval, timeout time.Duration) *grpcProber {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
		tlsCfg.NextProtos = []string{"h2"} // not the cluster's http/1.1
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Reconnect at least once per interval so a restarted endpoint is
		// seen by the next probes, not after gRPC's default backoff (up to 2m).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  min(interval, time.Second),
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   interval,
			},
			MinConnectTimeout: timeout,
		}),
		grpc.WithUserAgent(UserAgent),
	}
	if cfg.Host != "" {
		opts = append(opts, grpc.WithAuthority(cfg.Host))
	}
	// passthrough: the address is dialed as is (resolved on each dial, like
	// the other probes), without gRPC's DNS resolver.
	conn, err := grpc.NewClient("passthrough:///"+address, opts...)
	if err != nil {
		return &grpcProber{err: fmt.Errorf("grpc client: %w", err)}
	}
	return &grpcProber{service: cfg.Service, conn: conn, client: healthpb.NewHealthClient(conn)}
}

func (p *grpcProber) check(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	resp, err := p.client.Check(ctx, &healthpb.HealthCheckRequest{Service: p.service})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return probeError{s.String()}
	}
	return nil
}

func (p *grpcProber) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

// tcpProber passes when a connection is established.
type tcpProber struct{ address string }

func (p tcpProber) check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.address)
	if err != nil {
		return err
	}
	_ = conn.Close()
	return nil
}

func (tcpProber) close() {}

// failProber fails every probe, for a check that cannot run.
type failProber struct{ err error }

func (p failProber) check(context.Context) error { return p.err }
func (failProber) close()                        {}
