package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// Limits that keep one bad route from costing everyone CPU or memory.
const (
	MaxRegexLen         = 1024
	MaxRegexProgramSize = 4096
	MaxNameLen          = 253
	MaxHeaderValueLen   = 8192
	MaxEndpointWeight   = 1 << 16
	MaxBackendWeight    = 1 << 16
)

// Validate checks c (after defaults) and returns every problem as Errors.
func Validate(c *Config) error {
	var e errs
	validateAdmin(&e, c)
	validateServer(&e, c)
	listeners := validateListeners(&e, c.Listeners, c.Kubernetes.Enabled)
	validateKubernetes(&e, &c.Kubernetes, listeners)
	validateL4(&e, &c.L4)
	validateSteering(&e, c)
	clusters := validateClusters(&e, c.Clusters)
	validateRoutes(&e, c.Routes, listeners, clusters)
	protocols := map[string]UpstreamProtocol{}
	for _, cl := range c.Clusters {
		protocols[cl.Name] = cl.Protocol
	}
	validateSecurity(&e, c, clusters, protocols)
	for i, l := range c.Listeners {
		if l.TLS != nil {
			for j, pt := range l.TLS.Passthrough {
				if pt.Cluster != "" && !clusters[pt.Cluster] {
					e.add(idx(idx("listeners", i)+".tls.passthrough", j)+".cluster", "no cluster named %q", pt.Cluster)
				}
			}
		}
		if l.TCP != nil && l.TCP.Cluster != "" && !clusters[l.TCP.Cluster] {
			e.add(idx("listeners", i)+".tcp.cluster", "no cluster named %q", l.TCP.Cluster)
		} else if l.TCP != nil && l.TCP.Cluster == "" {
			e.add(idx("listeners", i)+".tcp.cluster", "is required")
		}
	}
	return e.err()
}

func validateAdmin(e *errs, c *Config) {
	if err := checkHostPort(c.Admin.Address); err != nil {
		e.add("admin.address", "%v", err)
	}
}

func validateServer(e *errs, c *Config) {
	s := &c.Server
	if d := s.WriteTimeout.D(); d < time.Second || d > time.Hour {
		e.add("server.writeTimeout", "must be between 1s and 1h, got %s", d)
	}
	if s.MaxHeaderBytes < 1024 || s.MaxHeaderBytes > 1<<20 {
		e.add("server.maxHeaderBytes", "must be between 1024 and 1048576, got %d", s.MaxHeaderBytes)
	}
	switch lower := strings.ToLower(s.RequestIDHeader); {
	case !isToken(s.RequestIDHeader):
		e.add("server.requestIdHeader", "%q is not a valid header name", s.RequestIDHeader)
	case reservedHeaders[lower] || strings.HasPrefix(lower, "x-forwarded-"):
		e.add("server.requestIdHeader", "%q is managed by the proxy and cannot carry the request id", s.RequestIDHeader)
	}
}

// validateListeners checks ls; with certsFromSource (Kubernetes mode) an
// https listener may start without certificates, since Secrets supply them.
func validateListeners(e *errs, ls []Listener, certsFromSource bool) map[string]bool {
	names := map[string]bool{}
	addrs := map[string]string{}
	if len(ls) == 0 {
		e.add("listeners", "at least one listener is required")
	}
	for i, l := range ls {
		p := idx("listeners", i)
		checkName(e, p+".name", l.Name, names)
		if err := checkHostPort(l.Address); err != nil {
			e.add(p+".address", "%v", err)
		} else if other, dup := addrs[l.Address]; dup {
			e.add(p+".address", "%s is already used by listener %q", l.Address, other)
		} else {
			addrs[l.Address] = l.Name
		}
		switch l.Protocol {
		case ListenerHTTP:
			if l.TLS != nil {
				e.add(p+".tls", "only allowed with protocol https")
			}
		case ListenerHTTPS, ListenerAuto:
			if l.TLS == nil || (len(l.TLS.Certificates) == 0 && len(l.TLS.Passthrough) == 0 && !certsFromSource) {
				e.add(p+".tls.certificates", "protocol %s needs at least one certificate (or tls.passthrough)", l.Protocol)
			}
		case ListenerTCP:
			if l.TLS != nil {
				e.add(p+".tls", "not allowed with protocol tcp (bytes pass through untouched)")
			}
			if l.TCP == nil {
				e.add(p+".tcp", "protocol tcp needs tcp.cluster")
			} else {
				if d := l.TCP.IdleTimeout.D(); d < time.Second || d > 7*24*time.Hour {
					e.add(p+".tcp.idleTimeout", "must be between 1s and 168h, got %s", d)
				}
				if l.TCP.MaxConnections < 0 || l.TCP.MaxConnections > 1_000_000 {
					e.add(p+".tcp.maxConnections", "must be between 0 (no limit) and 1000000, got %d", l.TCP.MaxConnections)
				}
			}
		default:
			e.add(p+".protocol", "must be one of http, https, auto, tcp; got %q", l.Protocol)
		}
		if l.TCP != nil && l.Protocol != ListenerTCP {
			e.add(p+".tcp", "only allowed with protocol tcp")
		}
		if l.TLS != nil {
			seenNames := map[string]bool{}
			for j, pt := range l.TLS.Passthrough {
				pp := idx(p+".tls.passthrough", j)
				if len(pt.ServerNames) == 0 {
					e.add(pp+".serverNames", "at least one server name is required")
				}
				for k, n := range pt.ServerNames {
					if err := checkHostPattern(n); err != nil {
						e.add(idx(pp+".serverNames", k), "%v", err)
					} else if seenNames[strings.ToLower(n)] {
						e.add(idx(pp+".serverNames", k), "%q is already passed through", n)
					}
					seenNames[strings.ToLower(n)] = true
				}
				if pt.Cluster == "" {
					e.add(pp+".cluster", "is required")
				}
				if d := pt.IdleTimeout.D(); d < time.Second || d > 7*24*time.Hour {
					e.add(pp+".idleTimeout", "must be between 1s and 168h, got %s", d)
				}
			}
			if ca := l.TLS.ClientAuth; ca != nil {
				cp := p + ".tls.clientAuth"
				if ca.CAFile == "" {
					e.add(cp+".caFile", "is required")
				}
				if ca.Mode != "optional" && ca.Mode != "require" {
					e.add(cp+".mode", "must be optional or require; got %q", ca.Mode)
				}
				for k, h := range ca.RequireForHosts {
					if err := checkHostPattern(h); err != nil {
						e.add(idx(cp+".requireForHosts", k), "%v", err)
					}
				}
			}
			if v := l.TLS.MinVersion; v != "1.2" && v != "1.3" {
				e.add(p+".tls.minVersion", "must be \"1.2\" or \"1.3\"; got %q", v)
			}
			for j, cert := range l.TLS.Certificates {
				cp := idx(p+".tls.certificates", j)
				if len(cert.CertPEM) == 0 && cert.CertFile == "" {
					e.add(cp+".certFile", "is required")
				}
				if len(cert.KeyPEM) == 0 && cert.KeyFile == "" {
					e.add(cp+".keyFile", "is required")
				}
				for k, h := range cert.ServerNames {
					if err := checkHostPattern(h); err != nil {
						e.add(idx(cp+".serverNames", k), "%v", err)
					}
				}
			}
		}
	}
	return names
}

func validateKubernetes(e *errs, k *Kubernetes, listeners map[string]bool) {
	for i, ns := range k.Namespaces {
		if err := checkDNSLabel(ns); err != nil {
			e.add(idx("kubernetes.namespaces", i), "%v", err)
		}
	}
	for i, l := range k.Listeners {
		if !listeners[l] {
			e.add(idx("kubernetes.listeners", i), "no listener named %q", l)
		}
	}
	for i, r := range k.Hostnames {
		p := idx("kubernetes.hostnames", i)
		if len(r.Hosts) == 0 {
			e.add(p+".hosts", "at least one host is required")
		}
		for j, h := range r.Hosts {
			if err := checkHostPattern(h); err != nil {
				e.add(idx(p+".hosts", j), "%v", err)
			}
		}
		if len(r.Namespaces) == 0 {
			e.add(p+".namespaces", "at least one namespace is required")
		}
		for j, ns := range r.Namespaces {
			if err := checkDNSLabel(ns); err != nil {
				e.add(idx(p+".namespaces", j), "%v", err)
			}
		}
	}
	if d := k.Debounce.D(); d < 0 || d > 10*time.Second {
		e.add("kubernetes.debounce", "must be between 0s and 10s, got %s", d)
	}
}

// MaxL4Backends keeps Maglev's table (16381 slots) over 100 slots per
// backend, so the spread stays within about 1%.
const MaxL4Backends = 163

func validateL4(e *errs, l *L4) {
	names := map[string]bool{}
	addrs := map[string]string{}
	for i, ifname := range l.Interfaces {
		if ifname == "" || len(ifname) > 15 || strings.ContainsAny(ifname, "/ \t") {
			e.add(idx("l4.interfaces", i), "%q is not an interface name", ifname)
		}
	}
	if cg := l.SocketLB.Cgroup; cg != "" && (!strings.HasPrefix(cg, "/") || strings.ContainsRune(cg, 0)) {
		e.add("l4.socketLB.cgroup", "must be an absolute path, got %q", cg)
	}
	for i, s := range l.Services {
		p := idx("l4.services", i)
		checkName(e, p+".name", s.Name, names)
		if err := checkIPv4Port(s.Address); err != nil {
			e.add(p+".address", "%v", err)
		} else if other, dup := addrs[s.Address+"/"+string(s.Protocol)]; dup {
			e.add(p+".address", "%s/%s is already used by service %q", s.Address, s.Protocol, other)
		} else {
			addrs[s.Address+"/"+string(s.Protocol)] = s.Name
		}
		if s.Protocol != L4TCP && s.Protocol != L4UDP {
			e.add(p+".protocol", "must be tcp or udp; got %q", s.Protocol)
		}
		if len(s.Backends) > MaxL4Backends {
			e.add(p+".backends", "at most %d backends, got %d", MaxL4Backends, len(s.Backends))
		}
		seen := map[string]bool{}
		for j, b := range s.Backends {
			bp := idx(p+".backends", j)
			if err := checkIPv4Port(b.Address); err != nil {
				e.add(bp+".address", "%v", err)
			} else if seen[b.Address] {
				e.add(bp+".address", "duplicate backend %s", b.Address)
			}
			seen[b.Address] = true
			if b.Weight < 1 || b.Weight > MaxEndpointWeight {
				e.add(bp+".weight", "must be between 1 and %d, got %d", MaxEndpointWeight, b.Weight)
			}
		}
	}
}

// validateSteering checks the steering settings and every address the
// kernel will hand to the proxy: IPv4 literals, each served by one
// listener, none also an L4 service (a destination is L4 or L7, not both).
func validateSteering(e *errs, c *Config) {
	st := &c.Steering
	if !st.Enabled {
		for i, l := range c.Listeners {
			if len(l.Steer) > 0 {
				e.add(idx("listeners", i)+".steer", "needs steering.enabled")
			}
		}
		return
	}
	if ap, err := netip.ParseAddrPort(st.SocketAddress); err != nil || !ap.Addr().Is4() {
		e.add("steering.socketAddress", "%q is not IPv4:port", st.SocketAddress)
	}
	if !strings.HasPrefix(st.HandoverSocket, "/") || strings.ContainsRune(st.HandoverSocket, 0) || len(st.HandoverSocket) > 107 {
		e.add("steering.handoverSocket", "must be an absolute path of at most 107 bytes, got %q", st.HandoverSocket)
	}
	if d := st.HandoverTimeout.D(); d < time.Second || d > 5*time.Minute {
		e.add("steering.handoverTimeout", "must be between 1s and 5m, got %s", d)
	}
	l4 := map[netip.AddrPort]string{}
	for _, s := range c.L4.Services {
		if ap, err := netip.ParseAddrPort(s.Address); err == nil && s.Protocol == L4TCP {
			l4[ap] = s.Name
		}
	}
	owner := map[netip.AddrPort]string{}
	check := func(p, listener, addr string) {
		ap, err := SteeredAddress(addr)
		if err != nil {
			e.add(p, "%v", err)
			return
		}
		if other, dup := owner[ap]; dup {
			e.add(p, "%s is already steered to listener %q", ap, other)
			return
		}
		owner[ap] = listener
		if svc, ok := l4[ap]; ok {
			e.add(p, "%s is also L4 service %q: a destination is served by the kernel (l4.services) or the proxy, not both", ap, svc)
		}
	}
	for i, l := range c.Listeners {
		p := idx("listeners", i)
		check(p+".address", l.Name, l.Address)
		for j, a := range l.Steer {
			check(idx(p+".steer", j), l.Name, a)
		}
	}
}

// SteeredAddress parses a steered destination: an IPv4 literal (empty or
// 0.0.0.0 means every address) and a port 1-65535. The kernel matches
// packet bytes, so names cannot be resolved.
func SteeredAddress(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not IPv4:port", s)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not IPv4:port (steered addresses are IPv4 literals with a port 1-65535)", s)
	}
	return ap, nil
}

// checkIPv4Port accepts a literal IPv4 address and a port 1-65535: the
// kernel program matches packet bytes, so names cannot be resolved.
func checkIPv4Port(s string) error {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return fmt.Errorf("%q is not IPv4:port", s)
	}
	return nil
}

// checkDNSLabel accepts RFC 1123 labels, the form of namespace names.
func checkDNSLabel(s string) error {
	if len(s) == 0 || len(s) > 63 || strings.Contains(s, ".") || checkHostname(s) != nil {
		return fmt.Errorf("%q is not a valid namespace name", s)
	}
	return nil
}

func validateClusters(e *errs, cs []Cluster) map[string]bool {
	names := map[string]bool{}
	for i, c := range cs {
		p := idx("clusters", i)
		checkName(e, p+".name", c.Name, names)
		switch c.Protocol {
		case UpstreamHTTP1, UpstreamH2C:
		default:
			e.add(p+".protocol", "must be one of http1, h2c; got %q", c.Protocol)
		}
		switch c.LBPolicy {
		case LBRoundRobin, LBLeastRequest, LBRandom, LBMaglev:
		default:
			e.add(p+".lbPolicy", "must be one of round_robin, least_request, random, maglev; got %q", c.LBPolicy)
		}
		validateClusterPolicies(e, p, &cs[i])
		if c.MaxIdleConnsPerEndpoint < 0 || c.MaxIdleConnsPerEndpoint > 65536 {
			e.add(p+".maxIdleConnsPerEndpoint", "must be between 0 and 65536, got %d", c.MaxIdleConnsPerEndpoint)
		}
		if t := c.TLS; t != nil {
			if c.Protocol != UpstreamHTTP1 {
				e.add(p+".tls", "TLS to upstreams is supported with protocol http1 only")
			}
			if err := checkHostname(t.ServerName); err != nil {
				e.add(p+".tls.serverName", "%v", err)
			}
		}
		seen := map[string]bool{}
		for j, ep := range c.Endpoints {
			ep_ := idx(p+".endpoints", j)
			if err := checkHostPort(ep.Address); err != nil {
				e.add(ep_+".address", "%v", err)
			} else if seen[ep.Address] {
				e.add(ep_+".address", "duplicate endpoint %s", ep.Address)
			}
			seen[ep.Address] = true
			if ep.Weight < 1 || ep.Weight > MaxEndpointWeight {
				e.add(ep_+".weight", "must be between 1 and %d, got %d", MaxEndpointWeight, ep.Weight)
			}
		}
	}
	return names
}

func validateRoutes(e *errs, rs []Route, listeners, clusters map[string]bool) {
	names := map[string]bool{}
	for i := range rs {
		r := &rs[i]
		p := idx("routes", i)
		checkName(e, p+".name", r.Name, names)
		for j, l := range r.Listeners {
			if !listeners[l] {
				e.add(idx(p+".listeners", j), "no listener named %q", l)
			}
		}
		for j, h := range r.Hosts {
			if err := checkHostPattern(h); err != nil {
				e.add(idx(p+".hosts", j), "%v", err)
			}
		}
		validateMatch(e, p+".match", &r.Match)
		isPrefix := r.Match.Path != nil && r.Match.Path.Prefix != "" || r.Match.GRPC != nil && r.Match.GRPC.Method == ""
		if rw := r.Rewrite; rw != nil {
			if rw.Prefix != "" {
				if !isPrefix {
					e.add(p+".rewrite.prefix", "needs a match.path.prefix to replace")
				}
				checkPath(e, p+".rewrite.prefix", rw.Prefix)
			}
			if rw.Host != "" {
				if err := checkHostPort(rw.Host); err != nil && checkHostname(rw.Host) != nil {
					e.add(p+".rewrite.host", "%q is not a valid host", rw.Host)
				}
			}
		}
		switch {
		case r.Redirect != nil && len(r.Backends) > 0:
			e.add(p, "set either redirect or backends, not both")
		case r.Redirect == nil && len(r.Backends) == 0:
			e.add(p+".backends", "a route needs backends or a redirect")
		}
		if rd := r.Redirect; rd != nil {
			rp := p + ".redirect"
			if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
				e.add(rp+".scheme", "must be http or https; got %q", rd.Scheme)
			}
			if rd.Host != "" {
				if err := checkHostname(rd.Host); err != nil {
					e.add(rp+".host", "%v", err)
				}
			}
			if rd.Port < 0 || rd.Port > 65535 {
				e.add(rp+".port", "must be between 1 and 65535, got %d", rd.Port)
			}
			if rd.Path != "" && rd.Prefix != "" {
				e.add(rp, "set either path or prefix, not both")
			}
			if rd.Path != "" {
				checkPath(e, rp+".path", rd.Path)
			}
			if rd.Prefix != "" {
				checkPath(e, rp+".prefix", rd.Prefix)
				if !isPrefix {
					e.add(rp+".prefix", "needs a match.path.prefix to replace")
				}
			}
			switch rd.Code {
			case 301, 302, 303, 307, 308:
			default:
				e.add(rp+".code", "must be one of 301, 302, 303, 307, 308; got %d", rd.Code)
			}
		}
		validateHeaderMutations(e, p+".requestHeaders", r.RequestHeaders)
		validateHeaderMutations(e, p+".responseHeaders", r.ResponseHeaders)
		total := 0
		for j, b := range r.Backends {
			bp := idx(p+".backends", j)
			if !clusters[b.Cluster] {
				e.add(bp+".cluster", "no cluster named %q", b.Cluster)
			}
			w := 1 // the default, when Validate runs before defaults
			if b.Weight != nil {
				w = *b.Weight
			}
			if w < 0 || w > MaxBackendWeight {
				e.add(bp+".weight", "must be between 0 and %d, got %d", MaxBackendWeight, w)
			} else {
				total += w
			}
		}
		if len(r.Backends) > 0 && total == 0 {
			e.add(p+".backends", "weights add up to 0: no backend would get traffic")
		}
		if d := r.WebSocket.IdleTimeout.D(); d < time.Second || d > 7*24*time.Hour {
			e.add(p+".websocket.idleTimeout", "must be between 1s and 168h, got %s", d)
		}
		if d := r.WebSocket.MaxLifetime.D(); d != 0 && (d < time.Second || d > 30*24*time.Hour) {
			e.add(p+".websocket.maxLifetime", "must be 0 (no limit) or between 1s and 720h, got %s", d)
		}
		if c := r.CORS; c != nil {
			validateCORS(e, p+".cors", c)
		}
		if r.Timeout.D() <= 0 {
			e.add(p+".timeout", "must be positive")
		}
		validateRoutePolicies(e, p, r, clusters)
	}
}

func validateMatch(e *errs, p string, m *Match) {
	if g := m.GRPC; g != nil {
		if m.Path != nil {
			e.add(p+".grpc", "sets the path itself; remove match.path")
		}
		if !grpcName(g.Service, true) {
			e.add(p+".grpc.service", "%q is not a fully qualified gRPC service name (package.Service)", g.Service)
		}
		if g.Method != "" && !grpcName(g.Method, false) {
			e.add(p+".grpc.method", "%q is not a gRPC method name", g.Method)
		}
	}
	if pm := m.Path; pm != nil {
		set := 0
		for _, s := range []string{pm.Exact, pm.Prefix, pm.Regex} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			e.add(p+".path", "set exactly one of exact, prefix, regex")
		}
		if pm.Exact != "" {
			checkPath(e, p+".path.exact", pm.Exact)
		}
		if pm.Prefix != "" {
			checkPath(e, p+".path.prefix", pm.Prefix)
		}
		if pm.Regex != "" {
			checkRegex(e, p+".path.regex", pm.Regex)
		}
	}
	for i, meth := range m.Methods {
		if !isToken(meth) || strings.ToUpper(meth) != meth {
			e.add(idx(p+".methods", i), "%q is not an upper-case HTTP method", meth)
		}
	}
	validateValueMatches(e, p+".headers", m.Headers, isToken)
	validateValueMatches(e, p+".query", m.Query, func(s string) bool { return s != "" && !hasCtl(s) })
	validateValueMatches(e, p+".cookies", m.Cookies, isToken)
}

func validateValueMatches(e *errs, p string, vs []ValueMatch, validName func(string) bool) {
	for i, v := range vs {
		vp := idx(p, i)
		if !validName(v.Name) {
			e.add(vp+".name", "%q is not a valid name", v.Name)
		}
		set := 0
		for _, s := range []string{v.Exact, v.Prefix, v.Regex} {
			if s != "" {
				set++
			}
		}
		if set > 1 {
			e.add(vp, "set at most one of exact, prefix, regex")
		}
		if hasCtl(v.Exact) || hasCtl(v.Prefix) {
			e.add(vp, "value must not contain control characters")
		}
		if v.Regex != "" {
			checkRegex(e, vp+".regex", v.Regex)
		}
	}
}

// headers the proxy owns: letting a route set them would break framing or
// connection management.
var reservedHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"te": true, "trailer": true, "upgrade": true, "content-length": true, "host": true,
}

func validateHeaderMutations(e *errs, p string, hm *HeaderMutations) {
	if hm == nil {
		return
	}
	check := func(fp, name string) {
		if !isToken(name) {
			e.add(fp, "%q is not a valid header name", name)
		} else if reservedHeaders[strings.ToLower(name)] {
			e.add(fp, "%q is managed by the proxy and cannot be changed here", name)
		}
	}
	for i, h := range hm.Set {
		check(idx(p+".set", i)+".name", h.Name)
		checkHeaderValue(e, idx(p+".set", i)+".value", h.Value)
	}
	for i, h := range hm.Add {
		check(idx(p+".add", i)+".name", h.Name)
		checkHeaderValue(e, idx(p+".add", i)+".value", h.Value)
	}
	for i, n := range hm.Remove {
		check(idx(p+".remove", i), n)
	}
}

func checkHeaderValue(e *errs, p, v string) {
	if len(v) > MaxHeaderValueLen {
		e.add(p, "longer than %d bytes", MaxHeaderValueLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			e.add(p, "must not contain control characters")
			return
		}
	}
}

func checkName(e *errs, p, name string, seen map[string]bool) {
	switch {
	case name == "":
		e.add(p, "is required")
	case len(name) > MaxNameLen || hasCtl(name) || strings.ContainsAny(name, " \t"):
		e.add(p, "%q is not a valid name (no spaces or control characters, at most %d bytes)", name, MaxNameLen)
	case seen[name]:
		e.add(p, "duplicate name %q", name)
	}
	seen[name] = true
}

func checkPath(e *errs, p, path string) {
	if !strings.HasPrefix(path, "/") {
		e.add(p, "%q must start with /", path)
		return
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= 0x20 || c == 0x7f || c == '?' || c == '#' {
			e.add(p, "%q contains a character not allowed in a path (%q)", path, c)
			return
		}
	}
}

// CompileRegex compiles a user regex under the size limits; RE2 semantics
// keep matching linear in the input.
func CompileRegex(s string) (*regexp.Regexp, error) {
	if len(s) > MaxRegexLen {
		return nil, fmt.Errorf("longer than %d characters", MaxRegexLen)
	}
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("invalid RE2 regex: %v", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("invalid RE2 regex: %v", err)
	}
	if len(prog.Inst) > MaxRegexProgramSize {
		return nil, fmt.Errorf("too complex (%d instructions, limit %d)", len(prog.Inst), MaxRegexProgramSize)
	}
	return regexp.Compile(s)
}

// anchoredRegex is the form in which match regexes run: they must match the
// whole value. The limits must hold for that form too, or a config that
// `validate` accepts fails when the router builds its table.
func anchoredRegex(s string) string { return "^(?:" + s + ")$" }

// CompileMatchRegex compiles a route's path, header, query or cookie regex
// as a whole-value match, under the same limits validation checked.
func CompileMatchRegex(s string) (*regexp.Regexp, error) {
	return CompileRegex(anchoredRegex(s))
}

func checkRegex(e *errs, p, s string) {
	if limit := MaxRegexLen - len(anchoredRegex("")); len(s) > limit {
		e.add(p, "longer than %d characters", limit)
		return
	}
	_, err := CompileRegex(s) // syntax errors, reported against the regex as written
	if err == nil {
		_, err = CompileRegex(anchoredRegex(s))
	}
	if err != nil {
		e.add(p, "%v", err)
	}
}

func validateCORS(e *errs, p string, c *CORS) {
	if len(c.AllowOrigins) == 0 {
		e.add(p+".allowOrigins", "at least one origin (or \"*\") is required")
	}
	for i, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				e.add(idx(p+".allowOrigins", i), "\"*\" cannot be combined with allowCredentials (browsers refuse it)")
			}
			continue
		}
		u, err := url.Parse(strings.Replace(o, "://*.", "://wildcard.", 1))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" || checkHostPort(u.Host) != nil && checkHostname(u.Host) != nil {
			e.add(idx(p+".allowOrigins", i), "%q is not an origin (scheme://host[:port], scheme://*.domain) or \"*\"", o)
		}
	}
	for i, m := range c.AllowMethods {
		if !isToken(m) {
			e.add(idx(p+".allowMethods", i), "%q is not a method", m)
		}
	}
	for _, l := range []struct {
		field string
		names []string
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		for i, h := range l.names {
			if !isToken(h) {
				e.add(idx(p+"."+l.field, i), "%q is not a header name", h)
			}
		}
	}
	if d := c.MaxAge.D(); d < 0 || d > 24*time.Hour {
		e.add(p+".maxAge", "must be between 0s and 24h, got %s", d)
	}
}

// grpcName accepts protobuf identifiers, dot-separated when dotted.
func grpcName(s string, dotted bool) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	parts := []string{s}
	if dotted {
		parts = strings.Split(s, ".")
	}
	for _, part := range parts {
		if part == "" {
			return false
		}
		for i, c := range part {
			letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", s)
	}
	if host == "" {
		return nil // all addresses
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	return checkHostname(host)
}

// checkHostPattern accepts a hostname or a "*." wildcard followed by one.
func checkHostPattern(h string) error {
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		if err := checkHostname(rest); err != nil {
			return fmt.Errorf("wildcard %q: %v", h, err)
		}
		return nil
	}
	return checkHostname(h)
}

// checkHostname accepts lower-case RFC 1123 names.
func checkHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%q is not a valid hostname", h)
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid hostname", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a valid hostname (lower-case letters, digits, '-' and '.')", h)
			}
		}
	}
	return nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
