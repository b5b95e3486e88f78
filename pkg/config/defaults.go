package config

import "time"

// Defaults applied to fields left empty. They follow what Envoy and nginx users
// expect unless noted.
const (
	DefaultAdminAddress            = "127.0.0.1:9901"
	DefaultDrainTimeout            = 30 * time.Second
	DefaultReadHeaderTimeout       = 10 * time.Second
	DefaultIdleTimeout             = 60 * time.Second
	DefaultWriteTimeout            = 60 * time.Second
	DefaultMaxHeaderBytes          = 64 << 10
	DefaultRequestIDHeader         = "X-Request-Id"
	DefaultRouteTimeout            = 15 * time.Second
	DefaultConnectTimeout          = 5 * time.Second
	DefaultMaxIdleConnsPerEndpoint = 512
	DefaultIdleConnTimeout         = 90 * time.Second
	DefaultRedirectCode            = 302
	DefaultTLSMinVersion           = "1.2"
	DefaultKubernetesDebounce      = 100 * time.Millisecond
	DefaultSteeringSocketAddress   = "127.0.0.1:0"
	DefaultHandoverSocket          = "/run/edge-agent/handover.sock"
	DefaultHandoverTimeout         = 10 * time.Second
	DefaultWebSocketIdleTimeout    = time.Hour
)

// applyDefaults fills empty fields in place; it runs before validation so the
// validated snapshot shows the effective values on /debug/config.
func applyDefaults(c *Config) {
	applySecurityDefaults(c)
	setStr(&c.Admin.Address, DefaultAdminAddress)
	setDur(&c.Server.DrainTimeout, DefaultDrainTimeout)
	setDur(&c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.Server.IdleTimeout, DefaultIdleTimeout)
	setDur(&c.Server.WriteTimeout, DefaultWriteTimeout)
	if c.Server.MaxHeaderBytes == 0 {
		c.Server.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Server.AccessLog == nil {
		on := true
		c.Server.AccessLog = &on
	}
	setStr(&c.Server.RequestIDHeader, DefaultRequestIDHeader)
	setDur(&c.Kubernetes.Debounce, DefaultKubernetesDebounce)
	if c.Steering.Enabled {
		setStr(&c.Steering.SocketAddress, DefaultSteeringSocketAddress)
		setStr(&c.Steering.HandoverSocket, DefaultHandoverSocket)
		setDur(&c.Steering.HandoverTimeout, DefaultHandoverTimeout)
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = ListenerHTTP
		}
		if l.TLS != nil {
			setStr(&l.TLS.MinVersion, DefaultTLSMinVersion)
			if ca := l.TLS.ClientAuth; ca != nil {
				setStr(&ca.Mode, "require")
			}
			for j := range l.TLS.Passthrough {
				setDur(&l.TLS.Passthrough[j].IdleTimeout, DefaultWebSocketIdleTimeout)
			}
		}
		if l.TCP != nil {
			setDur(&l.TCP.IdleTimeout, DefaultWebSocketIdleTimeout)
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		setDur(&r.Timeout, DefaultRouteTimeout)
		setDur(&r.WebSocket.IdleTimeout, DefaultWebSocketIdleTimeout)
		applyRoutePolicyDefaults(r)
		if c := r.CORS; c != nil {
			if len(c.AllowMethods) == 0 {
				c.AllowMethods = []string{"GET", "HEAD", "POST"}
			}
			if len(c.AllowHeaders) == 0 {
				c.AllowHeaders = []string{"content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"}
			}
			if len(c.ExposeHeaders) == 0 {
				c.ExposeHeaders = []string{"grpc-status", "grpc-message", "grpc-status-details-bin"}
			}
			setDur(&c.MaxAge, 10*time.Minute)
		}
		if r.Redirect != nil && r.Redirect.Code == 0 {
			r.Redirect.Code = DefaultRedirectCode
		}
		for j := range r.Backends {
			if r.Backends[j].Weight == nil {
				one := 1
				r.Backends[j].Weight = &one
			}
		}
	}
	for i := range c.L4.Services {
		sv := &c.L4.Services[i]
		if sv.Protocol == "" {
			sv.Protocol = L4TCP
		}
		for j := range sv.Backends {
			if sv.Backends[j].Weight == 0 {
				sv.Backends[j].Weight = 1
			}
		}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.Protocol == "" {
			cl.Protocol = UpstreamHTTP1
		}
		if cl.LBPolicy == "" {
			cl.LBPolicy = LBRoundRobin
		}
		setDur(&cl.ConnectTimeout, DefaultConnectTimeout)
		setDur(&cl.IdleConnTimeout, DefaultIdleConnTimeout)
		applyClusterPolicyDefaults(cl)
		if cl.MaxIdleConnsPerEndpoint == 0 {
			cl.MaxIdleConnsPerEndpoint = DefaultMaxIdleConnsPerEndpoint
		}
		for j := range cl.Endpoints {
			if cl.Endpoints[j].Weight == 0 {
				cl.Endpoints[j].Weight = 1
			}
		}
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}
