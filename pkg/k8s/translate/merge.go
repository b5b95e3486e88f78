package translate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// Merge returns base (the node's file config) plus the Services' routes,
// clusters and certificates, defaulted and validated as one config. base is
// not modified.
func Merge(base *config.Config, res *Result) (*config.Config, error) {
	for _, r := range base.Routes {
		if strings.HasPrefix(r.Name, RoutePrefix) {
			return nil, fmt.Errorf("route %q: names starting with %q are reserved for Kubernetes Services", r.Name, RoutePrefix)
		}
	}
	for _, s := range base.L4.Services {
		if strings.HasPrefix(s.Name, ClusterPrefix) {
			return nil, fmt.Errorf("l4 service %q: names starting with %q are reserved for Kubernetes Services", s.Name, ClusterPrefix)
		}
	}
	for _, c := range base.Clusters {
		if strings.HasPrefix(c.Name, ClusterPrefix) {
			return nil, fmt.Errorf("cluster %q: names starting with %q are reserved for Kubernetes Services", c.Name, ClusterPrefix)
		}
	}
	cfg := *base
	cfg.Kubernetes.Enabled = true
	cfg.Routes = append(slices.Clip(base.Routes), res.Routes...)
	cfg.Clusters = append(slices.Clip(base.Clusters), res.Clusters...)
	cfg.L4.Services = append(slices.Clip(base.L4.Services), res.L4...)
	cfg.Listeners = slices.Clone(base.Listeners)
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if (l.Protocol != config.ListenerHTTPS && l.Protocol != config.ListenerAuto) || l.TLS == nil || !attached(base.Kubernetes.Listeners, l.Name) {
			continue
		}
		tlsCopy := *l.TLS
		tlsCopy.Certificates = append(slices.Clip(l.TLS.Certificates), res.Certificates...)
		l.TLS = &tlsCopy
	}
	if err := config.Finalize(&cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// attached reports whether Service routes attach to listener name.
func attached(listeners []string, name string) bool {
	return len(listeners) == 0 || slices.Contains(listeners, name)
}
