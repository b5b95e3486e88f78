package upstream

import (
	"context"
	"reflect"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/health"
	"github.com/prometheus/client_golang/prometheus"
)

// endpointChecker is an endpoint's active health checker and the config
// it runs, so a reload with the same check keeps it (and its state).
type endpointChecker struct {
	cfg     config.HealthCheck
	checker *health.Checker
	// forget removes the endpoint's health gauge.
	forget func()
}

// reconcileHealth starts, restarts or stops the checkers of c's endpoints
// to match its config. Endpoints start healthy: a reload must not take
// serving endpoints out of rotation while the first probes run.
func (m *Manager) reconcileHealth(c *Cluster) {
	for _, e := range c.eps {
		want := c.healthCheck
		if e.checker != nil && (want == nil || !reflect.DeepEqual(e.checker.cfg, *want)) {
			e.stopChecker()
		}
		if want == nil || e.checker != nil {
			continue
		}
		e.unhealthy.Store(false)
		gauge := m.metrics.EndpointHealthy.WithLabelValues(c.Name, e.Address)
		gauge.Set(1)
		ep, cl := e, c
		slowStart := c.slowStart
		onChange := func(healthy bool) {
			ep.unhealthy.Store(!healthy)
			if healthy {
				gauge.Set(1)
				if slowStart > 0 {
					ep.warmFrom.Store(time.Now().UnixNano())
				}
			} else {
				gauge.Set(0)
			}
		}
		e.checker = &endpointChecker{
			cfg:     *want,
			forget:  func() { m.metrics.EndpointHealthy.DeleteLabelValues(cl.Name, ep.Address) },
			checker: health.Start(context.Background(), *want, e.Address, cl.settings.tls, true, onChange, m.log),
		}
	}
}

// stopChecker stops e's health checker, if any; e counts as healthy again.
func (e *Endpoint) stopChecker() {
	if e.checker == nil {
		return
	}
	e.checker.checker.Stop()
	e.checker.forget()
	e.checker = nil
	e.unhealthy.Store(false)
}

// policyStats binds the cluster's policy metrics.
func (m *Manager) policyStats(cluster string) policyStats {
	ps := policyStats{
		overflow: map[string]prometheus.Counter{},
		eject:    map[string]prometheus.Counter{},
		ejected:  m.metrics.EndpointsEjected.WithLabelValues(cluster),
	}
	for _, b := range []string{BreakerMaxRequests, BreakerMaxRetries, BreakerMaxConnections, BreakerMaxPendingRequests} {
		ps.overflow[b] = m.metrics.BreakerOverflows.WithLabelValues(cluster, b)
	}
	for _, r := range []string{"consecutive_5xx", "consecutive_gateway_errors", "consecutive_connect_failures"} {
		ps.eject[r] = m.metrics.OutlierEjections.WithLabelValues(cluster, r)
	}
	return ps
}
