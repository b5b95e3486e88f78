package router

import (
	"fmt"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

type benchCase struct {
	name string
	req  *message.Request
	want string
}

// clusterTable builds a table shaped like a large cluster: 1,000 hosts with
// 10 routes each (prefixes, exact paths, header/method/cookie/query
// matchers), 20 wildcard hosts and a catch-all host with regex routes.
func clusterTable(tb testing.TB) (*Table[string], []benchCase) {
	var es []Entry[string]
	canary := []config.ValueMatch{{Name: "x-canary", Exact: "1"}}
	for h := range 1000 {
		host := []string{fmt.Sprintf("svc-%04d.prod.example.com", h)}
		add := func(name string, m config.Match) {
			es = append(es, Entry[string]{Hosts: host, Match: m, Value: fmt.Sprintf("%d:%s", h, name)})
		}
		add("root", config.Match{})
		add("v1-orders", config.Match{Path: prefix("/api/v1/orders")})
		add("v1-users", config.Match{Path: prefix("/api/v1/users")})
		add("v1-users-canary", config.Match{Path: prefix("/api/v1/users"), Headers: canary})
		add("v2-orders", config.Match{Path: prefix("/api/v2/orders/")})
		add("api-get", config.Match{Path: prefix("/api"), Methods: []string{"GET", "HEAD"},
			Headers: []config.ValueMatch{{Name: "accept", Prefix: "application/json"}}})
		add("static", config.Match{Path: prefix("/static")})
		add("healthz", config.Match{Path: exact("/healthz")})
		add("graphql", config.Match{Path: exact("/graphql"), Methods: []string{"POST"}})
		add("admin", config.Match{Path: prefix("/admin"), Cookies: []config.ValueMatch{{Name: "role", Exact: "admin"}},
			Query: []config.ValueMatch{{Name: "debug"}}})
	}
	for z := range 20 {
		es = append(es, Entry[string]{Hosts: []string{fmt.Sprintf("*.zone-%02d.example.net", z)},
			Match: config.Match{Path: prefix("/")}, Value: fmt.Sprintf("zone-%02d", z)})
	}
	for i, re := range []string{`/users/[0-9]+`, `/orders/[0-9a-f-]{36}`, `/img/.+\.(png|jpg)`, `/v[0-9]+/.*`} {
		es = append(es, Entry[string]{Match: config.Match{Path: regex(re)}, Value: fmt.Sprintf("re-%d", i)})
	}
	es = append(es, Entry[string]{Match: config.Match{Path: prefix("/")}, Value: "catch-all"})
	t, err := New(es)
	if err != nil {
		tb.Fatal(err)
	}
	cases := []benchCase{
		{"exact-host-deep-prefix", req("GET", "svc-0042.prod.example.com", "/api/v1/orders/123/items?page=2"), "42:v1-orders"},
		{"exact-host-header", req("GET", "svc-0999.prod.example.com", "/api/v1/users/7", "Accept", "*/*", "X-Canary", "1"), "999:v1-users-canary"},
		{"exact-host-method-header", req("GET", "svc-0500.prod.example.com", "/api/v3/x", "User-Agent", "curl/8", "Accept", "application/json"), "500:api-get"},
		{"exact-host-exact-path", req("GET", "SVC-0001.prod.example.com:443", "/healthz"), "1:healthz"},
		{"exact-host-root", req("GET", "svc-0777.prod.example.com", "/index.html"), "777:root"},
		{"exact-host-cookie-query", req("GET", "svc-0003.prod.example.com", "/admin/panel?debug", "Cookie", "sid=1; role=admin"), "3:admin"},
		{"wildcard", req("GET", "api.eu.zone-07.example.net", "/anything/here"), "zone-07"},
		{"regex-catch-all", req("GET", "unknown.example.org", "/img/a/b/c.png"), "re-2"},
		{"catch-all-miss", req("GET", "unknown.example.org", "/nothing/matches/here"), "catch-all"},
	}
	for _, c := range cases {
		if got, ok := t.Lookup(c.req); !ok || got != c.want {
			tb.Fatalf("%s: got %q (%v), want %q", c.name, got, ok, c.want)
		}
	}
	return t, cases
}

func BenchmarkLookup10kRoutes(b *testing.B) {
	t, cases := clusterTable(b)
	b.Run("mix", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			t.Lookup(cases[i%len(cases)].req)
			i++
		}
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t.Lookup(c.req)
			}
		})
	}
}

func BenchmarkLookupSmall(b *testing.B) {
	t, err := New([]Entry[string]{
		{Hosts: []string{"api.example.com"}, Match: config.Match{Path: prefix("/v1/orders")}, Value: "orders"},
		{Hosts: []string{"api.example.com"}, Match: config.Match{Path: prefix("/v1/users")}, Value: "users"},
		{Hosts: []string{"api.example.com"}, Match: config.Match{Path: prefix("/v1/users"),
			Headers: []config.ValueMatch{{Name: "x-canary", Exact: "1"}}}, Value: "users-canary"},
		{Hosts: []string{"api.example.com"}, Match: config.Match{Path: exact("/healthz")}, Value: "health"},
		{Hosts: []string{"www.example.com"}, Match: config.Match{Path: prefix("/static")}, Value: "static"},
		{Hosts: []string{"www.example.com"}, Match: config.Match{}, Value: "www"},
		{Hosts: []string{"*.example.com"}, Match: config.Match{}, Value: "wild"},
		{Match: config.Match{Path: regex(`/users/[0-9]+`)}, Value: "re"},
		{Match: config.Match{Path: prefix("/api"), Methods: []string{"GET"}}, Value: "api"},
		{Match: config.Match{}, Value: "default"},
	})
	if err != nil {
		b.Fatal(err)
	}
	cases := []benchCase{
		{"", req("GET", "api.example.com", "/v1/orders/1"), "orders"},
		{"", req("GET", "api.example.com", "/v1/users/1", "X-Canary", "1"), "users-canary"},
		{"", req("GET", "www.example.com", "/static/app.js"), "static"},
		{"", req("GET", "cdn.example.com", "/x"), "wild"},
		{"", req("GET", "other.org", "/users/42"), "re"},
		{"", req("GET", "other.org", "/x"), "default"},
	}
	for _, c := range cases {
		if got, _ := t.Lookup(c.req); got != c.want {
			b.Fatalf("%s%s: got %q, want %q", c.req.Host, c.req.Target, got, c.want)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t.Lookup(cases[i%len(cases)].req)
		i++
	}
}
