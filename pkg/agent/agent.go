// Package agent runs edge-agent: it loads config from its source, applies
// each new snapshot to the proxy, serves the admin endpoint and handles
// signals (SIGHUP reloads, SIGTERM drains).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/edge-agent/edge-agent/pkg/admin"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/proxy"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// Options configure a standalone (file-based) agent.
type Options struct {
	ConfigPath string
	// AdminAddress overrides admin.address from the file when set.
	AdminAddress string
	Log          *slog.Logger
	AccessLog    *slog.Logger
	// Ready, when set, is closed once the first config is live (tests).
	Ready chan<- *Agent
}

// Agent is a running edge-agent.
type Agent struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics.Metrics
	proxy   *proxy.Server
	snap    atomic.Pointer[config.Snapshot]
	gen     atomic.Uint64
	ready   atomic.Bool
	reload  sync.Mutex
	admin   net.Listener
}

// Snapshot implements admin.Source.
func (a *Agent) Snapshot() *config.Snapshot { return a.snap.Load() }

// Ready implements admin.Source.
func (a *Agent) Ready() bool { return a.ready.Load() }

// Proxy exposes the proxy server (tests read bound addresses from it).
func (a *Agent) Proxy() *proxy.Server { return a.proxy }

// AdminAddr is the admin server's bound address.
func (a *Agent) AdminAddr() net.Addr { return a.admin.Addr() }

// Run loads the config, serves until ctx ends or SIGTERM/SIGINT arrives,
// then drains. An invalid initial config is an error; an invalid reload is
// logged, counted and ignored.
func Run(ctx context.Context, opts Options) error {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	accessLog := opts.AccessLog
	if accessLog == nil {
		accessLog = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	a := &Agent{opts: opts, log: log, metrics: metrics.New()}
	a.proxy = proxy.New(log, accessLog, a.metrics)
	// abort releases what the proxy holds (bound listeners, the upstream
	// sweeper) when Run fails before serving.
	abort := func(err error) error {
		dctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.proxy.Shutdown(dctx)
		return err
	}
	// Watch before the first load, so a change written between the load and
	// the watch is not missed, and file watching is live once Ready fires.
	w := a.newWatcher()
	if w != nil {
		defer w.Close()
	}

	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return abort(err)
	}
	if opts.AdminAddress != "" {
		cfg.Admin.Address = opts.AdminAddress
	}
	if err := a.apply(cfg); err != nil {
		return abort(err)
	}
	lc := net.ListenConfig{}
	a.admin, err = lc.Listen(ctx, "tcp", cfg.Admin.Address)
	if err != nil {
		return abort(fmt.Errorf("admin listener: %w", err))
	}
	adminSrv := &http.Server{Handler: admin.Handler(a, a.metrics), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := adminSrv.Serve(a.admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "err", err)
		}
	}()
	log.Info("admin listening", "address", a.admin.Addr().String())
	a.ready.Store(true)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		a.watch(ctx, hup, w)
	}()
	if opts.Ready != nil {
		opts.Ready <- a
	}

	<-ctx.Done()
	a.ready.Store(false)
	drain := a.snap.Load().Config.Server.DrainTimeout.D()
	log.Info("shutting down: draining connections", "deadline", drain.String())
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err = a.proxy.Shutdown(dctx)
	<-watchDone
	_ = adminSrv.Close()
	if err != nil {
		log.Warn("drain incomplete", "err", err)
	} else {
		log.Info("drained")
	}
	return nil
}

// apply publishes cfg as the next snapshot, or returns why it cannot.
func (a *Agent) apply(cfg *config.Config) error {
	snap := &config.Snapshot{Config: cfg, Generation: a.gen.Load() + 1, Source: a.opts.ConfigPath, LoadedAt: time.Now()}
	if err := a.proxy.Apply(snap); err != nil {
		return err
	}
	a.gen.Store(snap.Generation)
	a.snap.Store(snap)
	a.metrics.ConfigGeneration.Set(float64(snap.Generation))
	a.metrics.ConfigLastSuccess.SetToCurrentTime()
	return nil
}

// Reload re-reads the config file; on any error the running config stays.
func (a *Agent) Reload() error {
	a.reload.Lock()
	defer a.reload.Unlock()
	cfg, err := config.Load(a.opts.ConfigPath)
	if err == nil {
		if a.opts.AdminAddress != "" {
			cfg.Admin.Address = a.opts.AdminAddress
		}
		if cur := a.snap.Load(); cur != nil && cfg.Admin.Address != cur.Config.Admin.Address {
			a.log.Warn("admin.address changes need a restart; keeping the old one", "address", cur.Config.Admin.Address)
			cfg.Admin.Address = cur.Config.Admin.Address
		}
		err = a.apply(cfg)
	}
	if err != nil {
		a.metrics.ConfigReloads.WithLabelValues("error").Inc()
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("config reload rejected; the previous config keeps serving", "file", a.opts.ConfigPath, "err", err.Error())
		return err
	}
	a.metrics.ConfigReloads.WithLabelValues("success").Inc()
	a.log.Info("config reloaded", "generation", a.gen.Load())
	return nil
}

// newWatcher watches the config file's directory, or returns nil (SIGHUP
// still reloads).
func (a *Agent) newWatcher() *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Warn("file watching unavailable; reload with SIGHUP", "err", err)
		return nil
	}
	if err := w.Add(filepath.Dir(a.opts.ConfigPath)); err != nil {
		a.log.Warn("file watching unavailable; reload with SIGHUP", "err", err)
	}
	return w
}

// watch reloads on SIGHUP and when the config file changes. It watches the
// directory, not the file, so editors' rename-on-save and Kubernetes
// ConfigMap symlink swaps are seen.
func (a *Agent) watch(ctx context.Context, hup <-chan os.Signal, w *fsnotify.Watcher) {
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	// Editors write in several steps: wait for the writes to settle.
	const settle = 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	target, _ := filepath.Abs(a.opts.ConfigPath)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			a.log.Info("SIGHUP: reloading config")
			_ = a.Reload()
		case ev := <-events:
			if p, _ := filepath.Abs(ev.Name); p == target || filepath.Base(ev.Name) == "..data" {
				timer.Reset(settle)
			}
		case err := <-errs:
			a.log.Warn("file watch error", "err", err)
		case <-timer.C:
			_ = a.Reload()
		}
	}
}
