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
		for _, k := range []string{"hosts", "tls-secret", "canary-service", "canary-weight", "canary-header", "canary-cookie", "backend-ca-secret", "backend-server-name", "lb-policy", "connect-timeout"} {
			if p.set[Prefix+k] {
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
	}
	if c := s.Canary; c != nil {
		if c.Service == "" {
			p.fail(Prefix+"canary-service", "required when canary-weight, canary-header or canary-cookie is set")
		}
	}
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

// planned names keys of features that later versions add: they are reserved
// so a team setting one learns it is not enforced instead of being ignored.
var planned = map[string]string{
	"retries":              "retries arrive with traffic policy",
	"retry-on":             "retries arrive with traffic policy",
	"per-try-timeout":      "retries arrive with traffic policy",
	"max-connections":      "circuit breaking arrives with traffic policy",
	"max-pending-requests": "circuit breaking arrives with traffic policy",
	"max-requests":         "circuit breaking arrives with traffic policy",
	"rate-limit":           "rate limiting arrives with traffic policy",
	"rate-limit-burst":     "rate limiting arrives with traffic policy",
	"rate-limit-key":       "rate limiting arrives with traffic policy",
	"auth-jwt-issuer":      "authentication arrives with the security release",
	"auth-jwt-jwks-secret": "authentication arrives with the security release",
	"auth-basic-secret":    "authentication arrives with the security release",
	"cors-allow-origins":   "CORS arrives with the security release",
	"cors-allow-methods":   "CORS arrives with the security release",
	"cors-allow-headers":   "CORS arrives with the security release",
	"allow-source-ranges":  "source filtering arrives with the security release",
}
