package translate

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/annotations"
)

// Name prefixes of what a Service translates into; the file source cannot
// use them, so a file route never collides with a Service's.
const (
	RoutePrefix   = "k8s:"
	ClusterPrefix = "k8s:"
)

// fragment is one Service's part of the config.
type fragment struct {
	routes   []config.Route
	clusters []config.Cluster
	// routeOf maps each route index to the annotation route it came from,
	// so validation errors name the key the team wrote.
	routeOf []string
	cert    *config.Certificate
	// l4 holds the Service's in-kernel services (mode l4).
	l4 []config.L4Service
}

// serviceError is why a Service could not be translated; Key is the
// annotation key to blame when there is one.
type serviceError struct {
	Reason string // the Event reason
	Key    string
	Msg    string
}

func (e *serviceError) Error() string {
	if e.Key != "" {
		return e.Key + ": " + e.Msg
	}
	return e.Msg
}

// translateService turns one Service (with its parsed annotations) into
// routes and clusters, validated on their own.
func (t *Translator) translateService(in *Input, svc *corev1.Service, spec *annotations.Service) (*fragment, []*serviceError) {
	f := &fragment{}
	var errs []*serviceError
	clusters := map[string]bool{}
	for _, r := range spec.Routes {
		port, perr := servicePort(svc, r.Port)
		if perr != nil {
			errs = append(errs, &serviceError{Reason: ReasonInvalidAnnotation, Key: routeKey(r.Name, "port"), Msg: perr.Error()})
			continue
		}
		stable, cerr := t.cluster(in, svc, port, spec)
		if cerr != nil {
			errs = append(errs, cerr)
			continue
		}
		if !clusters[stable.Name] {
			clusters[stable.Name] = true
			f.clusters = append(f.clusters, *stable)
		}
		route := config.Route{
			Name:            routeName(svc, r.Name),
			Listeners:       t.settings.Listeners,
			Hosts:           r.Hosts,
			Match:           r.Match,
			Rewrite:         r.Rewrite,
			Redirect:        r.Redirect,
			RequestHeaders:  r.RequestHeaders,
			ResponseHeaders: r.ResponseHeaders,
			Timeout:         r.Timeout,
			Streaming:       r.Streaming,
			IdleTimeout:     r.IdleTimeout,
			Retry:           clonePtr(r.Retry),
			RateLimit:       clonePtr(r.RateLimit),
			Fault:           cloneFault(r.Fault),
		}
		if serrs := routeSecurity(in, svc, &r, &route); len(serrs) > 0 {
			// Fail closed: the route is not served without its checks.
			errs = append(errs, serrs...)
			continue
		}
		if len(route.Hosts) == 0 {
			route.Hosts = spec.Hosts
		}
		if route.Match.Path == nil {
			route.Match.Path = &config.PathMatch{Prefix: "/"}
		}
		if route.Redirect == nil {
			route.Backends = []config.Backend{{Cluster: stable.Name, Weight: intp(100)}}
		}
		if m := r.Mirror; m != nil && route.Redirect == nil {
			// Before the canary: its beta routes mirror too.
			shadow, err := t.otherServiceCluster(in, svc, port, spec, routeKey(r.Name, "mirror-service"), "mirror", m.Service)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !clusters[shadow.Name] {
				clusters[shadow.Name] = true
				f.clusters = append(f.clusters, *shadow)
			}
			route.Mirror = &config.Mirror{Cluster: shadow.Name, Percent: m.Percent}
		}
		var extra []config.Route
		if c := spec.Canary; c != nil && route.Redirect == nil {
			canary, err := t.otherServiceCluster(in, svc, port, spec, annotations.Prefix+"canary-service", "canary", c.Service)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !clusters[canary.Name] {
				clusters[canary.Name] = true
				f.clusters = append(f.clusters, *canary)
			}
			route.Backends = []config.Backend{{Cluster: stable.Name, Weight: intp(100 - c.Weight)}, {Cluster: canary.Name, Weight: intp(c.Weight)}}
			// Beta users: a copy of the route that also needs the header or
			// cookie and sends everything to the canary.
			for _, m := range []struct {
				suffix string
				vm     *config.ValueMatch
				cookie bool
			}{{"canary-header", c.Header, false}, {"canary-cookie", c.Cookie, true}} {
				if m.vm == nil {
					continue
				}
				beta := route
				beta.Name = route.Name + "/" + m.suffix
				beta.Match.Headers = append([]config.ValueMatch(nil), route.Match.Headers...)
				beta.Match.Cookies = append([]config.ValueMatch(nil), route.Match.Cookies...)
				if m.cookie {
					beta.Match.Cookies = append(beta.Match.Cookies, *m.vm)
				} else {
					beta.Match.Headers = append(beta.Match.Headers, *m.vm)
				}
				beta.Backends = []config.Backend{{Cluster: canary.Name, Weight: intp(1)}}
				extra = append(extra, beta)
			}
		}
		// Beta routes first: same host and path with more matchers wins
		// anyway, but listing them first keeps /debug/config readable.
		for _, e := range extra {
			f.routes = append(f.routes, e)
			f.routeOf = append(f.routeOf, r.Name)
		}
		f.routes = append(f.routes, route)
		f.routeOf = append(f.routeOf, r.Name)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if err := config.FinalizeFragment(f.routes, f.clusters, t.settings.Listeners); err != nil {
		return nil, fieldErrors(err, f.routeOf, f.clusters)
	}
	if err := checkSecurity(f.routes, f.clusters); err != nil {
		return nil, fieldErrors(err, f.routeOf, f.clusters)
	}
	return f, nil
}

// tlsCertificate loads the Service's TLS Secret, checking the pair parses.
func tlsCertificate(in *Input, svc *corev1.Service, spec *annotations.Service) (*config.Certificate, *serviceError) {
	if spec.TLSSecret == "" {
		return nil, nil
	}
	key := annotations.Prefix + "tls-secret"
	sec := in.Secrets[NamespacedName{svc.Namespace, spec.TLSSecret}]
	if sec == nil {
		return nil, &serviceError{Reason: ReasonInvalidTLSSecret, Key: key, Msg: fmt.Sprintf("Secret %s/%s not found (it must be a kubernetes.io/tls Secret in the Service's namespace)", svc.Namespace, spec.TLSSecret)}
	}
	crt, k := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(crt, k); err != nil {
		return nil, &serviceError{Reason: ReasonInvalidTLSSecret, Key: key, Msg: fmt.Sprintf("Secret %s/%s: %v", svc.Namespace, spec.TLSSecret, err)}
	}
	return &config.Certificate{CertPEM: crt, KeyPEM: k, Source: "secret " + svc.Namespace + "/" + spec.TLSSecret}, nil
}

func routeKey(route, setting string) string {
	if route == annotations.DefaultRouteName {
		return annotations.Prefix + setting
	}
	return annotations.Prefix + route + "." + setting
}

func routeName(svc *corev1.Service, route string) string {
	return RoutePrefix + svc.Namespace + "/" + svc.Name + "/" + route
}

func clusterName(svc *corev1.Service, port *corev1.ServicePort) string {
	p := port.Name
	if p == "" {
		p = strconv.Itoa(int(port.Port))
	}
	return ClusterPrefix + svc.Namespace + "/" + svc.Name + ":" + p
}

// servicePort finds the port a route sends to: by name or number, or the
// Service's only port.
func servicePort(svc *corev1.Service, ref string) (*corev1.ServicePort, error) {
	ports := svc.Spec.Ports
	if ref == "" {
		if len(ports) != 1 {
			return nil, fmt.Errorf("the Service has %d ports; set %sport to the name or number of the one to route to", len(ports), annotations.Prefix)
		}
		return &ports[0], nil
	}
	for i := range ports {
		if ports[i].Name == ref || strconv.Itoa(int(ports[i].Port)) == ref {
			if ports[i].Protocol != "" && ports[i].Protocol != corev1.ProtocolTCP {
				return nil, fmt.Errorf("port %s is %s; HTTP routes need a TCP port", ref, ports[i].Protocol)
			}
			return &ports[i], nil
		}
	}
	return nil, fmt.Errorf("the Service has no port named or numbered %q", ref)
}

// upstreamProtocol maps a ServicePort's appProtocol to how the proxy talks
// to the endpoints, and whether over TLS.
func upstreamProtocol(port *corev1.ServicePort) (config.UpstreamProtocol, bool, error) {
	ap := ""
	if port.AppProtocol != nil {
		ap = *port.AppProtocol
	}
	switch ap {
	case "", "http", "kubernetes.io/ws":
		return config.UpstreamHTTP1, false, nil
	case "https", "kubernetes.io/wss":
		return config.UpstreamHTTP1, true, nil
	case "kubernetes.io/h2c", "grpc":
		return config.UpstreamH2C, false, nil
	default:
		return "", false, fmt.Errorf("appProtocol %q is not one edge-agent speaks (http, https, kubernetes.io/h2c, grpc, kubernetes.io/ws, kubernetes.io/wss)", ap)
	}
}

func (t *Translator) cluster(in *Input, svc *corev1.Service, port *corev1.ServicePort, spec *annotations.Service) (*config.Cluster, *serviceError) {
	proto, useTLS, err := upstreamProtocol(port)
	if err != nil {
		return nil, &serviceError{Reason: ReasonUnsupportedProtocol, Msg: fmt.Sprintf("port %s: %v", portLabel(port), err)}
	}
	c := &config.Cluster{
		Name:           clusterName(svc, port),
		Protocol:       proto,
		LBPolicy:       spec.LBPolicy,
		ConnectTimeout: spec.ConnectTimeout,
		Endpoints:      endpoints(in.Slices[NamespacedName{svc.Namespace, svc.Name}], port),
		// Each cluster gets its own copy: defaults are filled in place.
		CircuitBreaker:   clonePtr(spec.CircuitBreaker),
		OutlierDetection: clonePtr(spec.OutlierDetection),
		HealthCheck:      clonePtr(spec.HealthCheck),
		Hash:             clonePtr(spec.Hash),
		SlowStart:        spec.SlowStart,
	}
	if useTLS {
		if c.TLS, err = backendTLS(in, svc, spec); err != nil {
			return nil, &serviceError{Reason: ReasonInvalidTLSSecret, Key: annotations.Prefix + "backend-ca-secret", Msg: err.Error()}
		}
	}
	return c, nil
}

// backendTLS verifies TLS endpoints as <service>.<namespace>.svc (or the
// backend-server-name annotation) against the CA in backend-ca-secret's
// ca.crt, or the system roots without one.
func backendTLS(in *Input, svc *corev1.Service, spec *annotations.Service) (*config.UpstreamTLS, error) {
	t := &config.UpstreamTLS{ServerName: spec.BackendServerName}
	if t.ServerName == "" {
		t.ServerName = svc.Name + "." + svc.Namespace + ".svc"
	}
	if spec.BackendCASecret == "" {
		return t, nil
	}
	sec := in.Secrets[NamespacedName{svc.Namespace, spec.BackendCASecret}]
	if sec == nil {
		return nil, fmt.Errorf("secret %s/%s not found (it must be a kubernetes.io/tls Secret in the Service's namespace)", svc.Namespace, spec.BackendCASecret)
	}
	ca := sec.Data["ca.crt"]
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("secret %s/%s has no PEM certificate under ca.crt", svc.Namespace, spec.BackendCASecret)
	}
	t.CAPEM, t.CASource = ca, "secret "+svc.Namespace+"/"+spec.BackendCASecret
	return t, nil
}

// otherServiceCluster is the cluster of Service name (same namespace) that
// a route of svc also sends to, as its canary or its mirror (role): the
// port of the same name as stablePort, or that Service's only port, with
// svc's cluster settings. key is the annotation that named it.
func (t *Translator) otherServiceCluster(in *Input, svc *corev1.Service, stablePort *corev1.ServicePort, spec *annotations.Service, key, role, name string) (*config.Cluster, *serviceError) {
	if name == svc.Name {
		return nil, &serviceError{Reason: ReasonInvalidAnnotation, Key: key, Msg: fmt.Sprintf("a Service cannot be its own %s", role)}
	}
	other := in.Services[NamespacedName{svc.Namespace, name}]
	if other == nil {
		return nil, &serviceError{Reason: ReasonInvalidAnnotation, Key: key, Msg: fmt.Sprintf("Service %s/%s not found (the %s must be in the same namespace)", svc.Namespace, name, role)}
	}
	if other.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, &serviceError{Reason: ReasonInvalidAnnotation, Key: key, Msg: fmt.Sprintf("%s Service %s is an ExternalName Service: it has no endpoints to route to", role, name)}
	}
	ref := stablePort.Name
	if ref == "" {
		ref = strconv.Itoa(int(stablePort.Port))
	}
	if len(other.Spec.Ports) == 1 {
		ref = "" // a single port needs no name to match
	}
	port, err := servicePort(other, ref)
	if err != nil {
		return nil, &serviceError{Reason: ReasonInvalidAnnotation, Key: key, Msg: fmt.Sprintf("%s Service %s: %v", role, name, err)}
	}
	return t.cluster(in, other, port, spec)
}

func portLabel(p *corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

// endpoints lists the addresses that may take new requests: ready and not
// terminating. Terminating endpoints leave the rotation at once; the proxy
// lets requests already on them finish.
func endpoints(slices []*discoveryv1.EndpointSlice, port *corev1.ServicePort) []config.Endpoint {
	return endpointsFor(slices, port, config.L4TCP)
}

// endpointsFor is endpoints for a port of the given transport.
func endpointsFor(slices []*discoveryv1.EndpointSlice, port *corev1.ServicePort, proto config.L4Protocol) []config.Endpoint {
	want := corev1.ProtocolTCP
	if proto == config.L4UDP {
		want = corev1.ProtocolUDP
	}
	seen := map[string]bool{}
	var out []config.Endpoint
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var num int32 = -1
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			if name == port.Name && sp.Port != nil && ((sp.Protocol == nil && want == corev1.ProtocolTCP) || (sp.Protocol != nil && *sp.Protocol == want)) {
				num = *sp.Port
				break
			}
		}
		if num <= 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			if (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) {
				continue
			}
			for _, a := range ep.Addresses {
				if net.ParseIP(a) == nil {
					continue
				}
				addr := net.JoinHostPort(a, strconv.Itoa(int(num)))
				if !seen[addr] {
					seen[addr] = true
					out = append(out, config.Endpoint{Address: addr})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

func intp(v int) *int { return &v }

// clonePtr copies a policy so each route or cluster owns the one it is
// given (config fills defaults in place).
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

func cloneFault(f *config.Fault) *config.Fault {
	if f == nil {
		return nil
	}
	return &config.Fault{Delay: clonePtr(f.Delay), Abort: clonePtr(f.Abort)}
}

var (
	routeField   = regexp.MustCompile(`^routes\[(\d+)\]\.?(.*)$`)
	clusterField = regexp.MustCompile(`^clusters\[(\d+)\]\.?(.*)$`)
)

// fieldKey maps a model field to the annotation setting that fills it.
type fieldKey struct{ field, setting string }

// routeFieldKeys maps fields below routes[i]; the first match wins, so a
// field comes before its parent.
var routeFieldKeys = []fieldKey{
	{"hosts", "hosts"},
	{"match.path.prefix", "path-prefix"},
	{"match.path.exact", "path-exact"},
	{"match.path.regex", "path-regex"},
	{"match.path", "path-prefix"},
	{"match.methods", "methods"},
	{"match.headers", "match-headers"},
	{"match.query", "match-query"},
	{"match.cookies", "match-cookies"},
	{"rewrite.prefix", "rewrite-prefix"},
	{"rewrite.host", "rewrite-host"},
	{"redirect.scheme", "redirect-scheme"},
	{"redirect.host", "redirect-host"},
	{"redirect.port", "redirect-port"},
	{"redirect.path", "redirect-path"},
	{"redirect.prefix", "redirect-prefix"},
	{"redirect.code", "redirect-code"},
	{"redirect", "redirect-code"},
	{"requestHeaders.set", "request-headers-set"},
	{"requestHeaders.add", "request-headers-add"},
	{"requestHeaders.remove", "request-headers-remove"},
	{"responseHeaders.set", "response-headers-set"},
	{"responseHeaders.add", "response-headers-add"},
	{"responseHeaders.remove", "response-headers-remove"},
	{"backends", "canary-weight"},
	{"timeout", "timeout"},
	{"streaming", "streaming"},
	{"idleTimeout", "idle-timeout"},
	{"retry.attempts", "retry-attempts"},
	{"retry.perTryTimeout", "retry-per-try-timeout"},
	{"retry.on", "retry-on"},
	{"retry.statusCodes", "retry-status-codes"},
	{"retry.backoffBase", "retry-backoff-base"},
	{"retry.backoffMax", "retry-backoff-max"},
	{"retry.nonIdempotent", "retry-non-idempotent"},
	{"retry.bufferLimit", "retry-buffer-limit"},
	{"retry.budget.percent", "retry-budget-percent"},
	{"retry.budget.minPerSecond", "retry-budget-min-per-second"},
	{"retry", "retry-attempts"},
	{"rateLimit.requests", "rate-limit-requests"},
	{"rateLimit.period", "rate-limit-period"},
	{"rateLimit.burst", "rate-limit-burst"},
	{"rateLimit.key", "rate-limit-key"},
	{"rateLimit.header", "rate-limit-header"},
	{"rateLimit", "rate-limit-requests"},
	{"mirror.percent", "mirror-percent"},
	{"mirror", "mirror-service"},
	{"fault.delay.percent", "fault-delay-percent"},
	{"fault.delay", "fault-delay"},
	{"fault.abort.percent", "fault-abort-percent"},
	{"fault.abort", "fault-abort-status"},
	{"fault", "fault-delay"},
	{"ipRules.allow", "ip-allow"},
	{"ipRules.deny", "ip-deny"},
	{"ipRules", "ip-allow"},
	{"apiKeys.header", "api-keys-header"},
	{"apiKeys", "api-keys-secret"},
	{"basicAuth.realm", "basic-auth-realm"},
	{"basicAuth", "basic-auth-secret"},
	{"jwt.providers[0].issuer", "jwt-issuer"},
	{"jwt.providers[0].audiences", "jwt-audiences"},
	{"jwt.providers[0].jwksURL", "jwt-jwks-url"},
	{"jwt.providers[0].jwksRefresh", "jwt-jwks-url"},
	{"jwt.providers[0].algorithms", "jwt-algorithms"},
	{"jwt.providers[0].clockSkew", "jwt-clock-skew"},
	{"jwt.providers[0].fromHeader", "jwt-from-header"},
	{"jwt.providers[0].fromCookie", "jwt-from-cookie"},
	{"jwt.providers[0].claimsToHeaders", "jwt-claims-to-headers"},
	{"jwt.optional", "jwt-optional"},
	{"jwt", "jwt-issuer"},
	{"extAuth", "ext-auth-bypass"},
	{"waf.mode", "waf"},
	{"waf.paranoiaLevel", "waf-paranoia-level"},
	{"waf.excludeRules", "waf-exclude-rules"},
	{"waf", "waf"},
	{"maxBodyBytes", "max-body-bytes"},
	{"cors.allowOrigins", "cors-allow-origins"},
	{"cors.allowMethods", "cors-allow-methods"},
	{"cors.allowHeaders", "cors-allow-headers"},
	{"cors.exposeHeaders", "cors-expose-headers"},
	{"cors.maxAge", "cors-max-age"},
	{"cors.allowCredentials", "cors-allow-credentials"},
	{"cors", "cors-allow-origins"},
}

// serviceWideSettings fill route fields but are set without a route prefix.
var serviceWideSettings = map[string]bool{"canary-weight": true}

// clusterFieldKeys maps fields below clusters[i] to the Service-wide
// setting that fills them.
var clusterFieldKeys = []fieldKey{
	{"lbPolicy", "lb-policy"},
	{"connectTimeout", "connect-timeout"},
	{"tls.serverName", "backend-server-name"},
	{"circuitBreaker.maxConnections", "max-connections"},
	{"circuitBreaker.maxPendingRequests", "max-pending-requests"},
	{"circuitBreaker.maxRequests", "max-requests"},
	{"circuitBreaker.maxRetries", "max-retries"},
	{"outlierDetection.consecutive5xx", "outlier-consecutive-5xx"},
	{"outlierDetection.consecutiveGatewayErrors", "outlier-consecutive-gateway-errors"},
	{"outlierDetection.consecutiveConnectFailures", "outlier-consecutive-connect-failures"},
	{"outlierDetection.baseEjectionTime", "outlier-base-ejection-time"},
	{"outlierDetection.maxEjectionTime", "outlier-max-ejection-time"},
	{"outlierDetection.maxEjectionPercent", "outlier-max-ejection-percent"},
	{"outlierDetection", "outlier-consecutive-5xx"},
	{"healthCheck.type", "health-check-type"},
	{"healthCheck.path", "health-check-path"},
	{"healthCheck.expectedStatuses", "health-check-expected-statuses"},
	{"healthCheck.service", "health-check-grpc-service"},
	{"healthCheck.interval", "health-check-interval"},
	{"healthCheck.timeout", "health-check-timeout"},
	{"healthCheck.healthyThreshold", "health-check-healthy-threshold"},
	{"healthCheck.unhealthyThreshold", "health-check-unhealthy-threshold"},
	{"healthCheck", "health-check-type"},
	{"hash.header", "hash-header"},
	{"hash.cookie", "hash-cookie"},
	{"hash", "lb-policy"},
	{"slowStart", "slow-start"},
}

func lookupSetting(table []fieldKey, sub string) string {
	for _, fk := range table {
		if sub == fk.field || strings.HasPrefix(sub, fk.field+".") || strings.HasPrefix(sub, fk.field+"[") {
			return fk.setting
		}
	}
	return ""
}

// modelWords rewrites the model's field names in validation messages into
// the annotation keys a team writes.
var modelWords = strings.NewReplacer(
	"maxConnections", "max-connections",
	"maxRequests", "max-requests",
	"backoffBase", "retry-backoff-base",
	"baseEjectionTime", "outlier-base-ejection-time",
	"lbPolicy maglev", "lb-policy maglev",
	"(header, cookie or sourceIP)", "(hash-header, hash-cookie or hash-source-ip)",
	"with protocol h2c", "with protocol h2c (ServicePort appProtocol grpc or kubernetes.io/h2c)",
	"allowCredentials", "cors-allow-credentials",
	"fromHeader, fromCookie", "jwt-from-header, jwt-from-cookie",
)

// fieldErrors turns model validation errors into errors on annotation keys.
// clusters are the fragment's, to name the cluster a Service-wide setting
// failed on when there are several (ports, canary, mirror).
func fieldErrors(err error, routeOf []string, clusters []config.Cluster) []*serviceError {
	var fes config.Errors
	if !errors.As(err, &fes) {
		return []*serviceError{{Reason: ReasonInvalidAnnotation, Msg: err.Error()}}
	}
	var out []*serviceError
	for _, fe := range fes {
		se := &serviceError{Reason: ReasonInvalidAnnotation, Msg: fe.Reason}
		if m := routeField.FindStringSubmatch(fe.Path); m != nil {
			i, _ := strconv.Atoi(m[1])
			route := annotations.DefaultRouteName
			if i < len(routeOf) {
				route = routeOf[i]
			}
			if setting := lookupSetting(routeFieldKeys, m[2]); setting != "" {
				se.Key = routeKey(route, setting)
				if serviceWideSettings[setting] {
					se.Key = annotations.Prefix + setting
				}
				se.Msg = modelWords.Replace(fe.Reason)
			} else {
				se.Msg = fmt.Sprintf("route %s: %s", route, fe.Error())
			}
		} else if m := clusterField.FindStringSubmatch(fe.Path); m != nil {
			i, _ := strconv.Atoi(m[1])
			name := fe.Path
			if i < len(clusters) {
				name = clusters[i].Name
			}
			if setting := lookupSetting(clusterFieldKeys, m[2]); setting != "" {
				se.Key = annotations.Prefix + setting
				se.Msg = modelWords.Replace(fe.Reason)
				if len(clusters) > 1 {
					se.Msg = "cluster " + name + ": " + se.Msg
				}
			} else {
				se.Msg = fmt.Sprintf("cluster %s: %s: %s", name, m[2], fe.Reason)
			}
		} else {
			se.Msg = fe.Error()
		}
		out = append(out, se)
	}
	return out
}
