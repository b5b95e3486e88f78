// Package annotations parses a Service's edge-agent.io/ annotations into
// typed values. Parsing is strict: every key under the prefix must be known,
// every value must parse into its type, and no value is ever pasted into
// config text, a template or an unbounded regex engine.
//
// Keys without a dot configure the Service and its default route; keys of the
// form "<route>.<setting>" configure an extra named route of the same Service.
package annotations

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// Prefix is the annotation namespace edge-agent owns.
const Prefix = "edge-agent.io/"

// Limits keep one Service from costing every node memory or CPU.
const (
	MaxHosts         = 32
	MaxRoutes        = 16
	MaxListItems     = 32
	MaxValueLen      = 8192
	MaxRouteNameLen  = 32
	DefaultRouteName = "default"
)

// Mode says which data path serves the Service.
type Mode string

const (
	ModeL7 Mode = "l7"
	ModeL4 Mode = "l4"
)

// Service is everything a Service's annotations ask for.
type Service struct {
	Mode           Mode
	Hosts          []string
	TLSSecret      string
	LBPolicy       config.LBPolicy
	ConnectTimeout config.Duration
	// BackendServerName and BackendCASecret verify endpoints whose port
	// speaks TLS (appProtocol https or kubernetes.io/wss).
	BackendServerName string
	BackendCASecret   string
	Canary            *Canary
	// Cluster policies, applied to every cluster of the Service (its own
	// ports' and its canary's and mirrors'); nil when no key set them.
	CircuitBreaker   *config.CircuitBreaker
	OutlierDetection *config.OutlierDetection
	HealthCheck      *config.HealthCheck
	Hash             *config.HashPolicy
	SlowStart        config.Duration
	// L4PreserveSource keeps the client's address in mode l4 (no SNAT).
	L4PreserveSource bool
	// Routes holds the default route first, then named routes by name.
	Routes []Route
}

// Route is one route of a Service: its own match, rewrites and policies.
type Route struct {
	// Name is DefaultRouteName or the <route> part of "<route>.<setting>".
	Name string
	// Hosts overrides the Service's hosts for this route when set.
	Hosts []string
	// Port names the Service port (name or number) the route sends to; empty
	// means the Service's only port.
	Port     string
	Match    config.Match
	Rewrite  *config.Rewrite
	Redirect *config.Redirect
	// RequestHeaders and ResponseHeaders are nil when no key set them.
	RequestHeaders  *config.HeaderMutations
	ResponseHeaders *config.HeaderMutations
	Timeout         config.Duration
	// Streaming ends Timeout at the response head; IdleTimeout cuts a
	// stalled response body.
	Streaming   bool
	IdleTimeout config.Duration
	// Traffic policies; nil when no key of their group was given.
	Retry     *config.RetryPolicy
	RateLimit *config.RateLimit
	Mirror    *Mirror
	Fault     *config.Fault
	// Access control; nil (or zero) when no key of their group was given.
	IPRules   *config.IPRules
	APIKeys   *APIKeys
	BasicAuth *BasicAuth
	// JWT has one provider, named JWTProviderName, with a JWKS URL.
	JWT *config.JWTAuth
	// ExtAuthBypass turns the node-wide external authorization off for
	// the route (the auth service itself is node config, not annotations).
	ExtAuthBypass bool
	WAF           *config.WAF
	// MaxBodyBytes bounds request bodies (0: the node default).
	MaxBodyBytes int64
	CORS         *config.CORS
}

// Data keys of the Secrets that api-keys-secret and basic-auth-secret name.
const (
	APIKeysDataKey   = "keys"
	BasicAuthDataKey = "users"
)

// JWTProviderName names the one JWT provider a route's annotations define.
const JWTProviderName = "k8s"

// MaxBodyBytes is the largest max-body-bytes a route may set (1TiB, as the
// model allows).
const MaxBodyBytes = 1 << 40

// APIKeys checks a header against the keys in a Secret of the Service's
// namespace; the translator reads the Secret.
type APIKeys struct {
	// Secret holds the keys, one per line, under data key "keys".
	Secret string
	// Header carries the key (empty: the model's default, X-API-Key).
	Header string
}

// BasicAuth checks credentials against htpasswd lines in a Secret of the
// Service's namespace; the translator reads the Secret.
type BasicAuth struct {
	// Secret holds htpasswd lines under data key "users".
	Secret string
	// Realm is shown by browsers (empty: the model's default).
	Realm string
}

// Mirror copies a share of a route's requests to another Service of the
// same namespace; the translator resolves Service to that Service's cluster.
type Mirror struct {
	Service string
	// Percent of requests copied (0 until set: the config default is 100).
	Percent float64
}

// Canary splits the Service's traffic with another Service of the same
// namespace: by weight, and always for requests carrying a header or cookie.
type Canary struct {
	Service string
	// Weight is the percentage (0-100) of unmatched traffic the canary gets.
	Weight int
	Header *config.ValueMatch
	Cookie *config.ValueMatch
}

// Error is one problem with one annotation key.
type Error struct {
	Key    string
	Reason string
}

func (e Error) Error() string { return e.Key + ": " + e.Reason }

// Errors lists every problem in a Service's annotations, sorted by key.
type Errors []Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Has reports whether the annotations use edge-agent's prefix at all: only
// such Services are exposed.
func Has(annotations map[string]string) bool {
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			return true
		}
	}
	return false
}

// Parse reads every edge-agent.io/ annotation. It returns Errors (all of
// them, sorted by key) when any key is unknown or any value is invalid.
func Parse(annotations map[string]string) (*Service, error) {
	p := parser{svc: &Service{Mode: ModeL7}, routes: map[string]*Route{}}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.key(k, annotations[k])
	}
	p.finish()
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Key < p.errs[j].Key })
		return nil, p.errs
	}
	return p.svc, nil
}

type parser struct {
	svc    *Service
	routes map[string]*Route
	errs   Errors
	// routeKeys lists the route keys given, which mode l4 refuses.
	routeKeys []string
	// set records which keys were given, for cross-key checks.
	set map[string]bool
}

func (p *parser) fail(key, format string, args ...any) {
	p.errs = append(p.errs, Error{Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (p *parser) key(key, value string) {
	if p.set == nil {
		p.set = map[string]bool{}
	}
	p.set[key] = true
	if len(value) > MaxValueLen {
		p.fail(key, "value longer than %d bytes", MaxValueLen)
		return
	}
	name := strings.TrimPrefix(key, Prefix)
	routeName, setting, scoped := strings.Cut(name, ".")
	if !scoped {
		setting, routeName = name, DefaultRouteName
		if apply, ok := serviceKeys[setting]; ok {
			if err := apply(p.svc, value); err != nil {
				p.fail(key, "%v", err)
			}
			return
		}
	} else if err := checkRouteName(routeName); err != nil {
		p.fail(key, "%v", err)
		return
	}
	apply, ok := routeKeys[setting]
	if !ok {
		switch {
		case renamed[setting] != "":
			p.fail(key, "unknown annotation; did you mean %s?", routeKey(routeName, renamed[setting]))
		case planned[setting] != "":
			p.fail(key, "not supported by this version of edge-agent (%s)", planned[setting])
		case scoped && serviceKeys[setting] != nil:
			p.fail(key, "%q applies to the whole Service; set it without a route prefix", setting)
		default:
			p.fail(key, "unknown annotation; see docs/annotations.md for the keys edge-agent reads")
		}
		return
	}
	p.routeKeys = append(p.routeKeys, key)
	r := p.routes[routeName]
	if r == nil {
		if len(p.routes) >= MaxRoutes {
			p.fail(key, "a Service may define at most %d routes", MaxRoutes)
			return
		}
		r = &Route{Name: routeName}
		p.routes[routeName] = r
	}
	if err := apply(r, value); err != nil {
		p.fail(key, "%v", err)
	}
}

// finish checks what spans several keys and orders the routes.
func (p *parser) finish() {
	s := p.svc
	if _, ok := p.routes[DefaultRouteName]; !ok {
		p.routes[DefaultRouteName] = &Route{Name: DefaultRouteName}
	}
	names := make([]string, 0, len(p.routes))
	for n := range p.routes {
		if n != DefaultRouteName {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	s.Routes = append(s.Routes, *p.routes[DefaultRouteName])
	for _, n := range names {
		s.Routes = append(s.Routes, *p.routes[n])
	}
	if s.Mode == ModeL4 {
		// The kernel balances connections: there is no HTTP to route.
		for _, k := range p.routeKeys {
			p.fail(k, "does not apply to mode l4 (the kernel balances connections; there are no HTTP routes)")
		}
		for k := range serviceKeys {
			if k != "mode" && k != "l4-preserve-source" && p.set[Prefix+k] {
				p.fail(Prefix+k, "does not apply to mode l4")
			}
		}
		s.Routes = nil
		return
	}
	if p.set[Prefix+"l4-preserve-source"] {
		p.fail(Prefix+"l4-preserve-source", "applies only to mode l4")
	}
	for i := range s.Routes {
		r := &s.Routes[i]
		if len(r.Hosts) == 0 && len(s.Hosts) == 0 {
			p.fail(routeKey(r.Name, "hosts"), "required: list the hostnames this Service serves (or set %shosts)", Prefix)
		}
		if r.Redirect != nil && r.Rewrite != nil {
			p.fail(routeKey(r.Name, "redirect-code"), "a route redirects or rewrites, not both")
		}
		p.checkRoutePolicies(r)
	}
	if c := s.Canary; c != nil {
		if c.Service == "" {
			p.fail(Prefix+"canary-service", "required when canary-weight, canary-header or canary-cookie is set")
		}
	}
	p.checkClusterPolicies()
}

// failed reports whether key already has an error, so a cross-key check
// does not pile a second, derived complaint on it.
func (p *parser) failed(key string) bool {
	for _, e := range p.errs {
		if e.Key == key {
			return true
		}
	}
	return false
}

// checkRoutePolicies checks what spans several policy keys of one route:
// each group's required key, and pairs that only make sense together.
// Ranges that depend on the model's defaults (retry-per-try-timeout within
// the route timeout) are left to config validation, which the translator
// reports on the same keys.
func (p *parser) checkRoutePolicies(r *Route) {
	key := func(setting string) string { return routeKey(r.Name, setting) }
	has := func(setting string) bool { return p.set[key(setting)] }
	if r.Redirect != nil {
		for _, setting := range sortedRouteSettings() {
			if has(setting) && (setting == "streaming" || setting == "idle-timeout" || setting == "max-body-bytes" || strings.HasPrefix(setting, "retry-") || strings.HasPrefix(setting, "mirror-")) {
				p.fail(key(setting), "does not apply to a route that redirects (it sends nothing upstream)")
			}
		}
	}
	if rp := r.Retry; rp != nil {
		if !has("retry-attempts") {
			p.fail(key("retry-attempts"), "required when another retry-* key is set (the number of retries after the first try, 1-%d)", config.MaxRetryAttempts)
		}
		listsCodes := slices.Contains(rp.On, config.RetryStatusCodes)
		switch {
		case has("retry-status-codes") && !listsCodes && !p.failed(key("retry-on")):
			p.fail(key("retry-status-codes"), "needs %s in %s", config.RetryStatusCodes, key("retry-on"))
		case listsCodes && !has("retry-status-codes"):
			p.fail(key("retry-on"), "%s needs %s", config.RetryStatusCodes, key("retry-status-codes"))
		}
		base := rp.BackoffBase.D()
		if base == 0 {
			base = config.DefaultRetryBackoffBase
		}
		if has("retry-backoff-max") && rp.BackoffMax.D() > 0 && rp.BackoffMax.D() < base {
			p.fail(key("retry-backoff-max"), "must be at least retry-backoff-base (%s)", fmtDuration(base))
		}
	}
	if rl := r.RateLimit; rl != nil {
		if !has("rate-limit-requests") {
			p.fail(key("rate-limit-requests"), "required when another rate-limit-* key is set (the requests allowed per rate-limit-period)")
		}
		switch {
		case rl.Key == config.RateLimitByHeader && !has("rate-limit-header"):
			p.fail(key("rate-limit-header"), "required with rate-limit-key header")
		case has("rate-limit-header") && rl.Key != config.RateLimitByHeader && !p.failed(key("rate-limit-key")):
			p.fail(key("rate-limit-header"), "applies only with rate-limit-key header")
		}
	}
	if r.Mirror != nil && !has("mirror-service") {
		p.fail(key("mirror-service"), "required when mirror-percent is set")
	}
	p.checkRouteSecurity(r)
	if f := r.Fault; f != nil {
		for _, g := range []struct {
			on              bool
			main, pct, verb string
		}{
			{f.Delay != nil, "fault-delay", "fault-delay-percent", "delay"},
			{f.Abort != nil, "fault-abort-status", "fault-abort-percent", "abort"},
		} {
			if !g.on {
				continue
			}
			if !has(g.main) {
				p.fail(key(g.main), "required when %s is set", g.pct)
			}
			if !has(g.pct) {
				p.fail(key(g.pct), "required with %s: the percentage of requests to %s", g.main, g.verb)
			}
		}
	}
}

// checkRouteSecurity checks what spans several access-control keys of one
// route: each group's required keys, and settings that exclude each other.
func (p *parser) checkRouteSecurity(r *Route) {
	key := func(setting string) string { return routeKey(r.Name, setting) }
	has := func(setting string) bool { return p.set[key(setting)] }
	if r.APIKeys != nil && !has("api-keys-secret") {
		p.fail(key("api-keys-secret"), "required when api-keys-header is set (the Secret whose data key %q lists the keys)", APIKeysDataKey)
	}
	if r.BasicAuth != nil && !has("basic-auth-secret") {
		p.fail(key("basic-auth-secret"), "required when basic-auth-realm is set (the Secret whose data key %q holds htpasswd lines)", BasicAuthDataKey)
	}
	if j := r.JWT; j != nil {
		for _, s := range []struct{ setting, what string }{
			{"jwt-issuer", "the tokens' iss"},
			{"jwt-jwks-url", "where the issuer publishes its public keys"},
			{"jwt-algorithms", "the allowed algorithms, e.g. RS256"},
		} {
			if !has(s.setting) {
				p.fail(key(s.setting), "required when another jwt-* key is set (%s)", s.what)
			}
		}
		if has("jwt-from-header") && has("jwt-from-cookie") {
			p.fail(key("jwt-from-header"), "set only one of jwt-from-header, jwt-from-cookie")
			p.fail(key("jwt-from-cookie"), "set only one of jwt-from-header, jwt-from-cookie")
		}
	}
	if r.WAF != nil && !has("waf") {
		p.fail(key("waf"), "required when waf-paranoia-level or waf-exclude-rules is set (detect or block)")
	}
	if c := r.CORS; c != nil {
		if !has("cors-allow-origins") {
			p.fail(key("cors-allow-origins"), "required when another cors-* key is set")
		}
		if c.AllowCredentials && slices.Contains(c.AllowOrigins, "*") {
			p.fail(key("cors-allow-credentials"), "cannot be true with cors-allow-origins \"*\" (browsers refuse it); list the origins")
		}
	}
}

// checkClusterPolicies checks what spans several of the Service's cluster
// policy keys.
func (p *parser) checkClusterPolicies() {
	s := p.svc
	var hashKeys []string
	for _, k := range []string{"hash-header", "hash-cookie"} {
		if p.set[Prefix+k] {
			hashKeys = append(hashKeys, Prefix+k)
		}
	}
	if s.Hash != nil && s.Hash.SourceIP {
		hashKeys = append(hashKeys, Prefix+"hash-source-ip")
	}
	switch {
	case len(hashKeys) > 1:
		for _, k := range hashKeys {
			p.fail(k, "set only one of hash-header, hash-cookie, hash-source-ip")
		}
	case len(hashKeys) == 1 && s.LBPolicy != config.LBMaglev && !p.failed(Prefix+"lb-policy"):
		p.fail(hashKeys[0], "applies only with lb-policy maglev")
	case len(hashKeys) == 0 && s.LBPolicy == config.LBMaglev:
		p.fail(Prefix+"lb-policy", "maglev needs what to hash: set one of hash-header, hash-cookie, hash-source-ip")
	}
	if b := s.CircuitBreaker; b != nil && b.MaxPendingRequests > 0 && !p.set[Prefix+"max-connections"] {
		p.fail(Prefix+"max-pending-requests", "needs max-connections: requests wait only for a connection slot")
	}
	if o := s.OutlierDetection; o != nil {
		base := o.BaseEjectionTime.D()
		if base == 0 {
			base = config.DefaultOutlierBaseEjectionTime
		}
		if o.MaxEjectionTime.D() > 0 && o.MaxEjectionTime.D() < base {
			p.fail(Prefix+"outlier-max-ejection-time", "must be at least outlier-base-ejection-time (%s)", fmtDuration(base))
		}
		c5xx, conn := config.DefaultOutlierConsecutive5xx, config.DefaultOutlierConsecutiveConn
		if o.Consecutive5xx != nil {
			c5xx = *o.Consecutive5xx
		}
		if o.ConsecutiveConnectFailures != nil {
			conn = *o.ConsecutiveConnectFailures
		}
		if c5xx == 0 && conn == 0 && o.ConsecutiveGatewayErrors == 0 {
			p.fail(Prefix+"outlier-consecutive-5xx", "every outlier-consecutive-* threshold is 0: nothing would be ejected")
		}
	}
	if h := s.HealthCheck; h != nil {
		typeKey := Prefix + "health-check-type"
		if !p.set[typeKey] {
			p.fail(typeKey, "required when another health-check-* key is set (http, grpc or tcp)")
		} else if h.Type != "" {
			for _, k := range []string{"health-check-path", "health-check-expected-statuses"} {
				if h.Type != config.HealthCheckHTTP && p.set[Prefix+k] {
					p.fail(Prefix+k, "applies to health-check-type http only")
				}
			}
			if h.Type != config.HealthCheckGRPC && p.set[Prefix+"health-check-grpc-service"] {
				p.fail(Prefix+"health-check-grpc-service", "applies to health-check-type grpc only")
			}
		}
		interval := h.Interval.D()
		if interval == 0 {
			interval = config.DefaultHealthCheckInterval
		}
		if h.Timeout.D() > interval && !p.failed(Prefix+"health-check-interval") {
			p.fail(Prefix+"health-check-timeout", "must be at most health-check-interval (%s)", fmtDuration(interval))
		}
	}
}

// sortedRouteSettings lists the route keys in order, for deterministic
// error lists.
func sortedRouteSettings() []string {
	return slices.Sorted(maps.Keys(routeKeys))
}

// routeKey is the full annotation key for a setting of a route.
func routeKey(route, setting string) string {
	if route == DefaultRouteName {
		return Prefix + setting
	}
	return Prefix + route + "." + setting
}

func checkRouteName(n string) error {
	if n == DefaultRouteName {
		return fmt.Errorf("route name %q is reserved for the unprefixed keys", n)
	}
	if len(n) > MaxRouteNameLen || !isDNSLabel(n) {
		return fmt.Errorf("route name %q must be a lower-case DNS label of at most %d characters", n, MaxRouteNameLen)
	}
	return nil
}

// renamed maps names a team may guess for a setting to the key that
// edge-agent reads, so the error says which key to use.
var renamed = map[string]string{
	"retries":             "retry-attempts",
	"per-try-timeout":     "retry-per-try-timeout",
	"rate-limit":          "rate-limit-requests",
	"auth-jwt-issuer":     "jwt-issuer",
	"auth-basic-secret":   "basic-auth-secret",
	"allow-source-ranges": "ip-allow",
	"ext-auth":            "ext-auth-bypass",
}

// planned names keys a team may expect but this version does not read:
// setting one is an error saying so, instead of being ignored.
var planned = map[string]string{
	"auth-jwt-jwks-secret": "JWKS are fetched from jwt-jwks-url; JWKS files and Secrets are node config",
}
