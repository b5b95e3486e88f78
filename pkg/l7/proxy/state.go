// Package proxy is the L7 data path: listeners, protocol detection, the
// HTTP/1.1 and HTTP/2 front-ends and the request core they share (routing,
// redirects, rewrites, header policy, upstream exchange, metrics, logs).
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/extauth"
	"github.com/edge-agent/edge-agent/pkg/l7/jwtauth"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/router"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/waf"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

// State is everything compiled from one Snapshot. Requests load it once and
// keep it to the end, so a reload never changes a request half-way.
type State struct {
	Snapshot  *config.Snapshot
	listeners map[string]*listenerState
	server    serverSettings
	noRoute   *metrics.RouteStats
	metrics   *metrics.Metrics
	clusters  map[string]*upstream.Cluster
	// runtimes carry route policy state (rate-limit buckets, retry
	// budgets) to the next State while its config is unchanged.
	runtimes map[string]*routeRuntime
	// trusted are the proxies whose X-Forwarded-For names the client.
	trusted []netip.Prefix
	// extDefault is security.extAuth's client, for routes without their own.
	extDefault *extAuthRuntime
	// wafSlots bound the WAF checks running at once (each costs
	// milliseconds of CPU): more wait, so a flood of inspected requests
	// cannot take every core from other routes. Shared by all States.
	wafSlots chan struct{}
}

type serverSettings struct {
	accessLog         bool
	requestIDHeader   []byte
	maxHeaderBytes    int
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	writeTimeout      time.Duration
}

type listenerState struct {
	name  string
	table *router.Table[*Route]
	tls   bool
}

// Route is the runtime form of a config.Route.
type Route struct {
	Name     string
	backends []backend
	total    int
	redirect *config.Redirect
	prefix   string // the matched prefix, for prefix rewrites and redirects
	rewrite  *config.Rewrite
	reqOps   headerOps
	respOps  headerOps
	timeout  time.Duration
	// WebSocket tunnel limits (maxLifetime 0: none).
	wsIdle, wsLifetime time.Duration
	cors               *corsPolicy
	// Traffic policy.
	streaming   bool
	idleTimeout time.Duration
	retry       *retryPolicy
	rateLimit   *rateLimitPolicy
	mirror      *mirrorPolicy
	fault       *faultPolicy
	// Access control.
	ipRules   *ipRules
	apiKeys   *apiKeys
	basicAuth *basicAuth
	jwt       *jwtauth.Validator
	extAuth   extauth.Authorizer
	waf       *waf.WAF
	// authDrop are incoming headers never sent upstream: the API key, and
	// the headers JWT claims fill (a client must not pose as a claim).
	authDrop []string
	// maxBody bounds the request body (-1: none).
	maxBody int64
	// maxBodyGRPC: the limit also applies to gRPC calls (the route set it).
	maxBodyGRPC bool
}

type backend struct {
	cluster *upstream.Cluster
	weight  int
	stats   *metrics.RouteStats
}

// headerOps is a route's header mutation, pre-split for the hot path.
type headerOps struct {
	drop [][]byte // names to remove from the incoming set (remove ∪ set)
	set  message.Headers
	add  message.Headers
}

func compileOps(hm *config.HeaderMutations) headerOps {
	var ops headerOps
	if hm == nil {
		return ops
	}
	for _, n := range hm.Remove {
		ops.drop = append(ops.drop, []byte(strings.ToLower(n)))
	}
	for _, h := range hm.Set {
		ops.drop = append(ops.drop, []byte(strings.ToLower(h.Name)))
		ops.set = append(ops.set, message.Header{Name: []byte(h.Name), Value: []byte(h.Value)})
	}
	for _, h := range hm.Add {
		ops.add = append(ops.add, message.Header{Name: []byte(h.Name), Value: []byte(h.Value)})
	}
	return ops
}

func (o *headerOps) drops(name []byte) bool {
	for _, d := range o.drop {
		if len(d) == len(name) && message.EqualFold(name, string(d)) {
			return true
		}
	}
	return false
}

// Compile builds the State for snap, with clusters from the manager;
// prev (nil at first) hands over route policy state. log reports
// background work (JWKS refreshes).
func Compile(snap *config.Snapshot, clusters map[string]*upstream.Cluster, m *metrics.Metrics, prev *State, log *slog.Logger) (st *State, err error) {
	c := snap.Config
	st = &State{
		Snapshot:  snap,
		listeners: map[string]*listenerState{},
		server: serverSettings{
			accessLog:         *c.Server.AccessLog,
			requestIDHeader:   []byte(c.Server.RequestIDHeader),
			maxHeaderBytes:    c.Server.MaxHeaderBytes,
			readHeaderTimeout: c.Server.ReadHeaderTimeout.D(),
			idleTimeout:       c.Server.IdleTimeout.D(),
			writeTimeout:      c.Server.WriteTimeout.D(),
		},
		noRoute:  m.RouteStats("", ""),
		metrics:  m,
		clusters: clusters,
		runtimes: map[string]*routeRuntime{},
		trusted:  parsePrefixes(c.Security.TrustedProxies),
	}
	if prev != nil {
		st.wafSlots = prev.wafSlots
	} else {
		st.wafSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))
	}
	// On failure, close what this compile started; on success, what the
	// previous State held and this one does not.
	defer func() {
		if err != nil {
			for name, rt := range st.runtimes {
				var old *routeRuntime
				if prev != nil {
					old = prev.runtimes[name]
				}
				if old == nil {
					old = &routeRuntime{}
				}
				old.retireInto(rt)
			}
			if st.extDefault != nil && (prev == nil || prev.extDefault != st.extDefault) {
				st.extDefault.auth.Close()
			}
			return
		}
		if prev != nil {
			for name, old := range prev.runtimes {
				old.retire(st.runtimes[name])
			}
			if prev.extDefault != nil && prev.extDefault != st.extDefault {
				prev.extDefault.auth.Close()
			}
		}
	}()
	if a := c.Security.ExtAuth; a != nil {
		var prevExt *extAuthRuntime
		if prev != nil {
			prevExt = prev.extDefault
		}
		if st.extDefault, err = extAuthFor(a, clusters, prevExt); err != nil {
			return nil, config.Errors{{Path: "security.extAuth", Reason: err.Error()}}
		}
	}
	routes := make([]*Route, len(c.Routes))
	for i := range c.Routes {
		rc := &c.Routes[i]
		r := &Route{Name: rc.Name, redirect: rc.Redirect, rewrite: rc.Rewrite,
			reqOps: compileOps(rc.RequestHeaders), respOps: compileOps(rc.ResponseHeaders),
			timeout: rc.Timeout.D(), wsIdle: rc.WebSocket.IdleTimeout.D(), wsLifetime: rc.WebSocket.MaxLifetime.D(),
			cors: compileCORS(rc.CORS), streaming: rc.Streaming, idleTimeout: rc.IdleTimeout.D()}
		var prevRT *routeRuntime
		if prev != nil {
			prevRT = prev.runtimes[rc.Name]
		}
		rt := runtimeFor(rc, prevRT)
		st.runtimes[rc.Name] = rt
		r.retry = compileRetry(rc, rt, m)
		r.rateLimit = compileRateLimit(rc, rt, m)
		r.fault = compileFault(rc, m)
		r.ipRules = compileIPRules(rc.IPRules)
		if r.apiKeys, err = compileAPIKeys(rc.APIKeys); err != nil {
			return nil, config.Errors{{Path: fmt.Sprintf("routes[%d].apiKeys", i), Reason: err.Error()}}
		}
		if r.basicAuth, err = compileBasicAuth(rc.BasicAuth); err != nil {
			return nil, config.Errors{{Path: fmt.Sprintf("routes[%d].basicAuth", i), Reason: err.Error()}}
		}
		if rc.JWT != nil {
			if rt.jwt == nil {
				v, err := jwtauth.New(context.Background(), *rc.JWT, log, nil)
				if err != nil {
					return nil, config.Errors{{Path: fmt.Sprintf("routes[%d].jwt", i), Reason: err.Error()}}
				}
				cfg := *rc.JWT
				rt.jwtCfg, rt.jwt = &cfg, v
			}
			r.jwt = rt.jwt
			r.authDrop = append(r.authDrop, rt.jwt.ClaimHeaderNames()...)
		}
		if r.apiKeys != nil {
			r.authDrop = append(r.authDrop, r.apiKeys.header)
		}
		if rc.WAF != nil {
			if rt.waf == nil {
				w, err := waf.New(*rc.WAF, log)
				if err != nil {
					return nil, config.Errors{{Path: fmt.Sprintf("routes[%d].waf", i), Reason: err.Error()}}
				}
				cfg := *rc.WAF
				rt.wafCfg, rt.waf = &cfg, w
			}
			r.waf = rt.waf
		}
		switch a := rc.ExtAuth; {
		case a != nil && !a.Bypass:
			var prevExt *extAuthRuntime
			if prevRT != nil {
				prevExt = prevRT.ext
			}
			if rt.ext, err = extAuthFor(a, clusters, prevExt); err != nil {
				return nil, config.Errors{{Path: fmt.Sprintf("routes[%d].extAuth", i), Reason: err.Error()}}
			}
			r.extAuth = rt.ext.auth
			if a.HTTP != nil {
				// What the service may set, a client may not send.
				r.authDrop = append(r.authDrop, a.HTTP.AllowedUpstreamHeaders...)
			}
		case a == nil && st.extDefault != nil:
			r.extAuth = st.extDefault.auth
			if h := st.extDefault.cfg.HTTP; h != nil {
				r.authDrop = append(r.authDrop, h.AllowedUpstreamHeaders...)
			}
		}
		r.maxBody, r.maxBodyGRPC = c.Security.MaxBodyBytes, false
		if rc.MaxBodyBytes > 0 {
			r.maxBody, r.maxBodyGRPC = rc.MaxBodyBytes, true
		}
		if rc.Mirror != nil {
			if clusters[rc.Mirror.Cluster] == nil {
				return nil, fmt.Errorf("route %q: mirror cluster %q not built", rc.Name, rc.Mirror.Cluster)
			}
			r.mirror = compileMirror(rc, rt, clusters, m)
		}
		pm := rc.Match.Path
		if rc.Match.GRPC != nil {
			pm = rc.Match.GRPC.PathMatch()
		}
		if pm != nil && pm.Prefix != "" {
			r.prefix = strings.TrimRight(pm.Prefix, "/")
		}
		for _, b := range rc.Backends {
			cl := clusters[b.Cluster]
			if cl == nil {
				return nil, fmt.Errorf("route %q: cluster %q not built", rc.Name, b.Cluster)
			}
			if *b.Weight == 0 {
				continue
			}
			r.backends = append(r.backends, backend{cluster: cl, weight: *b.Weight, stats: m.RouteStats(rc.Name, b.Cluster)})
			r.total += *b.Weight
		}
		if r.redirect != nil {
			r.backends = []backend{{stats: m.RouteStats(rc.Name, "")}}
		}
		routes[i] = r
	}
	for _, l := range c.Listeners {
		var entries []router.Entry[*Route]
		for i := range c.Routes {
			rc := &c.Routes[i]
			if len(rc.Listeners) > 0 && !contains(rc.Listeners, l.Name) {
				continue
			}
			entries = append(entries, router.Entry[*Route]{Hosts: rc.Hosts, Match: rc.Match, Value: routes[i]})
		}
		table, err := router.New(entries)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		st.listeners[l.Name] = &listenerState{name: l.Name, table: table, tls: l.Protocol == config.ListenerHTTPS}
		// auto listeners: TLS or not is known per connection (req.TLS).
	}
	return st, nil
}

// listener returns the routing state for a socket under its current name,
// or nil when its address is no longer configured.
func (st *State) listener(l *listener) *listenerState {
	if l == nil {
		return nil
	}
	return st.listeners[l.mode.Load().name]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
