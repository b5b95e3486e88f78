package config

import (
	"testing"
	"time"
)

func securityConfig(top, listener, route string) string {
	return top + `
listeners: [{name: http, address: "127.0.0.1:8080"` + listener + `}]
routes: [{name: r, backends: [{cluster: c}]` + route + `}]
clusters: [{name: c, endpoints: [{address: 10.0.0.1:80}]}, {name: auth, protocol: h2c, endpoints: [{address: 10.0.0.2:80}]}, {name: authh, endpoints: [{address: 10.0.0.3:80}]}]
`
}

func TestSecurityDefaults(t *testing.T) {
	cfg, err := Parse([]byte(securityConfig("security: {extAuth: {grpc: {cluster: auth}}}", "",
		`, jwt: {providers: [{name: p, issuer: https://id.example, jwksURL: https://id.example/jwks, algorithms: [RS256]}]},
  basicAuth: {usersFile: /x}, apiKeys: {keysFile: /y}, waf: {mode: block}`)))
	if err != nil {
		t.Fatal(err)
	}
	s, r := cfg.Security, cfg.Routes[0]
	if s.MaxBodyBytes != 64<<20 || s.ExtAuth.Timeout.D() != time.Second {
		t.Errorf("security defaults %+v", s)
	}
	p := r.JWT.Providers[0]
	if p.JWKSRefresh.D() != 5*time.Minute || p.ClockSkew.D() != 30*time.Second || p.FromHeader != "Authorization" {
		t.Errorf("jwt defaults %+v", p)
	}
	if r.BasicAuth.Realm != "edge-agent" || r.APIKeys.Header != "X-API-Key" || r.WAF.ParanoiaLevel != 1 {
		t.Errorf("route defaults %+v %+v %+v", r.BasicAuth, r.APIKeys, r.WAF)
	}
}

func TestSecurityValidationErrors(t *testing.T) {
	jwt := func(p string) string {
		return `, jwt: {providers: [{name: p, issuer: https://id.example, algorithms: [RS256]` + p + `}]}`
	}
	for _, tc := range []struct {
		name, top, listener, route string
		want                       []FieldError
	}{
		{"trusted proxy", "security: {trustedProxies: [10.0.0.0/33]}", "", "", []FieldError{{"security.trustedProxies[0]", "not a CIDR"}}},
		{"deny list v6", "security: {denyList: {cidrs: ['2001:db8::/32']}}", "", "", []FieldError{{"security.denyList.cidrs[0]", "only IPv4"}}},
		{"proxy protocol on tcp", "", `, protocol: tcp, tcp: {cluster: c}, proxyProtocol: true`, "", []FieldError{{"listeners[0].proxyProtocol", "http, https and auto"}}},
		{"jwt none", "", "", `, jwt: {providers: [{name: p, issuer: i, jwksFile: /k, algorithms: [none]}]}`, []FieldError{{"routes[0].jwt.providers[0].algorithms[0]", "never allowed"}}},
		{"jwt hmac", "", "", `, jwt: {providers: [{name: p, issuer: i, jwksFile: /k, algorithms: [HS256]}]}`, []FieldError{{"routes[0].jwt.providers[0].algorithms[0]", "never allowed"}}},
		{"jwt no algorithms", "", "", `, jwt: {providers: [{name: p, issuer: i, jwksFile: /k}]}`, []FieldError{{"routes[0].jwt.providers[0].algorithms", "explicitly"}}},
		{"jwt both key sources", "", "", jwt(", jwksFile: /k, jwksURL: https://id.example/k"), []FieldError{{"routes[0].jwt.providers[0]", "exactly one of jwksURL, jwksFile"}}},
		{"jwt plain http", "", "", jwt(", jwksURL: http://id.example/k"), []FieldError{{"routes[0].jwt.providers[0].jwksURL", "plain http"}}},
		{"jwt skew", "", "", jwt(", jwksFile: /k, clockSkew: 1h"), []FieldError{{"routes[0].jwt.providers[0].clockSkew", "between 0 and 5m"}}},
		{"jwt claim header", "", "", jwt(", jwksFile: /k, claimsToHeaders: [{claim: sub, header: Host}]"), []FieldError{{"routes[0].jwt.providers[0].claimsToHeaders[0].header", "managed by the proxy"}}},
		{"ext auth both", "", "", `, extAuth: {http: {cluster: authh}, grpc: {cluster: auth}}`, []FieldError{{"routes[0].extAuth", "exactly one of http, grpc"}}},
		{"ext auth grpc http1", "", "", `, extAuth: {grpc: {cluster: authh}}`, []FieldError{{"routes[0].extAuth.grpc.cluster", "protocol h2c"}}},
		{"ext auth unknown cluster", "security: {extAuth: {http: {cluster: nope}}}", "", "", []FieldError{{"security.extAuth.http.cluster", `no cluster named "nope"`}}},
		{"bypass with config", "", "", `, extAuth: {bypass: true, http: {cluster: authh}}`, []FieldError{{"routes[0].extAuth", "bypass excludes"}}},
		{"basic auth realm", "", "", `, basicAuth: {realm: 'a"b', usersFile: /u}`, []FieldError{{"routes[0].basicAuth.realm", "quotes"}}},
		{"api keys file", "", "", `, apiKeys: {}`, []FieldError{{"routes[0].apiKeys.keysFile", "is required"}}},
		{"ip rules", "", "", `, ipRules: {allow: [nope]}`, []FieldError{{"routes[0].ipRules.allow[0]", "not a CIDR"}}},
		{"waf mode", "", "", `, waf: {mode: audit}`, []FieldError{{"routes[0].waf.mode", `got "audit"`}}},
		{"waf paranoia", "", "", `, waf: {mode: block, paranoiaLevel: 5}`, []FieldError{{"routes[0].waf.paranoiaLevel", "between 1 and 4"}}},
		{"cors wildcard", "", "", `, cors: {allowOrigins: ["https://*"]}`, []FieldError{{"routes[0].cors.allowOrigins[0]", "not an origin"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(securityConfig(tc.top, tc.listener, tc.route)))
			assertFieldErrors(t, err, tc.want)
		})
	}
	// Accepted: wildcard-subdomain CORS origins, http JWKS to in-cluster hosts.
	if _, err := Parse([]byte(securityConfig("", "", `, cors: {allowOrigins: ["https://*.example.com"]}`+
		jwt(", jwksURL: http://keys.auth.svc.cluster.local/jwks")))); err != nil {
		t.Fatal(err)
	}
}
