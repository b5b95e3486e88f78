package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// baseListeners and baseClusters give route-level test cases something valid
// to refer to: listener "http" and clusters "web" and "api".
const baseListeners = `listeners:
  - name: http
    address: 127.0.0.1:8080
`

const baseClusters = `clusters:
  - name: web
    endpoints:
      - address: 127.0.0.1:9001
  - name: api
    endpoints:
      - address: 127.0.0.1:9002
`

// withRoutes builds a config whose only interesting part is routes, given as
// list items indented by two spaces.
func withRoutes(routes string) string {
	return baseListeners + baseClusters + "routes:\n" + routes
}

// withListeners builds a config with the given listeners section and one
// valid route.
func withListeners(listeners string) string {
	return "listeners:\n" + listeners + baseClusters + `routes:
  - name: r
    backends:
      - cluster: web
`
}

// withClusters builds a config with the given clusters section and a route to
// the first cluster, "c".
func withClusters(clusters string) string {
	return baseListeners + "clusters:\n" + clusters + `routes:
  - name: r
    backends:
      - cluster: c
`
}

// minimalYAML is the smallest valid config: everything else is defaulted.
const minimalYAML = `listeners:
  - name: http
    address: :8080
clusters:
  - name: web
    endpoints:
      - address: 10.0.0.1:80
routes:
  - name: web
    backends:
      - cluster: web
`

func mustParse(t *testing.T, yml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yml))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return c
}

func TestParseAppliesDefaults(t *testing.T) {
	c := mustParse(t, minimalYAML+`  - name: tls-redirect
    redirect: {scheme: https}
`)

	checks := []struct {
		name      string
		got, want any
	}{
		{"admin.address", c.Admin.Address, "127.0.0.1:9901"},
		{"server.drainTimeout", c.Server.DrainTimeout.D(), 30 * time.Second},
		{"server.readHeaderTimeout", c.Server.ReadHeaderTimeout.D(), 10 * time.Second},
		{"server.idleTimeout", c.Server.IdleTimeout.D(), 60 * time.Second},
		{"server.maxHeaderBytes", c.Server.MaxHeaderBytes, 64 << 10},
		{"server.accessLog != nil", c.Server.AccessLog != nil, true},
		{"server.requestIdHeader", c.Server.RequestIDHeader, "X-Request-Id"},
		{"listeners[0].protocol", c.Listeners[0].Protocol, ListenerHTTP},
		{"listeners[0].tls", c.Listeners[0].TLS == nil, true},
		{"routes[0].timeout", c.Routes[0].Timeout.D(), 15 * time.Second},
		{"routes[0].backends[0].weight != nil", c.Routes[0].Backends[0].Weight != nil, true},
		{"routes[1].redirect.code", c.Routes[1].Redirect.Code, 302},
		{"routes[1].timeout", c.Routes[1].Timeout.D(), 15 * time.Second},
		{"clusters[0].protocol", c.Clusters[0].Protocol, UpstreamHTTP1},
		{"clusters[0].lbPolicy", c.Clusters[0].LBPolicy, LBRoundRobin},
		{"clusters[0].connectTimeout", c.Clusters[0].ConnectTimeout.D(), 5 * time.Second},
		{"clusters[0].idleConnTimeout", c.Clusters[0].IdleConnTimeout.D(), 90 * time.Second},
		{"clusters[0].maxIdleConnsPerEndpoint", c.Clusters[0].MaxIdleConnsPerEndpoint, 512},
		{"clusters[0].endpoints[0].weight", c.Clusters[0].Endpoints[0].Weight, 1},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if c.Server.AccessLog != nil && !*c.Server.AccessLog {
		t.Errorf("server.accessLog = false, want true by default")
	}
	if w := c.Routes[0].Backends[0].Weight; w != nil && *w != 1 {
		t.Errorf("routes[0].backends[0].weight = %d, want 1", *w)
	}
}

func TestParseDefaultsTLSMinVersion(t *testing.T) {
	c := mustParse(t, withListeners(`  - name: https
    address: 127.0.0.1:8443
    protocol: https
    tls:
      certificates:
        - {certFile: /etc/tls/a.crt, keyFile: /etc/tls/a.key, serverNames: [a.example.com, "*.b.example.com"]}
`))
	if got := c.Listeners[0].TLS.MinVersion; got != "1.2" {
		t.Errorf("listeners[0].tls.minVersion = %q, want 1.2", got)
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	c := mustParse(t, `admin:
  address: 0.0.0.0:9999
server:
  drainTimeout: 1m30s
  readHeaderTimeout: 2s
  idleTimeout: 5m
  maxHeaderBytes: 2048
  accessLog: false
  requestIdHeader: X-Trace
listeners:
  - name: http
    address: 127.0.0.1:8080
    protocol: http
routes:
  - name: api
    listeners: [http]
    hosts: [api.example.com, "*.example.org"]
    match:
      path: {prefix: /api}
      methods: [GET, POST]
      headers: [{name: x-beta, exact: "true"}]
      query: [{name: debug}]
      cookies: [{name: session, regex: "[a-f0-9]+"}]
    rewrite: {prefix: /, host: internal.example.com}
    timeout: 250ms
    backends:
      - {cluster: api, weight: 90}
      - {cluster: api2, weight: 0}
      - {cluster: api2, weight: 10}
clusters:
  - name: api
    protocol: h2c
    lbPolicy: least_request
    connectTimeout: 1s
    idleConnTimeout: 30s
    maxIdleConnsPerEndpoint: 8
    endpoints:
      - {address: 10.0.0.1:80, weight: 3}
      - {address: backend.svc:80}
  - name: api2
    lbPolicy: random
    endpoints:
      - address: "[::1]:8080"
`)
	checks := []struct {
		name      string
		got, want any
	}{
		{"admin.address", c.Admin.Address, "0.0.0.0:9999"},
		{"server.drainTimeout", c.Server.DrainTimeout.D(), 90 * time.Second},
		{"server.readHeaderTimeout", c.Server.ReadHeaderTimeout.D(), 2 * time.Second},
		{"server.idleTimeout", c.Server.IdleTimeout.D(), 5 * time.Minute},
		{"server.maxHeaderBytes", c.Server.MaxHeaderBytes, 2048},
		{"server.accessLog", *c.Server.AccessLog, false},
		{"server.requestIdHeader", c.Server.RequestIDHeader, "X-Trace"},
		{"routes[0].timeout", c.Routes[0].Timeout.D(), 250 * time.Millisecond},
		{"routes[0].backends[0].weight", *c.Routes[0].Backends[0].Weight, 90},
		// An explicit backend weight of 0 is kept: it takes the backend out of rotation.
		{"routes[0].backends[1].weight", *c.Routes[0].Backends[1].Weight, 0},
		{"routes[0].backends[2].weight", *c.Routes[0].Backends[2].Weight, 10},
		{"routes[0].rewrite.host", c.Routes[0].Rewrite.Host, "internal.example.com"},
		{"clusters[0].protocol", c.Clusters[0].Protocol, UpstreamH2C},
		{"clusters[0].lbPolicy", c.Clusters[0].LBPolicy, LBLeastRequest},
		{"clusters[0].connectTimeout", c.Clusters[0].ConnectTimeout.D(), time.Second},
		{"clusters[0].idleConnTimeout", c.Clusters[0].IdleConnTimeout.D(), 30 * time.Second},
		{"clusters[0].maxIdleConnsPerEndpoint", c.Clusters[0].MaxIdleConnsPerEndpoint, 8},
		{"clusters[0].endpoints[0].weight", c.Clusters[0].Endpoints[0].Weight, 3},
		{"clusters[0].endpoints[1].weight", c.Clusters[0].Endpoints[1].Weight, 1},
		{"clusters[1].lbPolicy", c.Clusters[1].LBPolicy, LBRandom},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

// An endpoint's weight is a plain int with "defaults to 1": an explicit 0 is
// indistinguishable from an omitted one and becomes 1. Negative and too-large
// weights are rejected.
func TestEndpointWeight(t *testing.T) {
	tests := []struct {
		weight  string
		want    int
		wantErr string
	}{
		{weight: "0", want: 1},
		{weight: "1", want: 1},
		{weight: "65536", want: 65536},
		{weight: "-1", wantErr: "must be between 1 and 65536, got -1"},
		{weight: "65537", wantErr: "must be between 1 and 65536, got 65537"},
	}
	for _, tt := range tests {
		t.Run(tt.weight, func(t *testing.T) {
			yml := withClusters(`  - name: c
    endpoints:
      - {address: 10.0.0.1:80, weight: ` + tt.weight + `}
`)
			c, err := Parse([]byte(yml))
			if tt.wantErr != "" {
				assertFieldErrors(t, err, []FieldError{{"clusters[0].endpoints[0].weight", tt.wantErr}})
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Clusters[0].Endpoints[0].Weight; got != tt.want {
				t.Errorf("weight = %d, want %d", got, tt.want)
			}
		})
	}
}

// assertFieldErrors checks err is exactly the expected list of validation
// errors, in order: each Path equal, each Reason containing the wanted text.
func assertFieldErrors(t *testing.T, err error, want []FieldError) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse succeeded, want errors %v", want)
	}
	var got Errors
	if !errors.As(err, &got) {
		t.Fatalf("error is %T, not config.Errors: %v", err, err)
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Path == want[i].Path && strings.Contains(got[i].Reason, want[i].Reason)
	}
	if !ok {
		var b strings.Builder
		for _, w := range want {
			b.WriteString("\n  " + w.Path + ": ..." + w.Reason + "...")
		}
		t.Fatalf("got errors:\n%v\nwant:%s", err, b.String())
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w.Path+": ") {
			t.Errorf("err.Error() does not name path %q:\n%v", w.Path, err)
		}
	}
}

func TestParseValidationErrors(t *testing.T) {
	longRegex := strings.Repeat("a", MaxRegexLen+1)
	tests := []struct {
		name string
		yml  string
		want []FieldError
	}{
		// names
		{
			name: "duplicate route name",
			yml: withRoutes(`  - name: r
    backends: [{cluster: web}]
  - name: r
    backends: [{cluster: api}]
`),
			want: []FieldError{{"routes[1].name", `duplicate name "r"`}},
		},
		{
			name: "duplicate cluster name",
			yml: withClusters(`  - name: c
    endpoints: [{address: 10.0.0.1:80}]
  - name: c
    endpoints: [{address: 10.0.0.2:80}]
`),
			want: []FieldError{{"clusters[1].name", `duplicate name "c"`}},
		},
		{
			name: "duplicate listener name",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8080
  - name: l
    address: 127.0.0.1:8081
`),
			want: []FieldError{{"listeners[1].name", `duplicate name "l"`}},
		},
		{
			name: "missing route name",
			yml: withRoutes(`  - backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].name", "is required"}},
		},
		{
			name: "name with space",
			yml: withRoutes(`  - name: "my route"
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].name", "not a valid name"}},
		},
		// references
		{
			name: "dangling cluster reference",
			yml: withRoutes(`  - name: r
    backends:
      - cluster: web
      - cluster: nope
`),
			want: []FieldError{{"routes[0].backends[1].cluster", `no cluster named "nope"`}},
		},
		{
			name: "dangling listener reference",
			yml: withRoutes(`  - name: r
    listeners: [http, nope]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].listeners[1]", `no listener named "nope"`}},
		},
		// path matches
		{
			name: "exact path without leading slash",
			yml: withRoutes(`  - name: r
    match: {path: {exact: api}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.exact", `"api" must start with /`}},
		},
		{
			name: "prefix path without leading slash",
			yml: withRoutes(`  - name: r
    match: {path: {prefix: api/v1}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.prefix", `"api/v1" must start with /`}},
		},
		{
			name: "path with query",
			yml: withRoutes(`  - name: r
    match: {path: {exact: "/a?b=c"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.exact", "not allowed in a path"}},
		},
		{
			name: "path with space",
			yml: withRoutes(`  - name: r
    match: {path: {prefix: "/a b"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.prefix", "not allowed in a path"}},
		},
		{
			name: "two path kinds",
			yml: withRoutes(`  - name: r
    match: {path: {exact: /a, prefix: /b}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path", "set exactly one of exact, prefix, regex"}},
		},
		{
			name: "no path kind",
			yml: withRoutes(`  - name: r
    match: {path: {}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path", "set exactly one of exact, prefix, regex"}},
		},
		{
			name: "path regex does not compile",
			yml: withRoutes(`  - name: r
    match: {path: {regex: "/api/(v1"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.regex", "invalid RE2 regex"}},
		},
		{
			name: "path regex with lookahead (not RE2)",
			yml: withRoutes(`  - name: r
    match: {path: {regex: "/(?=a)"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.regex", "invalid RE2 regex"}},
		},
		{
			name: "path regex too long",
			yml: withRoutes(`  - name: r
    match: {path: {regex: "` + longRegex + `"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.regex", "longer than 1018 characters"}},
		},
		{
			name: "path regex too complex",
			yml: withRoutes(`  - name: r
    match: {path: {regex: "/(?:abcde){1000}"}}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.path.regex", "too complex"}},
		},
		{
			name: "header regex does not compile",
			yml: withRoutes(`  - name: r
    match: {headers: [{name: x-a, regex: "[z-a]"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.headers[0].regex", "invalid RE2 regex"}},
		},
		{
			name: "unbalanced regex that would compile once anchored",
			yml: withRoutes(`  - name: r
    match: {query: [{name: q, regex: "a)|(?:b"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.query[0].regex", "invalid RE2 regex"}},
		},
		// methods and value matches
		{
			name: "lower-case method",
			yml: withRoutes(`  - name: r
    match: {methods: [GET, post]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.methods[1]", `"post" is not an upper-case HTTP method`}},
		},
		{
			name: "method with space",
			yml: withRoutes(`  - name: r
    match: {methods: ["GE T"]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.methods[0]", "not an upper-case HTTP method"}},
		},
		{
			name: "invalid header match name",
			yml: withRoutes(`  - name: r
    match: {headers: [{name: "x beta", exact: "1"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.headers[0].name", `"x beta" is not a valid name`}},
		},
		{
			name: "empty query match name",
			yml: withRoutes(`  - name: r
    match: {query: [{exact: "1"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.query[0].name", `"" is not a valid name`}},
		},
		{
			name: "invalid cookie match name",
			yml: withRoutes(`  - name: r
    match: {cookies: [{name: "a;b"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.cookies[0].name", "is not a valid name"}},
		},
		{
			name: "two value match kinds",
			yml: withRoutes(`  - name: r
    match: {headers: [{name: x-a, exact: a, prefix: b}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.headers[0]", "set at most one of exact, prefix, regex"}},
		},
		{
			name: "value match with control character",
			yml: withRoutes(`  - name: r
    match: {headers: [{name: x-a, exact: "a\nb"}]}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].match.headers[0]", "control characters"}},
		},
		// header mutations
		{
			name: "invalid header name in set",
			yml: withRoutes(`  - name: r
    requestHeaders:
      set: [{name: "X Team", value: a}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].requestHeaders.set[0].name", `"X Team" is not a valid header name`}},
		},
		{
			name: "empty header name in response add",
			yml: withRoutes(`  - name: r
    responseHeaders:
      add: [{value: a}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].responseHeaders.add[0].name", `"" is not a valid header name`}},
		},
		{
			name: "header value with control character",
			yml: withRoutes(`  - name: r
    requestHeaders:
      set:
        - {name: X-Ok, value: "tab\tis fine"}
        - {name: X-Bad, value: "a\x01b"}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].requestHeaders.set[1].value", "must not contain control characters"}},
		},
		{
			name: "header value with CRLF injection",
			yml: withRoutes(`  - name: r
    responseHeaders:
      add: [{name: X-A, value: "a\r\nSet-Cookie: x=1"}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].responseHeaders.add[0].value", "must not contain control characters"}},
		},
		{
			name: "header value too long",
			yml: withRoutes(`  - name: r
    requestHeaders:
      add: [{name: X-A, value: "` + strings.Repeat("v", MaxHeaderValueLen+1) + `"}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].requestHeaders.add[0].value", "longer than 8192 bytes"}},
		},
		{
			name: "set Host",
			yml: withRoutes(`  - name: r
    requestHeaders:
      set: [{name: Host, value: example.com}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].requestHeaders.set[0].name", `"Host" is managed by the proxy`}},
		},
		{
			name: "add Content-Length",
			yml: withRoutes(`  - name: r
    responseHeaders:
      add: [{name: Content-Length, value: "0"}]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].responseHeaders.add[0].name", `"Content-Length" is managed by the proxy`}},
		},
		{
			name: "remove Transfer-Encoding in any case",
			yml: withRoutes(`  - name: r
    requestHeaders:
      remove: [X-Debug, TRANSFER-encoding, connection]
    backends: [{cluster: web}]
`),
			want: []FieldError{
				{"routes[0].requestHeaders.remove[1]", `"TRANSFER-encoding" is managed by the proxy`},
				{"routes[0].requestHeaders.remove[2]", `"connection" is managed by the proxy`},
			},
		},
		// rewrite and redirect
		{
			name: "rewrite.prefix with exact match",
			yml: withRoutes(`  - name: r
    match: {path: {exact: /a}}
    rewrite: {prefix: /b}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].rewrite.prefix", "needs a match.path.prefix"}},
		},
		{
			name: "rewrite.prefix without any match",
			yml: withRoutes(`  - name: r
    rewrite: {prefix: /b}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].rewrite.prefix", "needs a match.path.prefix"}},
		},
		{
			name: "rewrite.prefix without leading slash",
			yml: withRoutes(`  - name: r
    match: {path: {prefix: /a}}
    rewrite: {prefix: b}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].rewrite.prefix", `"b" must start with /`}},
		},
		{
			name: "rewrite.host invalid",
			yml: withRoutes(`  - name: r
    rewrite: {host: "Bad_Host"}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].rewrite.host", `"Bad_Host" is not a valid host`}},
		},
		{
			name: "redirect with backends",
			yml: withRoutes(`  - name: r
    redirect: {scheme: https}
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0]", "set either redirect or backends, not both"}},
		},
		{
			name: "neither redirect nor backends",
			yml: withRoutes(`  - name: r
    match: {path: {prefix: /}}
`),
			want: []FieldError{{"routes[0].backends", "a route needs backends or a redirect"}},
		},
		{
			name: "empty backends list",
			yml: withRoutes(`  - name: r
    backends: []
`),
			want: []FieldError{{"routes[0].backends", "a route needs backends or a redirect"}},
		},
		{
			name: "redirect code 200",
			yml: withRoutes(`  - name: r
    redirect: {host: example.com, code: 200}
`),
			want: []FieldError{{"routes[0].redirect.code", "must be one of 301, 302, 303, 307, 308; got 200"}},
		},
		{
			name: "redirect scheme ftp",
			yml: withRoutes(`  - name: r
    redirect: {scheme: ftp}
`),
			want: []FieldError{{"routes[0].redirect.scheme", `must be http or https; got "ftp"`}},
		},
		{
			name: "redirect host upper-case",
			yml: withRoutes(`  - name: r
    redirect: {host: Example.com}
`),
			want: []FieldError{{"routes[0].redirect.host", "not a valid hostname"}},
		},
		{
			name: "redirect port out of range",
			yml: withRoutes(`  - name: r
    redirect: {port: 70000}
`),
			want: []FieldError{{"routes[0].redirect.port", "got 70000"}},
		},
		{
			name: "redirect path and prefix",
			yml: withRoutes(`  - name: r
    match: {path: {prefix: /old}}
    redirect: {path: /new, prefix: /new}
`),
			want: []FieldError{{"routes[0].redirect", "set either path or prefix, not both"}},
		},
		{
			name: "redirect prefix without prefix match",
			yml: withRoutes(`  - name: r
    redirect: {prefix: /new}
`),
			want: []FieldError{{"routes[0].redirect.prefix", "needs a match.path.prefix"}},
		},
		{
			name: "redirect path without leading slash",
			yml: withRoutes(`  - name: r
    redirect: {path: new}
`),
			want: []FieldError{{"routes[0].redirect.path", `"new" must start with /`}},
		},
		// hosts
		{
			name: "upper-case host",
			yml: withRoutes(`  - name: r
    hosts: [ok.example.com, Foo.com]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[1]", `"Foo.com" is not a valid hostname`}},
		},
		{
			name: "bare wildcard",
			yml: withRoutes(`  - name: r
    hosts: ["*."]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[0]", `wildcard "*."`}},
		},
		{
			name: "empty label",
			yml: withRoutes(`  - name: r
    hosts: [a..b]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[0]", `"a..b" is not a valid hostname`}},
		},
		{
			name: "wildcard in the middle",
			yml: withRoutes(`  - name: r
    hosts: ["a.*.com"]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[0]", "not a valid hostname"}},
		},
		{
			name: "label starting with dash",
			yml: withRoutes(`  - name: r
    hosts: [-a.com]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[0]", "not a valid hostname"}},
		},
		{
			name: "host with port",
			yml: withRoutes(`  - name: r
    hosts: ["a.com:80"]
    backends: [{cluster: web}]
`),
			want: []FieldError{{"routes[0].hosts[0]", "not a valid hostname"}},
		},
		// backends
		{
			name: "backend weights all zero",
			yml: withRoutes(`  - name: r
    backends:
      - {cluster: web, weight: 0}
      - {cluster: api, weight: 0}
`),
			want: []FieldError{{"routes[0].backends", "weights add up to 0"}},
		},
		{
			name: "negative backend weight",
			yml: withRoutes(`  - name: r
    backends:
      - {cluster: web, weight: -1}
      - {cluster: api}
`),
			want: []FieldError{{"routes[0].backends[0].weight", "must be between 0 and 65536, got -1"}},
		},
		{
			name: "backend weight too large",
			yml: withRoutes(`  - name: r
    backends:
      - {cluster: web, weight: 65537}
`),
			want: []FieldError{
				{"routes[0].backends[0].weight", "got 65537"},
				{"routes[0].backends", "weights add up to 0"},
			},
		},
		// listeners
		{
			name: "no listeners",
			yml: baseClusters + `routes:
  - name: r
    backends: [{cluster: web}]
`,
			want: []FieldError{{"listeners", "at least one listener is required"}},
		},
		{
			name: "https listener without tls",
			yml: withListeners(`  - name: https
    address: 127.0.0.1:8443
    protocol: https
`),
			want: []FieldError{{"listeners[0].tls.certificates", "protocol https needs at least one certificate"}},
		},
		{
			name: "https listener with empty certificates",
			yml: withListeners(`  - name: https
    address: 127.0.0.1:8443
    protocol: https
    tls: {certificates: []}
`),
			want: []FieldError{{"listeners[0].tls.certificates", "protocol https needs at least one certificate"}},
		},
		{
			name: "tls on http listener",
			yml: withListeners(`  - name: http
    address: 127.0.0.1:8080
    tls:
      certificates: [{certFile: a.crt, keyFile: a.key}]
`),
			want: []FieldError{{"listeners[0].tls", "only allowed with protocol https"}},
		},
		{
			name: "tls certificate without files and bad server name",
			yml: withListeners(`  - name: https
    address: 127.0.0.1:8443
    protocol: https
    tls:
      minVersion: "1.1"
      certificates: [{serverNames: [ok.example.com, "Bad.example.com"]}]
`),
			want: []FieldError{
				{"listeners[0].tls.minVersion", `must be "1.2" or "1.3"; got "1.1"`},
				{"listeners[0].tls.certificates[0].certFile", "is required"},
				{"listeners[0].tls.certificates[0].keyFile", "is required"},
				{"listeners[0].tls.certificates[0].serverNames[1]", "not a valid hostname"},
			},
		},
		{
			name: "unknown listener protocol",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8080
    protocol: udp
`),
			want: []FieldError{{"listeners[0].protocol", `must be one of http, https, auto, tcp; got "udp"`}},
		},
		{
			name: "client auth",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8443
    protocol: https
    tls:
      certificates: [{certFile: a.crt, keyFile: a.key}]
      clientAuth: {mode: sometimes, requireForHosts: ["bad host"]}
`),
			want: []FieldError{
				{"listeners[0].tls.clientAuth.caFile", "is required"},
				{"listeners[0].tls.clientAuth.mode", `must be optional or require; got "sometimes"`},
				{"listeners[0].tls.clientAuth.requireForHosts[0]", "bad host"},
			},
		},
		{
			name: "tls passthrough",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8443
    protocol: auto
    tls:
      passthrough:
        - {serverNames: [db.example.com, "db.example.com", "bad name"], cluster: nope, idleTimeout: 1ms}
        - {serverNames: [], cluster: ""}
`),
			want: []FieldError{
				{"listeners[0].tls.passthrough[0].serverNames[1]", `"db.example.com" is already passed through`},
				{"listeners[0].tls.passthrough[0].serverNames[2]", "bad name"},
				{"listeners[0].tls.passthrough[0].idleTimeout", "must be between 1s and 168h"},
				{"listeners[0].tls.passthrough[1].serverNames", "at least one server name is required"},
				{"listeners[0].tls.passthrough[1].cluster", "is required"},
				{"listeners[0].tls.passthrough[0].cluster", `no cluster named "nope"`},
			},
		},
		{
			name: "tcp listener",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8080
    protocol: tcp
  - name: m
    address: 127.0.0.1:8081
    protocol: tcp
    tcp: {cluster: nope, idleTimeout: 10ms, maxConnections: -1}
  - name: n
    address: 127.0.0.1:8082
    tcp: {cluster: web}
`),
			want: []FieldError{
				{"listeners[0].tcp", "protocol tcp needs tcp.cluster"},
				{"listeners[1].tcp.idleTimeout", "must be between 1s and 168h"},
				{"listeners[1].tcp.maxConnections", "must be between 0 (no limit) and 1000000, got -1"},
				{"listeners[2].tcp", "only allowed with protocol tcp"},
				{"listeners[1].tcp.cluster", `no cluster named "nope"`},
			},
		},
		{
			name: "listener address without port",
			yml: withListeners(`  - name: l
    address: 127.0.0.1
`),
			want: []FieldError{{"listeners[0].address", `"127.0.0.1" is not host:port`}},
		},
		{
			name: "listener port 0",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:0
`),
			want: []FieldError{{"listeners[0].address", "port must be 1-65535"}},
		},
		{
			name: "listener port too large",
			yml: withListeners(`  - name: l
    address: ":65536"
`),
			want: []FieldError{{"listeners[0].address", "port must be 1-65535"}},
		},
		{
			name: "listener bad host",
			yml: withListeners(`  - name: l
    address: "bad_host:80"
`),
			want: []FieldError{{"listeners[0].address", "not a valid hostname"}},
		},
		{
			name: "empty listener address",
			yml: withListeners(`  - name: l
`),
			want: []FieldError{{"listeners[0].address", "is not host:port"}},
		},
		{
			name: "duplicate listener address",
			yml: withListeners(`  - name: a
    address: 127.0.0.1:8080
  - name: b
    address: 127.0.0.1:8080
`),
			want: []FieldError{{"listeners[1].address", `127.0.0.1:8080 is already used by listener "a"`}},
		},
		// clusters
		{
			name: "unknown cluster protocol and lb policy",
			yml: withClusters(`  - name: c
    protocol: http2
    lbPolicy: ring_hash
    endpoints: [{address: 10.0.0.1:80}]
`),
			want: []FieldError{
				{"clusters[0].protocol", `must be one of http1, h2c; got "http2"`},
				{"clusters[0].lbPolicy", `must be one of round_robin, least_request, random, maglev; got "ring_hash"`},
			},
		},
		{
			name: "negative maxIdleConnsPerEndpoint",
			yml: withClusters(`  - name: c
    maxIdleConnsPerEndpoint: -1
    endpoints: [{address: 10.0.0.1:80}]
`),
			want: []FieldError{{"clusters[0].maxIdleConnsPerEndpoint", "got -1"}},
		},
		{
			name: "duplicate endpoint",
			yml: withClusters(`  - name: c
    endpoints:
      - address: 10.0.0.1:80
      - address: 10.0.0.1:80
`),
			want: []FieldError{{"clusters[0].endpoints[1].address", "duplicate endpoint 10.0.0.1:80"}},
		},
		{
			name: "endpoint without port",
			yml: withClusters(`  - name: c
    endpoints:
      - address: backend.svc
`),
			want: []FieldError{{"clusters[0].endpoints[0].address", "is not host:port"}},
		},
		// admin and server
		{
			name: "bad admin address",
			yml:  "admin: {address: localhost}\n" + minimalYAML,
			want: []FieldError{{"admin.address", `"localhost" is not host:port`}},
		},
		{
			name: "maxHeaderBytes too small",
			yml:  "server: {maxHeaderBytes: 100}\n" + minimalYAML,
			want: []FieldError{{"server.maxHeaderBytes", "must be between 1024 and 1048576, got 100"}},
		},
		{
			name: "maxHeaderBytes too large",
			yml:  "server: {maxHeaderBytes: 2000000}\n" + minimalYAML,
			want: []FieldError{{"server.maxHeaderBytes", "got 2000000"}},
		},
		{
			name: "websocket limits out of range",
			yml: withRoutes(`  - name: a
    websocket: {idleTimeout: 500ms, maxLifetime: 800h}
    backends: [{cluster: web}]
`),
			want: []FieldError{
				{"routes[0].websocket.idleTimeout", "must be between 1s and 168h, got 500ms"},
				{"routes[0].websocket.maxLifetime", "must be 0 (no limit) or between 1s and 720h, got 800h0m0s"},
			},
		},
		{
			name: "cors policy",
			yml: withRoutes(`  - name: a
    cors: {allowOrigins: ["*", "app.example.com", "https://a.example.com/path"], allowCredentials: true, allowHeaders: ["x bad"], maxAge: 48h}
    backends: [{cluster: web}]
  - name: b
    cors: {allowOrigins: []}
    backends: [{cluster: web}]
`),
			want: []FieldError{
				{"routes[0].cors.allowOrigins[0]", "cannot be combined with allowCredentials"},
				{"routes[0].cors.allowOrigins[1]", `"app.example.com" is not an origin`},
				{"routes[0].cors.allowOrigins[2]", `"https://a.example.com/path" is not an origin`},
				{"routes[0].cors.allowHeaders[0]", `"x bad" is not a header name`},
				{"routes[0].cors.maxAge", "must be between 0s and 24h"},
				{"routes[1].cors.allowOrigins", "at least one origin"},
			},
		},
		// gRPC matches
		{
			name: "grpc match with path and bad names",
			yml: withRoutes(`  - name: a
    match: {path: {prefix: /x}, grpc: {service: "shop..Cart", method: "Add-Item"}}
    backends: [{cluster: web}]
  - name: b
    match: {grpc: {service: ""}}
    backends: [{cluster: web}]
`),
			want: []FieldError{
				{"routes[0].match.grpc", "sets the path itself; remove match.path"},
				{"routes[0].match.grpc.service", `"shop..Cart" is not a fully qualified gRPC service name`},
				{"routes[0].match.grpc.method", `"Add-Item" is not a gRPC method name`},
				{"routes[1].match.grpc.service", `"" is not a fully qualified gRPC service name`},
			},
		},
		// steering
		{
			name: "steer without steering",
			yml: withListeners(`  - name: l
    address: 127.0.0.1:8080
    steer: ["10.96.0.1:80"]
`),
			want: []FieldError{{"listeners[0].steer", "needs steering.enabled"}},
		},
		{
			name: "steered addresses",
			yml: "steering: {enabled: true, socketAddress: localhost:0, handoverSocket: run/x.sock, handoverTimeout: 1ms}\n" + withListeners(`  - name: a
    address: localhost:8080
    steer: ["10.96.0.1:80", "10.96.0.1", "[::1]:80", "10.96.0.2:0"]
  - name: b
    address: :9000
    steer: ["10.96.0.1:80", "0.0.0.0:9000"]
`),
			want: []FieldError{
				{"steering.socketAddress", `"localhost:0" is not IPv4:port`},
				{"steering.handoverSocket", "must be an absolute path"},
				{"steering.handoverTimeout", "must be between 1s and 5m"},
				{"listeners[0].address", `"localhost:8080" is not IPv4:port`},
				{"listeners[0].steer[1]", `"10.96.0.1" is not IPv4:port`},
				{"listeners[0].steer[2]", `"[::1]:80" is not IPv4:port`},
				{"listeners[0].steer[3]", `"10.96.0.2:0" is not IPv4:port`},
				{"listeners[1].steer[0]", `10.96.0.1:80 is already steered to listener "a"`},
				{"listeners[1].steer[1]", `0.0.0.0:9000 is already steered to listener "b"`},
			},
		},
		{
			name: "destination both L4 and steered",
			yml: "steering: {enabled: true}\nl4:\n  services:\n    - {name: db, address: 10.96.0.1:80, backends: [{address: 10.1.0.1:80}]}\n" + withListeners(`  - name: a
    address: 127.0.0.1:8080
    steer: ["10.96.0.1:80"]
`),
			want: []FieldError{{"listeners[0].steer[0]", `10.96.0.1:80 is also L4 service "db"`}},
		},
		{
			name: "bad request id header",
			yml:  "server: {requestIdHeader: \"X Request\"}\n" + minimalYAML,
			want: []FieldError{{"server.requestIdHeader", `"X Request" is not a valid header name`}},
		},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate test name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yml))
			if c != nil {
				t.Errorf("Parse returned a config along with error %v", err)
			}
			assertFieldErrors(t, err, tt.want)
		})
	}
}

// Every valid variant of a field the error table rejects must be accepted, so
// the table cannot pass by rejecting everything.
func TestParseAcceptsValidVariants(t *testing.T) {
	tests := []struct {
		name string
		yml  string
	}{
		{"wildcard and exact hosts", withRoutes(`  - name: r
    hosts: ["*.example.com", example.com, a-b.c0.io]
    backends: [{cluster: web}]
`)},
		{"all redirect codes", withRoutes(`  - {name: r301, redirect: {code: 301}}
  - {name: r302, redirect: {code: 302}}
  - {name: r303, redirect: {code: 303}}
  - {name: r307, redirect: {code: 307}}
  - {name: r308, redirect: {code: 308, scheme: https, host: example.com, port: 8443, path: /x}}
`)},
		{"redirect prefix with prefix match", withRoutes(`  - name: r
    match: {path: {prefix: /old}}
    redirect: {prefix: /new}
`)},
		{"regex path and value matches", withRoutes(`  - name: r
    match:
      path: {regex: "/api/v[0-9]+/.*"}
      methods: [GET, PURGE, M-SEARCH]
      headers: [{name: X-Beta}, {name: x-a, prefix: v}, {name: x-b, regex: "a|b"}]
      query: [{name: "page size", exact: "10"}]
      cookies: [{name: beta, exact: "1"}]
    backends: [{cluster: web}]
`)},
		{"regex at the length limit", withRoutes(`  - name: r
    match: {path: {regex: "` + strings.Repeat("a", MaxRegexLen-len("^(?:)$")) + `"}}
    backends: [{cluster: web}]
`)},
		{"non-reserved header mutations", withRoutes(`  - name: r
    requestHeaders:
      set: [{name: X-Team, value: payments}]
      add: [{name: X-Empty, value: ""}]
      remove: [X-Debug, Cookie]
    responseHeaders:
      set: [{name: Cache-Control, value: "no-store"}]
    backends: [{cluster: web}]
`)},
		{"rewrite host with port", withRoutes(`  - name: r
    rewrite: {host: "internal.svc:8080"}
    backends: [{cluster: web}]
`)},
		{"one backend weight zero", withRoutes(`  - name: r
    backends:
      - {cluster: web, weight: 0}
      - {cluster: api, weight: 1}
`)},
		{"ipv6 and wildcard addresses", withListeners(`  - name: a
    address: "[::1]:8080"
  - name: b
    address: ":8081"
  - name: c
    address: "localhost:8082"
`)},
		{"https listener with tls 1.3", withListeners(`  - name: https
    address: 127.0.0.1:8443
    protocol: https
    tls:
      minVersion: "1.3"
      certificates: [{certFile: a.crt, keyFile: a.key}]
`)},
		{"no routes and no clusters", baseListeners},
		{"grpc service and method matches", withRoutes(`  - name: svc
    match: {grpc: {service: grpc.health.v1.Health}}
    rewrite: {prefix: /grpc.health.v1.Health}
    backends: [{cluster: web}]
  - name: method
    match: {grpc: {service: Cart, method: Add_Item2}}
    backends: [{cluster: web}]
`)},
		{"steering with L4 on another port and udp on the same", "steering: {enabled: true}\nl4:\n  services:\n    - {name: db, address: 10.96.0.1:81, backends: [{address: 10.1.0.1:80}]}\n    - {name: dns, address: 10.96.0.1:80, protocol: udp, backends: [{address: 10.1.0.1:53}]}\n" + withListeners(`  - name: a
    address: :8080
    steer: ["10.96.0.1:80", "0.0.0.0:30080"]
  - name: b
    address: 10.0.0.1:8080
`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.yml)); err != nil {
				t.Fatalf("Parse: unexpected error:\n%v", err)
			}
		})
	}
}

// Decoding errors (unknown fields, wrong types, duplicate keys) stop before
// validation; they are reported as config.Errors naming the field path, with
// the line in the reason. Errors YAML cannot place (syntax, document shape)
// stay plain errors.
func TestParseDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		path string // the field path for errors YAML can place; "" for plain errors
		want []string
	}{
		{
			name: "unknown top-level field",
			yml:  minimalYAML + "bogus: 1\n",
			path: "bogus",
			want: []string{"line 12", "field bogus not found", "Config"},
		},
		{
			name: "unknown field in admin",
			yml:  "admin:\n  adress: 127.0.0.1:9901\n" + minimalYAML,
			path: "admin.adress",
			want: []string{"line 2", "field adress not found", "Admin"},
		},
		{
			name: "unknown field in route",
			yml: withRoutes(`  - name: r
    backend: [{cluster: web}]
`),
			path: "routes[0].backend",
			want: []string{"line 13", "field backend not found", "Route"},
		},
		{
			name: "misspelt path kind",
			yml: withRoutes(`  - name: r
    match: {path: {prefx: /a}}
    backends: [{cluster: web}]
`),
			path: "routes[0].match.path.prefx",
			want: []string{"line 13", "field prefx not found", "PathMatch"},
		},
		{
			name: "route timeout as bare number",
			yml: withRoutes(`  - name: r
    timeout: 30
    backends: [{cluster: web}]
`),
			path: "routes[0].timeout",
			want: []string{"line 13", `want a duration string such as "30s", got "30"`},
		},
		{
			name: "server timeout as quoted number",
			yml:  "server:\n  drainTimeout: \"30\"\n" + minimalYAML,
			path: "server.drainTimeout",
			want: []string{"line 2", `invalid duration "30"`},
		},
		{
			name: "negative cluster timeout",
			yml: withClusters(`  - name: c
    connectTimeout: -1s
    endpoints: [{address: 10.0.0.1:80}]
`),
			path: "clusters[0].connectTimeout",
			want: []string{"line 6", `invalid duration "-1s": must not be negative`},
		},
		{
			name: "maxHeaderBytes as string",
			yml:  "server:\n  maxHeaderBytes: \"x\"\n" + minimalYAML,
			path: "server.maxHeaderBytes",
			want: []string{"line 2", "cannot unmarshal", "`x`", "int"},
		},
		{
			name: "listeners as a string",
			yml:  "listeners: http\n",
			path: "listeners",
			want: []string{"line 1", "cannot unmarshal"},
		},
		{
			name: "backend weight as string",
			yml: withRoutes(`  - name: r
    backends: [{cluster: web, weight: heavy}]
`),
			path: "routes[0].backends[0].weight",
			want: []string{"line 13", "cannot unmarshal", "`heavy`"},
		},
		{
			name: "duplicate mapping key",
			yml: withRoutes(`  - name: r
    name: r2
    backends: [{cluster: web}]
`),
			path: "routes[0].name",
			want: []string{"line 13", `mapping key "name" already defined at line 12`},
		},
		{
			name: "duplicate top-level key",
			yml:  minimalYAML + "listeners: []\n",
			path: "listeners",
			want: []string{`mapping key "listeners" already defined at line 1`},
		},
		{
			name: "multiple YAML documents",
			yml:  minimalYAML + "---\n" + minimalYAML,
			want: []string{"exactly one YAML document"},
		},
		{
			name: "second document is junk",
			yml:  minimalYAML + "---\n: : :\n",
			want: []string{"exactly one YAML document"},
		},
		{
			name: "empty file",
			yml:  "",
			want: []string{"config is empty"},
		},
		{
			name: "only comments and blank lines",
			yml:  "# nothing here\n\n   \n",
			want: []string{"config is empty"},
		},
		{
			name: "syntax error",
			yml:  "listeners: [a, b\n",
			want: []string{"parse: yaml:", "line"},
		},
		{
			name: "top level is a list",
			yml:  "- a\n- b\n",
			want: []string{"parse:", "cannot unmarshal"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yml))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a config along with error %v", err)
			}
			var ve Errors
			switch isFieldErr := errors.As(err, &ve); {
			case tt.path == "" && isFieldErr:
				t.Errorf("want a plain error, got config.Errors %v", ve)
			case tt.path != "" && !isFieldErr:
				t.Errorf("want config.Errors at %s, got %v", tt.path, err)
			case tt.path != "" && (len(ve) != 1 || ve[0].Path != tt.path):
				t.Errorf("want one error at %s, got %v", tt.path, ve)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// One file with several independent problems reports every one of them.
func TestParseReportsEveryError(t *testing.T) {
	yml := `admin:
  address: nowhere
server:
  maxHeaderBytes: 10
listeners:
  - name: http
    address: 127.0.0.1:8080
  - name: http
    address: 127.0.0.1:8080
    tls: {certificates: [{certFile: a, keyFile: b}]}
routes:
  - name: r
    hosts: [Foo.com]
    match:
      path: {exact: nope}
      methods: [get]
    requestHeaders:
      set: [{name: Host, value: x}]
    backends:
      - cluster: nope
  - name: r
    redirect: {code: 200}
    backends: [{cluster: web}]
clusters:
  - name: web
    lbPolicy: fastest
    endpoints:
      - address: 10.0.0.1
`
	want := []FieldError{
		{"admin.address", "not host:port"},
		{"server.maxHeaderBytes", "got 10"},
		{"listeners[1].name", "duplicate name"},
		{"listeners[1].address", "already used"},
		{"listeners[1].tls", "only allowed with protocol https"},
		{"clusters[0].lbPolicy", "fastest"},
		{"clusters[0].endpoints[0].address", "not host:port"},
		{"routes[0].hosts[0]", "Foo.com"},
		{"routes[0].match.path.exact", "must start with /"},
		{"routes[0].match.methods[0]", "upper-case"},
		{"routes[0].requestHeaders.set[0].name", "managed by the proxy"},
		{"routes[0].backends[0].cluster", `no cluster named "nope"`},
		{"routes[1].name", "duplicate name"},
		{"routes[1]", "not both"},
		{"routes[1].redirect.code", "got 200"},
	}
	_, err := Parse([]byte(yml))
	assertFieldErrors(t, err, want)
	if lines := strings.Count(err.Error(), "\n") + 1; lines != len(want) {
		t.Errorf("Error() has %d lines, want one per problem (%d)", lines, len(want))
	}
}

func TestLoad(t *testing.T) {
	t.Run("example config", func(t *testing.T) {
		c, err := Load(filepath.Join("..", "..", "examples", "standalone.yaml"))
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if len(c.Routes) == 0 || len(c.Clusters) == 0 || len(c.Listeners) == 0 {
			t.Errorf("example loaded with %d listeners, %d routes, %d clusters", len(c.Listeners), len(c.Routes), len(c.Clusters))
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		if err == nil || !strings.Contains(err.Error(), "read config") || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Load = %v, want a read error wrapping os.ErrNotExist", err)
		}
	})
	t.Run("invalid file keeps field errors", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		yml := withRoutes(`  - name: r
    backends: [{cluster: nope}]
`)
		if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+": ") {
			t.Fatalf("Load = %v, want error prefixed with the file name", err)
		}
		assertFieldErrors(t, err, []FieldError{{"routes[0].backends[0].cluster", `no cluster named "nope"`}})
	})
	t.Run("empty file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "empty.yaml")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || err.Error() != path+": config is empty" {
			t.Fatalf("Load = %v, want %q", err, path+": config is empty")
		}
	})
}

func TestCompileRegex(t *testing.T) {
	tests := []struct {
		re      string
		wantErr string
		match   string
	}{
		{re: "/api/v[0-9]+", match: "/api/v12"},
		{re: "(?i)beta", match: "BeTa"},
		{re: strings.Repeat("a", MaxRegexLen), match: strings.Repeat("a", MaxRegexLen)},
		{re: strings.Repeat("a", MaxRegexLen+1), wantErr: "longer than 1024 characters"},
		{re: "(", wantErr: "invalid RE2 regex"},
		{re: `\1`, wantErr: "invalid RE2 regex"},
		{re: "a{1001}", wantErr: "invalid RE2 regex"},
		{re: "(?:abcde){1000}", wantErr: "too complex"},
	}
	for _, tt := range tests {
		name := tt.re
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			re, err := CompileRegex(tt.re)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CompileRegex = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileRegex: %v", err)
			}
			if !re.MatchString(tt.match) {
				t.Errorf("%q does not match %q", tt.re, tt.match)
			}
		})
	}
}

// The router compiles match regexes anchored, as ^(?:re)$, through
// CompileRegex. Whatever validation accepts must still compile in that form,
// or `validate` says ok while `run` and reloads fail.
func TestValidatedRegexCompilesAnchored(t *testing.T) {
	tests := []string{
		strings.Repeat("a", MaxRegexLen-len("^(?:)$")),   // longest accepted
		strings.Repeat("a", MaxRegexLen-len("^(?:)$")+1), // one more: must be rejected
		strings.Repeat("a", MaxRegexLen),                 // at CompileRegex's own limit
		"a{1000}b{1000}c{1000}d{1000}x{92}",              // 4094 instructions, 4096 anchored
		"a{1000}b{1000}c{1000}d{1000}x{93}",              // 4095 instructions, 4097 anchored
		"a{1000}b{1000}c{1000}d{1000}x{94}",              // 4096 instructions, 4098 anchored
		"(?:abcde){1000}",                                // too complex either way
	}
	for i, re := range tests {
		yml := withRoutes(`  - name: r
    match:
      path: {regex: "` + re + `"}
      headers: [{name: x-a, regex: "` + re + `"}]
    backends: [{cluster: web}]
`)
		_, err := Parse([]byte(yml))
		_, anchoredErr := CompileRegex("^(?:" + re + ")$")
		if err == nil && anchoredErr != nil {
			t.Errorf("case %d: config accepted, but the router's anchored form fails: %v", i, anchoredErr)
		}
		if err != nil && anchoredErr == nil {
			var ve Errors
			if !errors.As(err, &ve) {
				t.Fatalf("case %d: %v", i, err)
			}
			t.Errorf("case %d: config rejected although the anchored form compiles: %v", i, err)
		}
		if err != nil {
			assertFieldErrors(t, err, []FieldError{
				{"routes[0].match.path.regex", ""},
				{"routes[0].match.headers[0].regex", ""},
			})
		}
	}
}
