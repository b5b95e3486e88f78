package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Security is node-wide protection (set by the platform team) and the
// defaults routes inherit. Route-level controls (JWT, external auth, basic
// auth, API keys, IP rules, WAF) are on Route.
type Security struct {
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed: the
	// client is the right-most address not in them. Empty: the client is
	// the connection's peer (or its PROXY protocol source).
	TrustedProxies []string `yaml:"trustedProxies" json:"trustedProxies,omitempty"`
	// DenyList drops packets from these source CIDRs in an XDP program,
	// before the kernel stack, on every interface the L4 program uses.
	DenyList DenyList `yaml:"denyList" json:"denyList"`
	// ExtAuth is the default external authorization for every route that
	// does not set its own or bypass it.
	ExtAuth *ExtAuth `yaml:"extAuth,omitempty" json:"extAuth,omitempty"`
	// MaxBodyBytes bounds request bodies of routes that do not set their
	// own (default 64MiB; gRPC calls and WebSocket tunnels are exempt
	// unless the route sets a limit).
	MaxBodyBytes int64 `yaml:"maxBodyBytes" json:"maxBodyBytes"`
}

// DenyList is the node-wide source deny list.
type DenyList struct {
	CIDRs []string `yaml:"cidrs" json:"cidrs,omitempty"`
	// Interfaces default to l4.interfaces (or the default route's).
	Interfaces []string `yaml:"interfaces" json:"interfaces,omitempty"`
}

// JWTAuth validates bearer tokens on a route.
type JWTAuth struct {
	Providers []JWTProvider `yaml:"providers" json:"providers"`
	// Optional lets requests without a token through; a token that is
	// present must still be valid.
	Optional bool `yaml:"optional" json:"optional"`
}

// JWTProvider is one issuer whose tokens a route accepts.
type JWTProvider struct {
	Name   string `yaml:"name" json:"name"`
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audiences: the token's aud must contain one (empty: not checked).
	Audiences []string `yaml:"audiences" json:"audiences,omitempty"`
	// JWKSURL (https, or http to a loopback or cluster address) or
	// JWKSFile holds the issuer's public keys; exactly one.
	JWKSURL  string `yaml:"jwksURL,omitempty" json:"jwksURL,omitempty"`
	JWKSFile string `yaml:"jwksFile,omitempty" json:"jwksFile,omitempty"`
	// JWKSRefresh is how often the keys are fetched again (default 5m);
	// an unknown key id triggers an early fetch (rate limited).
	JWKSRefresh Duration `yaml:"jwksRefresh" json:"jwksRefresh"`
	// Algorithms allowed, explicitly (RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512, EdDSA). Never none, never HMAC: a
	// public key must not double as a shared secret.
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// ClockSkew tolerated on exp, nbf and iat (default 30s, at most 5m).
	ClockSkew Duration `yaml:"clockSkew" json:"clockSkew"`
	// FromHeader (default Authorization, "Bearer " prefix) or FromCookie
	// carries the token.
	FromHeader string `yaml:"fromHeader,omitempty" json:"fromHeader,omitempty"`
	FromCookie string `yaml:"fromCookie,omitempty" json:"fromCookie,omitempty"`
	// ClaimsToHeaders copies claims (string, number or bool) to request
	// headers sent upstream; an incoming header of that name is removed.
	ClaimsToHeaders []ClaimHeader `yaml:"claimsToHeaders" json:"claimsToHeaders,omitempty"`
}

// ClaimHeader copies one claim to one header.
type ClaimHeader struct {
	Claim  string `yaml:"claim" json:"claim"`
	Header string `yaml:"header" json:"header"`
}

// ExtAuth asks an authorization service about each request: an HTTP
// service (Emissary AuthService style) or the Envoy ext_authz gRPC API.
type ExtAuth struct {
	HTTP *ExtAuthHTTP `yaml:"http,omitempty" json:"http,omitempty"`
	GRPC *ExtAuthGRPC `yaml:"grpc,omitempty" json:"grpc,omitempty"`
	// Timeout for the check (default 1s).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// FailOpen lets requests through when the service cannot be asked
	// (default false: 503).
	FailOpen bool `yaml:"failOpen" json:"failOpen"`
	// Bypass turns the node-wide default off for this route.
	Bypass bool `yaml:"bypass" json:"bypass"`
}

// ExtAuthHTTP sends the request's method, path (after PathPrefix) and
// chosen headers, without a body, to Cluster. 2xx allows (and may add
// headers); any other answer is returned to the client as is.
type ExtAuthHTTP struct {
	Cluster    string `yaml:"cluster" json:"cluster"`
	PathPrefix string `yaml:"pathPrefix,omitempty" json:"pathPrefix,omitempty"`
	// AllowedRequestHeaders are sent to the service (Authorization,
	// Cookie, Host and the X-Forwarded-* are always sent).
	AllowedRequestHeaders []string `yaml:"allowedRequestHeaders" json:"allowedRequestHeaders,omitempty"`
	// AllowedUpstreamHeaders are copied from an allowing answer to the
	// request sent upstream.
	AllowedUpstreamHeaders []string `yaml:"allowedUpstreamHeaders" json:"allowedUpstreamHeaders,omitempty"`
}

// ExtAuthGRPC calls envoy.service.auth.v3.Authorization/Check on Cluster
// (protocol h2c).
type ExtAuthGRPC struct {
	Cluster string `yaml:"cluster" json:"cluster"`
}

// BasicAuth checks user:password against htpasswd entries (bcrypt or
// {SHA256}/{SHA512} hashes; plain text is refused).
type BasicAuth struct {
	Realm     string `yaml:"realm" json:"realm"`
	UsersFile string `yaml:"usersFile,omitempty" json:"usersFile,omitempty"`
	// Users are htpasswd lines from a Kubernetes Secret (never shown).
	Users []string `yaml:"-" json:"-"`
	// Source names where Users came from (e.g. "secret ns/name").
	Source string `yaml:"-" json:"source,omitempty"`
}

// APIKeys checks a header against a set of keys, compared as SHA-256
// digests in constant time.
type APIKeys struct {
	// Header carries the key (default X-API-Key); it is not sent upstream.
	Header   string `yaml:"header" json:"header"`
	KeysFile string `yaml:"keysFile,omitempty" json:"keysFile,omitempty"`
	// Keys are from a Kubernetes Secret (never shown).
	Keys   []string `yaml:"-" json:"-"`
	Source string   `yaml:"-" json:"source,omitempty"`
}

// IPRules allow or deny clients by address (after trusted proxies and
// the PROXY protocol). Deny wins; with Allow set, others are denied.
type IPRules struct {
	Allow []string `yaml:"allow" json:"allow,omitempty"`
	Deny  []string `yaml:"deny" json:"deny,omitempty"`
}

// WAFMode is what a matching WAF rule does.
type WAFMode string

const (
	WAFDetect WAFMode = "detect"
	WAFBlock  WAFMode = "block"
)

// WAF runs the OWASP Core Rule Set (Coraza) on a route's requests.
type WAF struct {
	Mode WAFMode `yaml:"mode" json:"mode"`
	// ParanoiaLevel 1 (default) to 4: higher catches more, and blocks
	// more legitimate traffic.
	ParanoiaLevel int `yaml:"paranoiaLevel" json:"paranoiaLevel"`
	// ExcludeRules are CRS rule ids not applied on this route.
	ExcludeRules []int `yaml:"excludeRules" json:"excludeRules,omitempty"`
}

// Security defaults.
const (
	DefaultMaxBodyBytes     = 64 << 20
	DefaultJWKSRefresh      = 5 * time.Minute
	DefaultJWTClockSkew     = 30 * time.Second
	DefaultExtAuthTimeout   = time.Second
	DefaultAPIKeyHeader     = "X-API-Key"
	DefaultBasicAuthRealm   = "edge-agent"
	DefaultWAFParanoiaLevel = 1
)

// JWTAlgorithms are the algorithms a JWT provider may allow.
var JWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func applySecurityDefaults(c *Config) {
	if c.Security.MaxBodyBytes == 0 {
		c.Security.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if a := c.Security.ExtAuth; a != nil {
		setDur(&a.Timeout, DefaultExtAuthTimeout)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if j := r.JWT; j != nil {
			for k := range j.Providers {
				p := &j.Providers[k]
				setDur(&p.JWKSRefresh, DefaultJWKSRefresh)
				setDur(&p.ClockSkew, DefaultJWTClockSkew)
				if p.FromCookie == "" {
					setStr(&p.FromHeader, "Authorization")
				}
			}
		}
		if a := r.ExtAuth; a != nil && !a.Bypass {
			setDur(&a.Timeout, DefaultExtAuthTimeout)
		}
		if b := r.BasicAuth; b != nil {
			setStr(&b.Realm, DefaultBasicAuthRealm)
		}
		if k := r.APIKeys; k != nil {
			setStr(&k.Header, DefaultAPIKeyHeader)
		}
		if w := r.WAF; w != nil && w.ParanoiaLevel == 0 {
			w.ParanoiaLevel = DefaultWAFParanoiaLevel
		}
	}
}

func validateSecurity(e *errs, c *Config, clusters map[string]bool, protocols map[string]UpstreamProtocol) {
	s := &c.Security
	for i, cidr := range s.TrustedProxies {
		checkCIDR(e, idx("security.trustedProxies", i), cidr)
	}
	for i, cidr := range s.DenyList.CIDRs {
		checkCIDR(e, idx("security.denyList.cidrs", i), cidr)
		if p, err := netip.ParsePrefix(cidr); err == nil && !p.Addr().Is4() {
			e.add(idx("security.denyList.cidrs", i), "only IPv4 CIDRs are dropped by the XDP program")
		}
	}
	for i, n := range s.DenyList.Interfaces {
		if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \x00") {
			e.add(idx("security.denyList.interfaces", i), "%q is not an interface name", n)
		}
	}
	for i, l := range c.Listeners {
		if l.ProxyProtocol && l.Protocol == ListenerTCP {
			e.add(idx("listeners", i)+".proxyProtocol", "applies to http, https and auto listeners")
		}
	}
	if s.MaxBodyBytes < 0 || s.MaxBodyBytes > 1<<40 {
		e.add("security.maxBodyBytes", "must be between 1 and 1TiB, got %d", s.MaxBodyBytes)
	}
	if a := s.ExtAuth; a != nil {
		if a.Bypass {
			e.add("security.extAuth.bypass", "bypass is set on routes, not on the default")
		}
		validateExtAuth(e, "security.extAuth", a, clusters, protocols)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := idx("routes", i)
		if r.MaxBodyBytes < 0 || r.MaxBodyBytes > 1<<40 {
			e.add(p+".maxBodyBytes", "must be 0 (the node default) or up to 1TiB, got %d", r.MaxBodyBytes)
		}
		if j := r.JWT; j != nil {
			validateJWT(e, p+".jwt", j)
		}
		if a := r.ExtAuth; a != nil && !a.Bypass {
			validateExtAuth(e, p+".extAuth", a, clusters, protocols)
		} else if a != nil && (a.HTTP != nil || a.GRPC != nil) {
			e.add(p+".extAuth", "bypass excludes http and grpc")
		}
		if b := r.BasicAuth; b != nil {
			if hasCtl(b.Realm) || strings.Contains(b.Realm, `"`) {
				e.add(p+".basicAuth.realm", "must not contain quotes or control characters")
			}
			if b.UsersFile == "" && b.Source == "" {
				e.add(p+".basicAuth.usersFile", "is required")
			}
		}
		if k := r.APIKeys; k != nil {
			if !isToken(k.Header) {
				e.add(p+".apiKeys.header", "%q is not a valid header name", k.Header)
			}
			if k.KeysFile == "" && k.Source == "" {
				e.add(p+".apiKeys.keysFile", "is required")
			}
		}
		if ip := r.IPRules; ip != nil {
			if len(ip.Allow) == 0 && len(ip.Deny) == 0 {
				e.add(p+".ipRules", "set allow, deny or both")
			}
			for j, cidr := range ip.Allow {
				checkCIDR(e, idx(p+".ipRules.allow", j), cidr)
			}
			for j, cidr := range ip.Deny {
				checkCIDR(e, idx(p+".ipRules.deny", j), cidr)
			}
		}
		if w := r.WAF; w != nil {
			if w.Mode != WAFDetect && w.Mode != WAFBlock {
				e.add(p+".waf.mode", "must be one of detect, block; got %q", w.Mode)
			}
			checkIntRange(e, p+".waf.paranoiaLevel", w.ParanoiaLevel, 1, 4)
			for j, id := range w.ExcludeRules {
				checkIntRange(e, idx(p+".waf.excludeRules", j), id, 1, 999999)
			}
		}
	}
}

func validateJWT(e *errs, p string, j *JWTAuth) {
	if len(j.Providers) == 0 {
		e.add(p+".providers", "at least one provider is required")
	}
	names := map[string]bool{}
	for i := range j.Providers {
		pp := idx(p+".providers", i)
		v := &j.Providers[i]
		checkName(e, pp+".name", v.Name, names)
		if v.Issuer == "" || hasCtl(v.Issuer) {
			e.add(pp+".issuer", "is required (the token's iss)")
		}
		for k, a := range v.Audiences {
			if a == "" || hasCtl(a) {
				e.add(idx(pp+".audiences", k), "must be a non-empty string without control characters")
			}
		}
		switch {
		case (v.JWKSURL == "") == (v.JWKSFile == ""):
			e.add(pp, "set exactly one of jwksURL, jwksFile")
		case v.JWKSURL != "":
			if err := checkJWKSURL(v.JWKSURL); err != nil {
				e.add(pp+".jwksURL", "%v", err)
			}
		}
		if len(v.Algorithms) == 0 {
			e.add(pp+".algorithms", "list the allowed algorithms explicitly (e.g. [RS256])")
		}
		for k, a := range v.Algorithms {
			if !containsStr(JWTAlgorithms, a) {
				e.add(idx(pp+".algorithms", k), "must be one of %s; got %q (none and HMAC are never allowed)", strings.Join(JWTAlgorithms, ", "), a)
			}
		}
		if d := v.JWKSRefresh.D(); d < 10*time.Second || d > 24*time.Hour {
			e.add(pp+".jwksRefresh", "must be between 10s and 24h, got %s", d)
		}
		if d := v.ClockSkew.D(); d < 0 || d > 5*time.Minute {
			e.add(pp+".clockSkew", "must be between 0 and 5m, got %s", d)
		}
		if v.FromHeader != "" && v.FromCookie != "" {
			e.add(pp, "set at most one of fromHeader, fromCookie")
		}
		if v.FromHeader != "" && !isToken(v.FromHeader) {
			e.add(pp+".fromHeader", "%q is not a valid header name", v.FromHeader)
		}
		if v.FromCookie != "" && !isToken(v.FromCookie) {
			e.add(pp+".fromCookie", "%q is not a valid cookie name", v.FromCookie)
		}
		for k, ch := range v.ClaimsToHeaders {
			cp := idx(pp+".claimsToHeaders", k)
			if ch.Claim == "" || hasCtl(ch.Claim) {
				e.add(cp+".claim", "is required")
			}
			if err := CheckHeaderName(ch.Header); err != nil {
				e.add(cp+".header", "%v", err)
			}
		}
	}
}

func validateExtAuth(e *errs, p string, a *ExtAuth, clusters map[string]bool, protocols map[string]UpstreamProtocol) {
	switch {
	case (a.HTTP == nil) == (a.GRPC == nil):
		e.add(p, "set exactly one of http, grpc")
	case a.HTTP != nil:
		if !clusters[a.HTTP.Cluster] {
			e.add(p+".http.cluster", "no cluster named %q", a.HTTP.Cluster)
		}
		if a.HTTP.PathPrefix != "" {
			checkPath(e, p+".http.pathPrefix", a.HTTP.PathPrefix)
		}
		for i, h := range a.HTTP.AllowedRequestHeaders {
			if !isToken(h) {
				e.add(idx(p+".http.allowedRequestHeaders", i), "%q is not a valid header name", h)
			}
		}
		for i, h := range a.HTTP.AllowedUpstreamHeaders {
			if err := CheckHeaderName(h); err != nil {
				e.add(idx(p+".http.allowedUpstreamHeaders", i), "%v", err)
			}
		}
	case a.GRPC != nil:
		if !clusters[a.GRPC.Cluster] {
			e.add(p+".grpc.cluster", "no cluster named %q", a.GRPC.Cluster)
		} else if protocols[a.GRPC.Cluster] != UpstreamH2C {
			e.add(p+".grpc.cluster", "cluster %q must have protocol h2c", a.GRPC.Cluster)
		}
	}
	if d := a.Timeout.D(); d <= 0 || d > time.Minute {
		e.add(p+".timeout", "must be between 1ns and 1m, got %s", d)
	}
}

func checkCIDR(e *errs, path, s string) {
	if _, err := netip.ParsePrefix(s); err != nil {
		if _, aerr := netip.ParseAddr(s); aerr != nil {
			e.add(path, "%q is not a CIDR (10.0.0.0/8) or an address", s)
		}
	}
}

// ParseCIDR accepts a CIDR or a single address (as a /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkJWKSURL accepts https URLs, and http only to loopback addresses and
// in-cluster names (*.svc, *.svc.cluster.local): keys fetched in the clear
// over a network could be replaced by anyone on the path.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute http(s) URL without credentials", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if a, err := netip.ParseAddr(h); err == nil && a.IsLoopback() || h == "localhost" ||
			strings.HasSuffix(h, ".svc") || strings.HasSuffix(h, ".svc.cluster.local") {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only to loopback and in-cluster (*.svc) hosts; use https", s)
	}
	return fmt.Errorf("%q: scheme must be https", s)
}
