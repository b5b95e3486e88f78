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
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/client-go/kubernetes"

	"github.com/edge-agent/edge-agent/pkg/admin"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/source"
	"github.com/edge-agent/edge-agent/pkg/k8s/translate"
	"github.com/edge-agent/edge-agent/pkg/l4"
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
	// Ready, when set, receives the agent once the first config is live (tests).
	Ready chan<- *Agent
	// Kubernetes, when set, adds annotated Services to the file's config.
	Kubernetes *KubernetesOptions
	// BPFPinDir is where the L4 data path pins its maps and links
	// (default l4.DefaultPinDir).
	BPFPinDir string
}

// KubernetesOptions configure Kubernetes mode.
type KubernetesOptions struct {
	Client kubernetes.Interface
	// Identity names this agent in Events and the leader-election Lease
	// (the node name in a DaemonSet).
	Identity string
	// LeaseNamespace holds the Lease electing the agent that writes Events;
	// empty makes this agent write them itself.
	LeaseNamespace string
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
	admin   net.Listener
	l4      *l4.Manager

	// reload serialises config changes; base and kube are the two inputs
	// (the file and the latest Kubernetes translation) every snapshot is
	// built from.
	reload sync.Mutex
	base   *config.Config
	kube   *translate.Result
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
	pinDir := opts.BPFPinDir
	if pinDir == "" {
		pinDir = l4.DefaultPinDir
	}
	a.l4 = l4.NewManager(log.With("part", "l4"), pinDir)
	defer a.l4.Close()
	a.metrics.Registry.MustRegister(l4.NewCollector(a.l4))
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

	base, err := a.loadBase()
	if err != nil {
		return abort(err)
	}
	cfg, err := a.compose(base, nil)
	if err == nil {
		err = a.apply(cfg, nil)
	}
	if err != nil {
		return abort(err)
	}
	a.base = base
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

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	kubeDone := make(chan struct{})
	firstKube := make(chan struct{})
	if k := opts.Kubernetes; k != nil {
		go func() {
			defer close(kubeDone)
			var once sync.Once
			err := source.Run(ctx, source.Options{
				Client:         k.Client,
				Settings:       base.Kubernetes,
				Log:            log.With("source", "kubernetes"),
				Identity:       k.Identity,
				LeaseNamespace: k.LeaseNamespace,
				Publish: func(res *translate.Result) {
					a.publishKubernetes(res)
					once.Do(func() { close(firstKube) })
				},
			})
			if err != nil {
				log.Error("kubernetes source stopped", "err", err.Error())
				stop()
			}
		}()
		// Not ready until the Services are in: a node that serves only the
		// file's routes would fail every team's traffic.
		select {
		case <-firstKube:
		case <-ctx.Done():
		}
	} else {
		close(kubeDone)
	}
	a.ready.Store(true)
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
	<-kubeDone
	_ = adminSrv.Close()
	if err != nil {
		log.Warn("drain incomplete", "err", err)
	} else {
		log.Info("drained")
	}
	return nil
}

// loadBase reads the config file, with the admin address override.
func (a *Agent) loadBase() (*config.Config, error) {
	load := config.Load
	if a.opts.Kubernetes != nil {
		load = config.LoadKubernetesBase
	}
	cfg, err := load(a.opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if a.opts.AdminAddress != "" {
		cfg.Admin.Address = a.opts.AdminAddress
	}
	return cfg, nil
}

// compose builds the config to serve from the file's config and the
// latest Kubernetes translation (nil before the first one).
func (a *Agent) compose(base *config.Config, kube *translate.Result) (*config.Config, error) {
	if a.opts.Kubernetes == nil {
		return base, nil
	}
	if kube == nil {
		kube = &translate.Result{}
	}
	return translate.Merge(base, kube)
}

// publishKubernetes serves a new Kubernetes translation. The translator
// already dropped invalid Services, so a failure here is a bug (or a file
// route that collides); the previous snapshot keeps serving.
func (a *Agent) publishKubernetes(res *translate.Result) {
	a.reload.Lock()
	defer a.reload.Unlock()
	cfg, err := a.compose(a.base, res)
	if err == nil {
		err = a.apply(cfg, res.Status)
	}
	if err != nil {
		a.metrics.ConfigReloads.WithLabelValues("error").Inc()
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("kubernetes config rejected; the previous config keeps serving", "err", err.Error())
		return
	}
	a.kube = res
	a.metrics.ConfigReloads.WithLabelValues("success").Inc()
	a.metrics.ConfigErrors.Reset()
	a.metrics.KubernetesServices.Reset()
	for _, st := range []string{translate.StateServing, translate.StateServingLastGood, translate.StateNotServing} {
		a.metrics.KubernetesServices.WithLabelValues(st)
	}
	for _, st := range res.Status {
		a.metrics.KubernetesServices.WithLabelValues(st.State).Inc()
		for _, p := range st.Problems {
			a.metrics.ConfigErrors.WithLabelValues(st.Namespace, st.Name, p.Reason).Inc()
		}
	}
	a.log.Info("kubernetes config applied", "generation", a.gen.Load(), "services", len(res.Status), "routes", len(res.Routes))
}

// apply publishes cfg as the next snapshot, or returns why it cannot.
func (a *Agent) apply(cfg *config.Config, status []translate.ServiceStatus) error {
	src := a.opts.ConfigPath
	if a.opts.Kubernetes != nil {
		src += " + kubernetes"
	}
	snap := &config.Snapshot{Config: cfg, Generation: a.gen.Load() + 1, Source: src, LoadedAt: time.Now()}
	if err := a.proxy.Apply(snap); err != nil {
		return err
	}
	// The L4 data path follows the same snapshot. Its failures are the
	// kernel's (the config is valid): they are logged and counted, and L7
	// keeps the new snapshot.
	if err := a.l4.Apply(cfg.L4); err != nil {
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("L4 data path not updated", "err", err.Error())
	}
	st := map[string]any{"l4": a.l4.Status()}
	if status != nil {
		st["kubernetes"] = map[string]any{"services": status}
	}
	snap.Status = st
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
	base, err := a.loadBase()
	if err == nil {
		if cur := a.snap.Load(); cur != nil && base.Admin.Address != cur.Config.Admin.Address {
			a.log.Warn("admin.address changes need a restart; keeping the old one", "address", cur.Config.Admin.Address)
			base.Admin.Address = cur.Config.Admin.Address
		}
		if cur := a.base; cur != nil && a.opts.Kubernetes != nil && !reflect.DeepEqual(base.Kubernetes, cur.Kubernetes) {
			a.log.Warn("kubernetes settings change on restart; keeping the old ones")
			base.Kubernetes = cur.Kubernetes
		}
		var cfg *config.Config
		if cfg, err = a.compose(base, a.kube); err == nil {
			var status []translate.ServiceStatus
			if a.kube != nil {
				status = a.kube.Status
			}
			if err = a.apply(cfg, status); err == nil {
				a.base = base
			}
		}
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
