package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestRoutingPrecedence drives host, path, method, header and query
// matching through the real proxy and checks which backend answers.
func TestRoutingPrecedence(t *testing.T) {
	names := []string{"exact-host", "wild-host", "wild-deep", "any", "api-exact", "api-prefix", "regex", "post-only", "hdr", "query"}
	bs := map[string]*backend{}
	var clusters strings.Builder
	for _, n := range names {
		bs[n] = newBackend(t, n)
		fmt.Fprintf(&clusters, "  - name: %s\n    endpoints: [{address: %s}]\n", n, bs[n].addr())
	}
	e := startProxy(t, `
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: r-exact-host, hosts: [shop.example.com], backends: [{cluster: exact-host}]}
  - {name: r-wild-host, hosts: ["*.example.com"], backends: [{cluster: wild-host}]}
  - {name: r-wild-deep, hosts: ["*.eu.example.com"], backends: [{cluster: wild-deep}]}
  - {name: r-any, backends: [{cluster: any}]}
  - {name: r-api-exact, match: {path: {exact: /api/v1}}, backends: [{cluster: api-exact}]}
  - {name: r-api-prefix, match: {path: {prefix: /api}}, backends: [{cluster: api-prefix}]}
  - {name: r-regex, match: {path: {regex: "/users/[0-9]+/orders"}}, backends: [{cluster: regex}]}
  - {name: r-post, match: {path: {prefix: /api}, methods: [POST]}, backends: [{cluster: post-only}]}
  - {name: r-hdr, match: {path: {prefix: /api}, headers: [{name: X-Tenant, regex: "acme-[a-z]+"}]}, backends: [{cluster: hdr}]}
  - {name: r-query, match: {path: {prefix: /api}, query: [{name: version, exact: "2 beta"}]}, backends: [{cluster: query}]}
clusters:
`+clusters.String())
	c := &http.Client{}
	cases := []struct {
		name, method, host, path string
		header                   map[string]string
		want                     string
	}{
		{"exact host beats wildcard", "GET", "shop.example.com", "/", nil, "exact-host"},
		{"host case and port ignored", "GET", "SHOP.Example.com:8080", "/", nil, "exact-host"},
		{"wildcard", "GET", "blog.example.com", "/", nil, "wild-host"},
		{"deeper wildcard wins", "GET", "a.eu.example.com", "/", nil, "wild-deep"},
		{"wildcard does not match apex", "GET", "example.com", "/", nil, "any"},
		{"exact path beats prefix", "GET", "x.test", "/api/v1", nil, "api-exact"},
		{"segment prefix", "GET", "x.test", "/api/v1/items", nil, "api-prefix"},
		{"prefix is segment-aware", "GET", "x.test", "/apiary", nil, "any"},
		{"regex path", "GET", "x.test", "/users/42/orders", nil, "regex"},
		{"regex is anchored", "GET", "x.test", "/users/42/orders/7", nil, "any"},
		{"method matcher", "POST", "x.test", "/api/things", nil, "post-only"},
		{"header regex matcher", "GET", "x.test", "/api/things", map[string]string{"x-tenant": "acme-corp"}, "hdr"},
		{"header regex anchored", "GET", "x.test", "/api/things", map[string]string{"x-tenant": "acme-corp!"}, "api-prefix"},
		{"query matcher decodes", "GET", "x.test", "/api/things?a=1&version=2+beta", nil, "query"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := mustReq(t, tc.method, e.url(tc.path), nil)
			req.Host = tc.host
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, got := get(t, c, req)
			if resp.StatusCode != 200 || got.Backend != tc.want {
				t.Fatalf("got status %d from %q, want 200 from %q", resp.StatusCode, got.Backend, tc.want)
			}
		})
	}
}

func TestNoRouteIs404WithReason(t *testing.T) {
	b := newBackend(t, "only")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, hosts: [only.test], backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, b.addr()))
	resp, _ := get(t, http.DefaultClient, mustReq(t, "GET", e.url("/"), nil))
	if resp.StatusCode != 404 || resp.Header.Get("Edge-Agent-Reason") != "no_route" {
		t.Fatalf("got %d reason %q, want 404 no_route", resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"))
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("local replies should carry the request id")
	}
}

func TestRewritesRedirectsAndHeaders(t *testing.T) {
	b := newBackend(t, "svc")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - name: strip
    match: {path: {prefix: /api/}}
    rewrite: {prefix: /, host: internal.svc}
    requestHeaders:
      set: [{name: X-Team, value: payments}]
      add: [{name: X-Extra, value: one}]
      remove: [X-Secret]
    responseHeaders:
      set: [{name: Cache-Control, value: no-store}]
      add: [{name: X-Served-By, value: edge-agent}]
      remove: [X-Backend]
    backends: [{cluster: c}]
  - name: swap
    match: {path: {prefix: /v1}}
    rewrite: {prefix: /v2/}
    backends: [{cluster: c}]
  - {name: to-https, match: {path: {prefix: /secure}}, redirect: {scheme: https, code: 308}}
  - {name: moved, match: {path: {prefix: /old}}, redirect: {prefix: /new, code: 301}}
  - {name: elsewhere, match: {path: {exact: /go}}, redirect: {host: other.example.com, port: 8443, path: /landing}}
clusters: [{name: c, endpoints: [{address: %s}]}]
`, b.addr()))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	req := mustReq(t, "GET", e.url("/api/users?id=7"), nil)
	req.Header.Set("X-Team", "spoofed")
	req.Header.Set("X-Secret", "s3cr3t")
	resp, got := get(t, c, req)
	if got.Path != "/users?id=7" {
		t.Errorf("prefix rewrite: upstream path %q, want /users?id=7", got.Path)
	}
	if got.Host != "internal.svc" {
		t.Errorf("host rewrite: upstream host %q", got.Host)
	}
	if v := got.Header.Values("X-Team"); len(v) != 1 || v[0] != "payments" {
		t.Errorf("set X-Team: got %q", v)
	}
	if got.Header.Get("X-Extra") != "one" || got.Header.Get("X-Secret") != "" {
		t.Errorf("add/remove request headers: %v", got.Header)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Served-By") != "edge-agent" || resp.Header.Get("X-Backend") != "" {
		t.Errorf("response header mutations: %v", resp.Header)
	}

	_, got = get(t, c, mustReq(t, "GET", e.url("/v1/items"), nil))
	if got.Path != "/v2/items" {
		t.Errorf("rewrite /v1 → /v2/: got %q", got.Path)
	}

	for _, tc := range []struct {
		path, host string
		code       int
		loc        string
	}{
		{"/secure/x?q=1", "shop.test:8080", 308, "https://shop.test/secure/x?q=1"},
		{"/old/page", "shop.test", 301, "http://shop.test/new/page"},
		{"/go", "shop.test", 302, "http://other.example.com:8443/landing"},
	} {
		req := mustReq(t, "GET", e.url(tc.path), nil)
		req.Host = tc.host
		resp, _ := get(t, c, req)
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.loc {
			t.Errorf("%s: got %d %q, want %d %q", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.loc)
		}
	}
}

// TestCanaryAndBetaUsers checks a 90/10 weighted split and that beta users,
// picked by header or cookie, always reach the new version.
func TestCanaryAndBetaUsers(t *testing.T) {
	v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
  - {name: beta-header, match: {headers: [{name: x-beta, exact: "true"}]}, backends: [{cluster: v2}]}
  - {name: beta-cookie, match: {cookies: [{name: beta, exact: "1"}]}, backends: [{cluster: v2}]}
  - {name: canary, backends: [{cluster: v1, weight: 90}, {cluster: v2, weight: 10}]}
clusters:
  - {name: v1, endpoints: [{address: %s}]}
  - {name: v2, endpoints: [{address: %s}]}
`, v1.addr(), v2.addr()))
	c := &http.Client{}
	const n = 2000
	counts := map[string]int{}
	for range n {
		_, got := get(t, c, mustReq(t, "GET", e.url("/"), nil))
		counts[got.Backend]++
	}
	// 10% of 2000 is 200 with a standard deviation of about 13.4: ±5σ.
	if counts["v2"] < 133 || counts["v2"] > 267 || counts["v1"]+counts["v2"] != n {
		t.Errorf("canary split: %v, want about 1800/200", counts)
	}
	for range 50 {
		req := mustReq(t, "GET", e.url("/"), nil)
		req.Header.Set("X-Beta", "true")
		if _, got := get(t, c, req); got.Backend != "v2" {
			t.Fatalf("beta header went to %s", got.Backend)
		}
		req = mustReq(t, "GET", e.url("/"), nil)
		req.Header.Set("Cookie", "session=abc; beta=1")
		if _, got := get(t, c, req); got.Backend != "v2" {
			t.Fatalf("beta cookie went to %s", got.Backend)
		}
	}
}
