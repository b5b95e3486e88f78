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
	"net/netip"
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
	"github.com/edge-agent/edge-agent/pkg/handover"
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
	// WaitAfterHandover keeps the process alive, idle, after it handed
	// over to a successor and drained, until SIGTERM: in a DaemonSet an
	// exit would restart the container, which would take over again.
	WaitAfterHandover bool
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
	admin   atomic.Pointer[net.Listener]
	l4      *l4.Manager
	// deny is the XDP deny list (security.denyList), applied with L4.
	deny *l4.DenyManager
	// steer is the sk_lookup program feeding the proxy's one socket (nil
	// without steering); steerTargets is what its table holds.
	steer        *l4.Steering
	steerTargets []l4.SteerTarget

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
func (a *Agent) AdminAddr() net.Addr {
	if ln := a.admin.Load(); ln != nil {
		return (*ln).Addr()
	}
	return nil
}

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
	a.deny = l4.NewDenyManager(log.With("part", "xdp-deny"), pinDir)
	defer a.deny.Close()
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
	if err == nil && cfg.Steering.Enabled {
		// Loaded (pinned maps reused) but attached only at the takeover.
		if a.steer, err = l4.LoadSteering(pinDir); err == nil {
			defer a.steer.Close()
		}
	}
	if err == nil {
		err = a.apply(cfg, nil)
	}
	if err != nil {
		return abort(err)
	}
	a.base = base

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// run ends on a signal or when a successor takes over; kctx only on a
	// signal (a handed-over agent may wait for it).
	run, endRun := context.WithCancel(ctx)
	defer endRun()
	ctx, kctx := run, ctx
	adminSrv := &http.Server{Handler: admin.Handler(a, a.metrics), ReadHeaderTimeout: 10 * time.Second}
	serveAdmin := func(ln net.Listener) {
		a.admin.Store(&ln)
		go func() {
			if err := adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server failed", "err", err)
			}
		}()
		log.Info("admin listening", "address", ln.Addr().String())
	}
	// With steering the admin address may still be a running agent's: it
	// is bound after the hand-over.
	if a.steer == nil {
		ln, err := listenAdmin(ctx, cfg.Admin.Address)
		if err != nil {
			return abort(err)
		}
		serveAdmin(ln)
	}
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
		// Not ready (and not taking over) until the Services are in: a
		// node that serves only the file's routes would fail every team's
		// traffic.
		select {
		case <-firstKube:
		case <-ctx.Done():
		}
	} else {
		close(kubeDone)
	}
	// With steering, take over from a running agent: from the SOCKMAP
	// update on, new connections come here; the old agent then releases
	// the admin address and drains what it holds.
	handedOver := make(chan struct{})
	if a.steer != nil && ctx.Err() == nil {
		ho, err := a.takeOver(ctx, cfg, serveAdmin)
		if err != nil {
			endRun()
			<-kubeDone
			return abort(err)
		}
		if ho != nil {
			defer ho.Close()
			go func() {
				if ho.Serve(run, func() {
					a.ready.Store(false)
					_ = adminSrv.Close()
					close(handedOver)
				}) {
					endRun()
				}
			}()
		}
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
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	succeeded := false
	select {
	case <-handedOver:
		succeeded = true
		// Connections that reached the socket before the SOCKMAP update
		// wait in its queue: serve them too, then drain.
		a.proxy.HandOver(handOverQuiet)
		log.Info("handed over to a new agent: draining connections", "deadline", drain.String())
	default:
		log.Info("shutting down: draining connections", "deadline", drain.String())
	}
	err = a.proxy.Shutdown(dctx)
	<-watchDone
	<-kubeDone
	_ = adminSrv.Close()
	if err != nil {
		log.Warn("drain incomplete", "err", err)
	} else {
		log.Info("drained")
	}
	if succeeded && opts.WaitAfterHandover {
		log.Info("handed over; waiting for SIGTERM")
		<-kctx.Done()
	}
	return nil
}

// handOverQuiet is how long a handed-over agent keeps accepting after its
// accept queue went empty: connections still completing their handshake
// on its socket land in the queue within a round trip.
const handOverQuiet = 250 * time.Millisecond

// takeOver makes this agent the one the kernel steers to. It changes
// nothing when it cannot reach a running agent's handover socket for a
// reason other than there being none. Once its socket is in the SOCKMAP it
// never fails: a predecessor that does not answer, an admin address still
// taken, or a handover socket that cannot be created are logged, and
// traffic is served regardless (an abort then would leave the node with
// no socket at all).
func (a *Agent) takeOver(ctx context.Context, cfg *config.Config, serveAdmin func(net.Listener)) (*handover.Server, error) {
	st := cfg.Steering
	hctx, cancel := context.WithTimeout(ctx, st.HandoverTimeout.D())
	defer cancel()
	peer, err := handover.Connect(hctx, st.HandoverSocket)
	if err != nil {
		return nil, err
	}
	if peer != nil {
		defer peer.Close()
	}
	if err := a.steer.SetProxySocket(a.proxy.SteeredListener()); err != nil {
		return nil, err
	}
	// Attached after the socket is in: should this version have recreated
	// the maps, the old program keeps steering until ours, with a full
	// table and a socket, replaces it.
	if err := a.steer.AttachNetns("/proc/self/ns/net"); err != nil {
		a.log.Error("steering program not attached; the previous one (if any) keeps steering", "err", err.Error())
	}
	if peer != nil {
		if err := peer.HandOver(hctx); err != nil {
			a.log.Error("previous agent did not hand over; serving anyway", "socket", st.HandoverSocket, "err", err.Error())
		} else {
			a.log.Info("took over from the previous agent", "socket", st.HandoverSocket)
		}
	}
	a.bindAdmin(ctx, hctx, cfg.Admin.Address, serveAdmin)
	ho, err := handover.Listen(st.HandoverSocket, a.log.With("part", "handover"))
	if err != nil {
		a.log.Error("no handover socket: a new agent will not be able to take over without refusing connections", "err", err.Error())
		return nil, nil
	}
	return ho, nil
}

// bindAdmin binds the admin address, retrying while a predecessor still
// holds it: until wait ends here, then in the background until ctx ends.
func (a *Agent) bindAdmin(ctx, wait context.Context, addr string, serveAdmin func(net.Listener)) {
	for {
		ln, err := listenAdmin(ctx, addr)
		if err == nil {
			serveAdmin(ln)
			return
		}
		select {
		case <-wait.Done():
			a.log.Error("admin address still taken; retrying in the background (not ready until it is bound)", "err", err.Error())
			go func() {
				t := time.NewTicker(time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if ln, err := listenAdmin(ctx, addr); err == nil {
						serveAdmin(ln)
						return
					}
				}
			}()
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func listenAdmin(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	return ln, nil
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
	// keeps the new snapshot. A destination moving between L4 and L7 is
	// steered before its L4 service goes and unsteered after it comes, so
	// every new connection finds one of the two.
	targets := steerTargets(cfg)
	if a.steer != nil {
		a.syncSteering(append(targets[:len(targets):len(targets)], a.steerTargets...), cfg)
	}
	if err := a.l4.Apply(cfg.L4); err != nil {
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("L4 data path not updated", "err", err.Error())
	}
	if err := a.deny.Apply(cfg.Security.DenyList, cfg.L4.Interfaces); err != nil {
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("XDP deny list not updated", "err", err.Error())
	}
	if a.steer != nil {
		a.syncSteering(targets, cfg)
		a.steerTargets = targets
	}
	st := map[string]any{"l4": a.l4.Status(), "xdpDeny": a.deny.Status()}
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

// syncSteering makes the kernel steer targets, and route them locally
// when they are not the node's addresses (cfg's L4 VIPs keep their routes).
func (a *Agent) syncSteering(targets []l4.SteerTarget, cfg *config.Config) {
	if err := a.steer.SyncTargets(targets); err != nil {
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("steering table not updated", "err", err.Error())
	}
	if err := l4.SyncLocalRoutes(steeredIPs(targets), l4VIPs(cfg)); err != nil {
		a.metrics.ConfigReloadErrors.Inc()
		a.log.Error("local routes for steered addresses not updated", "err", err.Error())
	}
}

// steerTargets lists the destinations the kernel hands to the proxy:
// every listener address and steer entry (validated already).
func steerTargets(cfg *config.Config) []l4.SteerTarget {
	if !cfg.Steering.Enabled {
		return nil
	}
	var out []l4.SteerTarget
	for _, l := range cfg.Listeners {
		for _, s := range append([]string{l.Address}, l.Steer...) {
			if ap, err := config.SteeredAddress(s); err == nil {
				out = append(out, l4.SteerTarget{Addr: ap, Proto: l4.ProtoTCP})
			}
		}
	}
	return out
}

// steeredIPs are the steered addresses other than "every address".
func steeredIPs(targets []l4.SteerTarget) []netip.Addr {
	var out []netip.Addr
	for _, t := range targets {
		if !t.Addr.Addr().IsUnspecified() {
			out = append(out, t.Addr.Addr())
		}
	}
	return out
}

// l4VIPs are the addresses of L4 services.
func l4VIPs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, s := range cfg.L4.Services {
		if ap, err := netip.ParseAddrPort(s.Address); err == nil {
			out = append(out, ap.Addr())
		}
	}
	return out
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
		if cur := a.snap.Load(); cur != nil && !reflect.DeepEqual(base.Steering, cur.Config.Steering) {
			a.log.Warn("steering settings change on restart; keeping the old ones")
			base.Steering = cur.Config.Steering
			if !base.Steering.Enabled {
				for i := range base.Listeners {
					base.Listeners[i].Steer = nil
				}
			}
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
