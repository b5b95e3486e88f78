// Package metrics defines edge-agent's Prometheus metrics. Every name starts
// with edge_agent_. Hot-path users bind labels once (RouteStats) so a request
// costs a few atomic adds.
package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector, registered on its own Registry (no globals).
type Metrics struct {
	Registry *prometheus.Registry

	Requests           *prometheus.CounterVec
	RequestDuration    *prometheus.HistogramVec
	DownstreamActive   *prometheus.GaugeVec
	DownstreamTotal    *prometheus.CounterVec
	UpstreamActive     *prometheus.GaugeVec
	UpstreamConnects   *prometheus.CounterVec
	UpstreamRequests   *prometheus.GaugeVec
	ConfigGeneration   prometheus.Gauge
	ConfigReloads      *prometheus.CounterVec
	ConfigReloadErrors prometheus.Counter
	ConfigLastSuccess  prometheus.Gauge
	// ConfigErrors counts each Kubernetes Service's current problems.
	ConfigErrors *prometheus.GaugeVec
	// KubernetesServices counts annotated Services by state.
	KubernetesServices *prometheus.GaugeVec
	// SteeredUnknown counts steered connections for a destination no
	// listener serves (a reload removed it while they were queued).
	SteeredUnknown prometheus.Counter
	// WebSockets counts open WebSocket tunnels by route; WebSocketsTotal
	// those opened, and WebSocketsClosed those the proxy ended, by reason.
	WebSockets       *prometheus.GaugeVec
	WebSocketsTotal  *prometheus.CounterVec
	WebSocketsClosed *prometheus.CounterVec
	// TCP listeners: open and opened connections, and those the proxy
	// closed or refused, by reason.
	TCPConnections      *prometheus.GaugeVec
	TCPConnectionsTotal *prometheus.CounterVec
	TCPClosed           *prometheus.CounterVec
	// Traffic policy.
	Retries          *prometheus.CounterVec
	BreakerOverflows *prometheus.CounterVec
	OutlierEjections *prometheus.CounterVec
	EndpointsEjected *prometheus.GaugeVec
	EndpointHealthy  *prometheus.GaugeVec
	RateLimited      *prometheus.CounterVec
	RateLimitKeys    *prometheus.GaugeVec
	MirroredRequests *prometheus.CounterVec
	FaultsInjected   *prometheus.CounterVec
}

// New creates and registers all collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_http_requests_total",
			Help: "HTTP requests answered, by route, cluster and status code.",
		}, []string{"route", "cluster", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edge_agent_http_request_duration_seconds",
			Help:    "Time from request head to the end of the response, by route and cluster.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "cluster"}),
		DownstreamActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_downstream_connections",
			Help: "Open client connections, by listener.",
		}, []string{"listener"}),
		DownstreamTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_downstream_connections_total",
			Help: "Client connections accepted, by listener.",
		}, []string{"listener"}),
		UpstreamActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_upstream_connections",
			Help: "Open upstream connections (busy and idle), by cluster.",
		}, []string{"cluster"}),
		UpstreamConnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_upstream_connects_total",
			Help: "Upstream connection attempts, by cluster and result (ok, error).",
		}, []string{"cluster", "result"}),
		UpstreamRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_upstream_requests_active",
			Help: "Requests in flight to a cluster.",
		}, []string{"cluster"}),
		ConfigGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_agent_config_generation",
			Help: "Generation of the config snapshot in service.",
		}),
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_config_reloads_total",
			Help: "Config reload attempts, by result (success, error).",
		}, []string{"result"}),
		ConfigReloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_agent_config_reload_errors_total",
			Help: "Config reloads rejected because the new config was invalid; the old one kept serving.",
		}),
		ConfigErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_config_errors",
			Help: "Current problems with a Kubernetes Service's edge-agent.io annotations, by namespace, service and reason.",
		}, []string{"namespace", "service", "reason"}),
		KubernetesServices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_kubernetes_services",
			Help: "Annotated Kubernetes Services, by state (serving, serving-last-good, not-serving).",
		}, []string{"state"}),
		SteeredUnknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_agent_steered_unknown_destination_total",
			Help: "Connections the kernel steered to the proxy for a destination no listener serves; they are closed.",
		}),
		WebSockets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_websocket_connections",
			Help: "Open WebSocket tunnels, by route.",
		}, []string{"route"}),
		WebSocketsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_websocket_connections_total",
			Help: "WebSocket tunnels opened, by route.",
		}, []string{"route"}),
		WebSocketsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_websocket_closed_by_proxy_total",
			Help: "WebSocket tunnels the proxy closed, by route and reason (idle_timeout, max_lifetime).",
		}, []string{"route", "reason"}),
		TCPConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_tcp_connections",
			Help: "Open connections on tcp listeners, by listener.",
		}, []string{"listener"}),
		TCPConnectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_tcp_connections_total",
			Help: "Connections relayed by tcp listeners, by listener.",
		}, []string{"listener"}),
		TCPClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_tcp_closed_by_proxy_total",
			Help: "Connections a tcp listener closed or refused, by listener and reason (idle_timeout, max_connections, no_healthy_upstream, upstream_connect_failure).",
		}, []string{"listener", "reason"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_retries_total",
			Help: "Retries, by route and result (attempted; skipped_budget, skipped_breaker: a retry the budget or max_retries breaker refused).",
		}, []string{"route", "result"}),
		BreakerOverflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_circuit_breaker_overflows_total",
			Help: "Requests answered 503 at once because a circuit breaker was full, by cluster and breaker.",
		}, []string{"cluster", "breaker"}),
		OutlierEjections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_outlier_ejections_total",
			Help: "Endpoints ejected by outlier detection, by cluster and reason (consecutive_5xx, consecutive_gateway_errors, consecutive_connect_failures).",
		}, []string{"cluster", "reason"}),
		EndpointsEjected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_outlier_ejected_endpoints",
			Help: "Endpoints currently ejected by outlier detection, by cluster.",
		}, []string{"cluster"}),
		EndpointHealthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_endpoint_healthy",
			Help: "Active health check state of an endpoint (1 healthy, 0 unhealthy), by cluster and endpoint.",
		}, []string{"cluster", "endpoint"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_rate_limited_total",
			Help: "Requests answered 429 by a route's rate limit, by route.",
		}, []string{"route"}),
		RateLimitKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_agent_rate_limit_keys",
			Help: "Keys a route's rate limiter tracks, by route.",
		}, []string{"route"}),
		MirroredRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_mirrored_requests_total",
			Help: "Requests copied to a mirror cluster, by route and result (sent, failed, dropped_busy, skipped_body).",
		}, []string{"route", "result"}),
		FaultsInjected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_agent_faults_injected_total",
			Help: "Faults injected, by route and kind (delay, abort).",
		}, []string{"route", "kind"}),
		ConfigLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_agent_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load.",
		}),
	}
	m.Registry.MustRegister(m.Requests, m.RequestDuration, m.DownstreamActive, m.DownstreamTotal,
		m.UpstreamActive, m.UpstreamConnects, m.UpstreamRequests, m.ConfigGeneration, m.ConfigReloads,
		m.ConfigReloadErrors, m.ConfigLastSuccess, m.ConfigErrors, m.KubernetesServices, m.SteeredUnknown,
		m.WebSockets, m.WebSocketsTotal, m.WebSocketsClosed, m.TCPConnections, m.TCPConnectionsTotal, m.TCPClosed,
		m.Retries, m.BreakerOverflows, m.OutlierEjections, m.EndpointsEjected, m.EndpointHealthy, m.RateLimited,
		m.RateLimitKeys, m.MirroredRequests, m.FaultsInjected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RouteStats records requests for one (route, cluster) pair with the labels
// bound once, so the request path does no label hashing.
type RouteStats struct {
	m        *Metrics
	route    string
	cluster  string
	duration prometheus.Observer
	mu       sync.Mutex
	codes    atomic.Pointer[[]codeCounter]
}

type codeCounter struct {
	code int
	c    prometheus.Counter
}

// RouteStats returns a recorder for route and cluster.
func (m *Metrics) RouteStats(route, cluster string) *RouteStats {
	return &RouteStats{m: m, route: route, cluster: cluster,
		duration: m.RequestDuration.WithLabelValues(route, cluster)}
}

// Observe records one answered request.
func (s *RouteStats) Observe(code int, elapsed time.Duration) {
	s.duration.Observe(elapsed.Seconds())
	s.counter(code).Inc()
}

func (s *RouteStats) counter(code int) prometheus.Counter {
	if p := s.codes.Load(); p != nil {
		for _, cc := range *p {
			if cc.code == code {
				return cc.c
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var old []codeCounter
	if p := s.codes.Load(); p != nil {
		old = *p
		for _, cc := range old {
			if cc.code == code {
				return cc.c
			}
		}
	}
	c := s.m.Requests.WithLabelValues(s.route, s.cluster, strconv.Itoa(code))
	next := append(append(make([]codeCounter, 0, len(old)+1), old...), codeCounter{code, c})
	s.codes.Store(&next)
	return c
}
