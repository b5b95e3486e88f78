package router

import (
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// r builds an entry whose Value names the route.
func r(name string, hosts []string, m config.Match) Entry[string] {
	return Entry[string]{Hosts: hosts, Match: m, Value: name}
}

func hosts(h ...string) []string { return h }

func prefix(p string) *config.PathMatch { return &config.PathMatch{Prefix: p} }
func exact(p string) *config.PathMatch  { return &config.PathMatch{Exact: p} }
func regex(p string) *config.PathMatch  { return &config.PathMatch{Regex: p} }

func mustTable(t testing.TB, es ...Entry[string]) *Table[string] {
	t.Helper()
	tb, err := New(es)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

// req builds a request; hdr is name, value pairs.
func req(method, host, target string, hdr ...string) *message.Request {
	rq := &message.Request{Method: []byte(method), Target: []byte(target), Host: []byte(host), ContentLength: -1, ProtoMajor: 1}
	if host == "" {
		rq.Host = nil
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		rq.Headers = append(rq.Headers, message.Header{Name: []byte(hdr[i]), Value: []byte(hdr[i+1])})
	}
	return rq
}

type lookupCase struct {
	req  *message.Request
	want string // "" means no match
}

func checkLookups(t *testing.T, tb *Table[string], cases []lookupCase) {
	t.Helper()
	for _, c := range cases {
		got, ok := tb.Lookup(c.req)
		if c.want == "" {
			if ok {
				t.Errorf("%s %s%s %q: matched %q, want no match", c.req.Method, c.req.Host, c.req.Target, c.req.Headers, got)
			}
			continue
		}
		if !ok || got != c.want {
			t.Errorf("%s %s%s %q: got %q (ok=%v), want %q", c.req.Method, c.req.Host, c.req.Target, c.req.Headers, got, ok, c.want)
		}
	}
}

func TestHostPrecedence(t *testing.T) {
	// Declared least specific first, so order cannot explain the results.
	tb := mustTable(t,
		r("any", nil, config.Match{}),
		r("wild", hosts("*.example.com"), config.Match{}),
		r("exact", hosts("a.example.com"), config.Match{}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "a.example.com", "/"), "exact"},
		{req("GET", "b.example.com", "/"), "wild"},
		{req("GET", "x.y.example.com", "/deep"), "wild"},
		{req("GET", "example.com", "/"), "any"}, // a wildcard does not match its apex
		{req("GET", "other.org", "/"), "any"},
		{req("GET", "", "/"), "any"},
		{req("GET", "notexample.com", "/"), "any"}, // suffix must start at a label
		{req("GET", "aexample.com", "/"), "any"},
	})
}

func TestHostNormalisation(t *testing.T) {
	tb := mustTable(t,
		r("exact", hosts("a.example.com"), config.Match{}),
		r("upper-config", hosts("MiXeD.Example.COM"), config.Match{}),
		r("wild", hosts("*.Example.Org"), config.Match{}),
		r("ip", hosts("127.0.0.1"), config.Match{}),
		r("v6", hosts("[::1]"), config.Match{}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "A.EXAMPLE.COM", "/"), "exact"},
		{req("GET", "a.example.com:8443", "/"), "exact"},
		{req("GET", "a.example.com.", "/"), "exact"},
		{req("GET", "A.Example.Com.:80", "/"), "exact"},
		{req("GET", "mixed.example.com", "/"), "upper-config"},
		{req("GET", "WWW.EXAMPLE.ORG:443", "/"), "wild"},
		{req("GET", "www.example.org.", "/"), "wild"},
		{req("GET", "example.org", "/"), ""},
		{req("GET", "127.0.0.1:8080", "/"), "ip"},
		{req("GET", "[::1]:8080", "/"), "v6"},
		{req("GET", "[::1]", "/"), "v6"},
		{req("GET", "b.example.com", "/"), ""},
	})
}

func TestWildcardSpecificity(t *testing.T) {
	for _, order := range []string{"broad-first", "narrow-first"} {
		t.Run(order, func(t *testing.T) {
			broad := r("broad", hosts("*.example.com"), config.Match{})
			narrow := r("narrow", hosts("*.b.example.com"), config.Match{})
			es := []Entry[string]{broad, narrow}
			if order == "narrow-first" {
				es = []Entry[string]{narrow, broad}
			}
			tb := mustTable(t, es...)
			checkLookups(t, tb, []lookupCase{
				{req("GET", "x.b.example.com", "/"), "narrow"},
				{req("GET", "y.x.b.example.com", "/"), "narrow"},
				{req("GET", "b.example.com", "/"), "broad"}, // apex of the narrow one
				{req("GET", "x.c.example.com", "/"), "broad"},
				{req("GET", "example.com", "/"), ""},
			})
		})
	}
}

// TestHostFallThrough documents that host precedence ranks buckets: when no
// route of the most specific host matches the request, less specific hosts
// are tried.
func TestHostFallThrough(t *testing.T) {
	tb := mustTable(t,
		r("exact-api", hosts("a.example.com"), config.Match{Path: prefix("/api")}),
		r("wild-narrow-admin", hosts("*.example.com"), config.Match{Path: prefix("/admin")}),
		r("any-root", nil, config.Match{}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "a.example.com", "/api/x"), "exact-api"},
		{req("GET", "a.example.com", "/admin"), "wild-narrow-admin"},
		{req("GET", "a.example.com", "/other"), "any-root"},
	})
}

func TestPathLongestWins(t *testing.T) {
	tb := mustTable(t,
		r("root", nil, config.Match{Path: prefix("/")}),
		r("api", nil, config.Match{Path: prefix("/api")}),
		r("v1", nil, config.Match{Path: prefix("/api/v1")}),
		r("users", nil, config.Match{Path: prefix("/api/v1/users")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api/v1/users/42?x=1"), "users"},
		{req("GET", "h", "/api/v1/users"), "users"},
		{req("GET", "h", "/api/v1/usersx"), "v1"},
		{req("GET", "h", "/api/v1/"), "v1"},
		{req("GET", "h", "/api/v2/users"), "api"},
		{req("GET", "h", "/api"), "api"},
		{req("GET", "h", "/other/api/v1"), "root"},
		{req("GET", "h", "/"), "root"},
		{req("GET", "h", "/?q=/api/v1"), "root"},
	})
}

func TestExactBeatsPrefixOfSameLength(t *testing.T) {
	tb := mustTable(t,
		// The prefix is declared first and has more matchers: path kind still ranks first.
		r("prefix", nil, config.Match{Path: prefix("/api"), Methods: []string{"GET"}}),
		r("exact", nil, config.Match{Path: exact("/api")}),
		r("exact-long", nil, config.Match{Path: exact("/api/v1/status")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api"), "exact"},
		{req("GET", "h", "/api?x=1"), "exact"},
		{req("GET", "h", "/api/"), "prefix"},
		{req("GET", "h", "/api/x"), "prefix"},
		{req("GET", "h", "/api/v1/status"), "exact-long"},
		{req("GET", "h", "/api/v1/status/"), "prefix"},
		{req("POST", "h", "/api/x"), ""},
		{req("POST", "h", "/api"), "exact"},
	})
}

func TestSegmentPrefix(t *testing.T) {
	tb := mustTable(t, r("api", nil, config.Match{Path: prefix("/api")}))
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api"), "api"},
		{req("GET", "h", "/api/"), "api"},
		{req("GET", "h", "/api/x"), "api"},
		{req("GET", "h", "/api/x/y/z"), "api"},
		{req("GET", "h", "/api?x=1"), "api"},
		{req("GET", "h", "/api//x"), "api"},
		{req("GET", "h", "/apix"), ""},
		{req("GET", "h", "/api-v2"), ""},
		{req("GET", "h", "/ap"), ""},
		{req("GET", "h", "/xapi"), ""},
		{req("GET", "h", "/"), ""},
		{req("GET", "h", "/API"), ""}, // paths are case-sensitive
		{req("OPTIONS", "h", "*"), ""},
	})
}

func TestTrailingSlashPrefix(t *testing.T) {
	tb := mustTable(t,
		r("slash", nil, config.Match{Path: prefix("/api/")}),
		r("root-slashes", nil, config.Match{Path: prefix("//")}), // normalises to "/"
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api"), "slash"},
		{req("GET", "h", "/api/"), "slash"},
		{req("GET", "h", "/api/x"), "slash"},
		{req("GET", "h", "/apix"), "root-slashes"},
		{req("GET", "h", "/"), "root-slashes"},
	})

	// "/api/" and "/api" are the same key: declaration order decides.
	for _, first := range []string{"/api/", "/api"} {
		second := "/api"
		if first == "/api" {
			second = "/api/"
		}
		tb := mustTable(t,
			r("first "+first, nil, config.Match{Path: prefix(first)}),
			r("second "+second, nil, config.Match{Path: prefix(second)}),
		)
		checkLookups(t, tb, []lookupCase{
			{req("GET", "h", "/api"), "first " + first},
			{req("GET", "h", "/api/x"), "first " + first},
		})
	}
}

func TestNilPathIsRootPrefix(t *testing.T) {
	tb := mustTable(t,
		r("nil", nil, config.Match{}),
		r("api", nil, config.Match{Path: prefix("/api")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api/x"), "api"},
		{req("GET", "h", "/x"), "nil"},
		{req("GET", "h", "/"), "nil"},
	})
	// A nil path and an explicit "/" prefix tie: declaration order.
	tb = mustTable(t,
		r("slash", nil, config.Match{Path: prefix("/")}),
		r("nil", nil, config.Match{}),
	)
	checkLookups(t, tb, []lookupCase{{req("GET", "h", "/x"), "slash"}})
}

func TestRegexPath(t *testing.T) {
	tb := mustTable(t,
		r("users", nil, config.Match{Path: regex("/users/[0-9]+")}),
		r("alt", nil, config.Match{Path: regex("/a|/b")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/users/42"), "users"},
		{req("GET", "h", "/users/42?x=y"), "users"},
		{req("GET", "h", "/users/42/x"), ""}, // anchored at the end
		{req("GET", "h", "/x/users/42"), ""}, // anchored at the start
		{req("GET", "h", "/users/"), ""},
		{req("GET", "h", "/users/4a"), ""},
		{req("GET", "h", "/a"), "alt"},
		{req("GET", "h", "/b"), "alt"},
		{req("GET", "h", "/ab"), ""}, // alternation is grouped inside the anchors
		{req("GET", "h", "x/b"), ""},
	})
}

func TestRegexRankedByPatternLength(t *testing.T) {
	tb := mustTable(t,
		r("v-regex", nil, config.Match{Path: regex("/v[0-9]/.*")}),           // length 10
		r("v1-prefix", nil, config.Match{Path: prefix("/v1")}),               // length 3
		r("special", nil, config.Match{Path: prefix("/v1/items/special")}),   // length 17
		r("exact-short", nil, config.Match{Path: exact("/v1/x")}),            // length 5
		r("tie-regex", nil, config.Match{Path: regex("/t.")}),                // length 3
		r("tie-prefix", nil, config.Match{Path: prefix("/tx")}),              // length 3
		r("long-regex", nil, config.Match{Path: regex("/t[a-z]/[a-z]+/.*")}), // length 17
		r("short-regex", nil, config.Match{Path: regex("/t[a-z]/.*")}),       // length 10, declared later
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/v1/items/other"), "v-regex"},   // 10 > 3
		{req("GET", "h", "/v1/items/special"), "special"}, // 17 > 10
		{req("GET", "h", "/v1/items/special/x"), "special"},
		{req("GET", "h", "/v1/x"), "v-regex"}, // a longer pattern outranks a shorter exact path
		{req("GET", "h", "/v1"), "v1-prefix"},
		{req("GET", "h", "/v12"), ""},
		{req("GET", "h", "/tx"), "tie-prefix"}, // equal length: prefix beats regex
		{req("GET", "h", "/ty"), "tie-regex"},
		{req("GET", "h", "/tx/abc/d"), "long-regex"},
		{req("GET", "h", "/tx/abc"), "short-regex"},
	})
}

func TestRegexOrderAmongEqualPatterns(t *testing.T) {
	tb := mustTable(t,
		r("first", nil, config.Match{Path: regex("/r/.+")}),
		r("second", nil, config.Match{Path: regex("/r/.*")}),
		r("with-matcher", nil, config.Match{Path: regex("/r/..")}),
	)
	checkLookups(t, tb, []lookupCase{{req("GET", "h", "/r/xyz"), "first"}})
	tb = mustTable(t,
		r("first", nil, config.Match{Path: regex("/r/.+")}),
		r("more-matchers", nil, config.Match{Path: regex("/r/.*"), Methods: []string{"GET"}}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/r/xyz"), "more-matchers"},
		{req("PUT", "h", "/r/xyz"), "first"},
	})
}

func TestMoreMatchersWins(t *testing.T) {
	tb := mustTable(t,
		r("plain", nil, config.Match{Path: prefix("/api")}),
		r("canary", nil, config.Match{Path: prefix("/api"), Headers: []config.ValueMatch{{Name: "x-canary", Exact: "1"}}}),
		r("canary-get", nil, config.Match{Path: prefix("/api"), Methods: []string{"GET"},
			Headers: []config.ValueMatch{{Name: "x-canary", Exact: "1"}}}),
		r("longer-path", nil, config.Match{Path: prefix("/api/v2")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/api/x"), "plain"},
		{req("POST", "h", "/api/x", "X-Canary", "1"), "canary"},
		{req("GET", "h", "/api/x", "X-Canary", "1"), "canary-get"},
		{req("GET", "h", "/api/x", "X-Canary", "2"), "plain"},
		// Path length outranks matcher count.
		{req("GET", "h", "/api/v2/x", "X-Canary", "1"), "longer-path"},
	})
}

func TestDeclarationOrderBreaksTies(t *testing.T) {
	tb := mustTable(t,
		r("first", nil, config.Match{Path: prefix("/p"), Headers: []config.ValueMatch{{Name: "a"}}}),
		r("second", nil, config.Match{Path: prefix("/p"), Headers: []config.ValueMatch{{Name: "b"}}}),
		r("third", nil, config.Match{Path: prefix("/p"), Headers: []config.ValueMatch{{Name: "a"}}}),
		r("dup-exact-1", hosts("h"), config.Match{Path: exact("/e")}),
		r("dup-exact-2", hosts("h"), config.Match{Path: exact("/e")}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "x", "/p", "a", "1", "b", "1"), "first"},
		{req("GET", "x", "/p", "b", "1", "a", "1"), "first"},
		{req("GET", "x", "/p", "b", "1"), "second"},
		{req("GET", "h", "/e"), "dup-exact-1"},
	})
}

func TestMethodMatch(t *testing.T) {
	tb := mustTable(t,
		r("read", nil, config.Match{Path: prefix("/"), Methods: []string{"GET", "HEAD"}}),
		r("write", nil, config.Match{Path: prefix("/"), Methods: []string{"POST"}}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/x"), "read"},
		{req("HEAD", "h", "/x"), "read"},
		{req("POST", "h", "/x"), "write"},
		{req("DELETE", "h", "/x"), ""},
		{req("get", "h", "/x"), ""}, // methods are case-sensitive
		{req("GETX", "h", "/x"), ""},
	})
}

func TestHeaderMatch(t *testing.T) {
	tb := mustTable(t,
		r("exact", nil, config.Match{Path: prefix("/exact"), Headers: []config.ValueMatch{{Name: "X-Env", Exact: "prod"}}}),
		r("prefix", nil, config.Match{Path: prefix("/prefix"), Headers: []config.ValueMatch{{Name: "user-agent", Prefix: "curl/"}}}),
		r("regex", nil, config.Match{Path: prefix("/regex"), Headers: []config.ValueMatch{{Name: "x-version", Regex: "v[0-9]+|beta"}}}),
		r("presence", nil, config.Match{Path: prefix("/presence"), Headers: []config.ValueMatch{{Name: "Authorization"}}}),
		r("all", nil, config.Match{Path: prefix("/all"), Headers: []config.ValueMatch{
			{Name: "a", Exact: "1"}, {Name: "b", Prefix: "x"}, {Name: "c"}}}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/exact", "X-Env", "prod"), "exact"},
		{req("GET", "h", "/exact", "x-env", "prod"), "exact"},
		{req("GET", "h", "/exact", "X-ENV", "prod"), "exact"},
		{req("GET", "h", "/exact", "X-Env", "Prod"), ""}, // values are case-sensitive
		{req("GET", "h", "/exact", "X-Env", "prod2"), ""},
		{req("GET", "h", "/exact", "X-Env", ""), ""},
		{req("GET", "h", "/exact"), ""},
		{req("GET", "h", "/exact", "X-Env", "dev", "X-Env", "prod"), "exact"}, // any of several fields
		{req("GET", "h", "/exact", "X-Env", "prod", "X-Env", "dev"), "exact"},
		{req("GET", "h", "/exact", "X-Env", "dev, prod"), ""}, // no list splitting
		{req("GET", "h", "/prefix", "User-Agent", "curl/8.5"), "prefix"},
		{req("GET", "h", "/prefix", "User-Agent", "curl/"), "prefix"},
		{req("GET", "h", "/prefix", "User-Agent", "xcurl/8"), ""},
		{req("GET", "h", "/prefix", "User-Agent", "Curl/8"), ""},
		{req("GET", "h", "/regex", "X-Version", "v12"), "regex"},
		{req("GET", "h", "/regex", "X-Version", "beta"), "regex"},
		{req("GET", "h", "/regex", "X-Version", "v12x"), ""}, // anchored
		{req("GET", "h", "/regex", "X-Version", "xv12"), ""},
		{req("GET", "h", "/regex", "X-Version", "betamax"), ""},
		{req("GET", "h", "/regex", "X-Version", "no", "X-Version", "v1"), "regex"},
		{req("GET", "h", "/presence", "authorization", ""), "presence"},
		{req("GET", "h", "/presence", "AUTHORIZATION", "Bearer x"), "presence"},
		{req("GET", "h", "/presence", "Authorizatio", "x"), ""},
		{req("GET", "h", "/all", "a", "1", "b", "xy", "c", "z"), "all"},
		{req("GET", "h", "/all", "c", "", "B", "x", "A", "1"), "all"},
		{req("GET", "h", "/all", "a", "1", "b", "xy"), ""},
		{req("GET", "h", "/all", "a", "2", "b", "xy", "c", "z"), ""},
	})
}

func TestQueryMatch(t *testing.T) {
	long := strings.Repeat("z", 300)
	tb := mustTable(t,
		r("space", nil, config.Match{Path: prefix("/space"), Query: []config.ValueMatch{{Name: "q", Exact: "hello world"}}}),
		r("plus", nil, config.Match{Path: prefix("/plus"), Query: []config.ValueMatch{{Name: "x", Exact: "a+b"}}}),
		r("multi", nil, config.Match{Path: prefix("/multi"), Query: []config.ValueMatch{{Name: "b", Exact: "2"}, {Name: "c", Prefix: "3"}}}),
		r("name", nil, config.Match{Path: prefix("/name"), Query: []config.ValueMatch{{Name: "my key", Exact: "v/1"}}}),
		r("presence", nil, config.Match{Path: prefix("/presence"), Query: []config.ValueMatch{{Name: "debug"}}}),
		r("regex", nil, config.Match{Path: prefix("/regex"), Query: []config.ValueMatch{{Name: "id", Regex: "[0-9]{3}"}}}),
		r("long", nil, config.Match{Path: prefix("/long"), Query: []config.ValueMatch{{Name: "v", Exact: long + " end"}}}),
		r("long-re", nil, config.Match{Path: prefix("/longre"), Query: []config.ValueMatch{{Name: "v", Regex: "z+ end"}}}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/space?q=hello+world"), "space"},
		{req("GET", "h", "/space?q=hello%20world"), "space"},
		{req("GET", "h", "/space?q=hello%20World"), ""},
		{req("GET", "h", "/space?Q=hello+world"), ""}, // names are case-sensitive
		{req("GET", "h", "/space?q=hello"), ""},
		{req("GET", "h", "/space"), ""},
		{req("GET", "h", "/space?"), ""},
		{req("GET", "h", "/space?q=nope&q=hello+world"), "space"}, // any of repeated params
		{req("GET", "h", "/plus?x=a%2Bb"), "plus"},
		{req("GET", "h", "/plus?x=a%2bb"), "plus"},
		{req("GET", "h", "/plus?x=a+b"), ""}, // '+' decodes to a space
		{req("GET", "h", "/multi?a=1&b=2&c=3"), "multi"},
		{req("GET", "h", "/multi?c=30&b=2"), "multi"},
		{req("GET", "h", "/multi?b=2"), ""},
		{req("GET", "h", "/multi?b=22&c=3"), ""},
		{req("GET", "h", "/multi?b=2&&c=3&"), "multi"},
		{req("GET", "h", "/name?my%20key=v%2F1"), "name"},
		{req("GET", "h", "/name?my+key=v/1"), "name"},
		{req("GET", "h", "/name?my%2key=v/1"), ""},  // malformed escape in the name
		{req("GET", "h", "/name?my+key=v%2"), ""},   // malformed escape in the value
		{req("GET", "h", "/name?my+key=v%zz1"), ""}, // non-hex escape
		{req("GET", "h", "/presence?debug"), "presence"},
		{req("GET", "h", "/presence?x=1&debug="), "presence"},
		{req("GET", "h", "/presence?debugx=1"), ""},
		{req("GET", "h", "/regex?id=123"), "regex"},
		{req("GET", "h", "/regex?id=%31%32%33"), "regex"},
		{req("GET", "h", "/regex?id=1234"), ""},
		{req("GET", "h", "/long?v="+long+"+end"), "long"}, // decoded value beyond the stack buffer
		{req("GET", "h", "/longre?v="+long+"%20end"), "long-re"},
	})
}

func TestCookieMatch(t *testing.T) {
	tb := mustTable(t,
		r("theme", nil, config.Match{Path: prefix("/theme"), Cookies: []config.ValueMatch{{Name: "theme", Exact: "dark"}}}),
		r("session", nil, config.Match{Path: prefix("/session"), Cookies: []config.ValueMatch{{Name: "session"}}}),
		r("prefix", nil, config.Match{Path: prefix("/prefix"), Cookies: []config.ValueMatch{{Name: "ab", Prefix: "b-"}}}),
		r("regex", nil, config.Match{Path: prefix("/regex"), Cookies: []config.ValueMatch{{Name: "id", Regex: "[0-9]+"}}}),
	)
	checkLookups(t, tb, []lookupCase{
		{req("GET", "h", "/theme", "Cookie", "theme=dark"), "theme"},
		{req("GET", "h", "/theme", "Cookie", "session=abc; theme=dark"), "theme"},
		{req("GET", "h", "/theme", "Cookie", "theme=dark;session=abc"), "theme"},
		{req("GET", "h", "/theme", "COOKIE", "a=1;  theme=dark  ; b=2"), "theme"},
		{req("GET", "h", "/theme", "Cookie", "a=1", "cookie", "theme=dark"), "theme"}, // several Cookie fields
		{req("GET", "h", "/theme", "Cookie", `theme="dark"`), "theme"},                // quoted value
		{req("GET", "h", "/theme", "Cookie", "Theme=dark"), ""},                       // names are case-sensitive
		{req("GET", "h", "/theme", "Cookie", "theme=light"), ""},
		{req("GET", "h", "/theme", "Cookie", "xtheme=dark"), ""},
		{req("GET", "h", "/theme", "X-Cookie", "theme=dark"), ""},
		{req("GET", "h", "/theme", "Set-Cookie", "theme=dark"), ""},
		{req("GET", "h", "/theme"), ""},
		{req("GET", "h", "/session", "Cookie", "session="), "session"},
		{req("GET", "h", "/session", "Cookie", "session"), "session"},
		{req("GET", "h", "/session", "Cookie", "sessionx=1"), ""},
		{req("GET", "h", "/prefix", "Cookie", "ab=b-1"), "prefix"},
		{req("GET", "h", "/prefix", "Cookie", "ab=a-1; ab=b-2"), "prefix"},
		{req("GET", "h", "/regex", "Cookie", "id=42"), "regex"},
		{req("GET", "h", "/regex", "Cookie", "id=42a"), ""},
	})
}

func TestNoMatch(t *testing.T) {
	empty := mustTable(t)
	if v, ok := empty.Lookup(req("GET", "h", "/")); ok || v != "" {
		t.Errorf("empty table: %q, %v", v, ok)
	}
	tb := mustTable(t, r("a", hosts("a.example.com"), config.Match{Path: prefix("/api")}))
	checkLookups(t, tb, []lookupCase{
		{req("GET", "b.example.com", "/api"), ""},
		{req("GET", "a.example.com", "/"), ""},
		{req("GET", "", "/api"), ""},
	})
	// The zero value comes back with false for non-string values too.
	ti, err := New([]Entry[int]{{Hosts: []string{"x"}, Value: 7}})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := ti.Lookup(req("GET", "y", "/")); ok || v != 0 {
		t.Errorf("int table miss: %d, %v", v, ok)
	}
	if v, ok := ti.Lookup(req("GET", "x", "/")); !ok || v != 7 {
		t.Errorf("int table hit: %d, %v", v, ok)
	}
}

func TestNewRejectsBadRegex(t *testing.T) {
	for name, m := range map[string]config.Match{
		"path":   {Path: regex("(")},
		"header": {Headers: []config.ValueMatch{{Name: "a", Regex: "["}}},
		"query":  {Query: []config.ValueMatch{{Name: "a", Regex: "a**"}}},
		"cookie": {Cookies: []config.ValueMatch{{Name: "a", Regex: "(?P<>x)"}}},
	} {
		if _, err := New([]Entry[string]{r("ok", nil, config.Match{}), r("bad", nil, m)}); err == nil {
			t.Errorf("%s: bad regex accepted", name)
		} else if !strings.Contains(err.Error(), "route 1") {
			t.Errorf("%s: error %q does not name the route", name, err)
		}
	}
}

// TestLookupDoesNotAllocate covers every matcher kind, including decoded
// query values, which must be matched without a heap buffer. The one
// exception: a regex over a query value that needs percent/plus decoding
// gets a heap copy, because regexp's Match makes its argument escape.
func TestLookupDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy in -short mode")
	}
	tb := mustTable(t,
		r("host-prefix", hosts("a.example.com"), config.Match{Path: prefix("/api")}),
		r("header", hosts("a.example.com"), config.Match{Path: prefix("/api"), Headers: []config.ValueMatch{{Name: "x-env", Regex: "p.*"}}}),
		r("query", hosts("a.example.com"), config.Match{Path: prefix("/q"), Query: []config.ValueMatch{{Name: "k", Exact: "a b"}}}),
		r("query-re", hosts("a.example.com"), config.Match{Path: prefix("/qr"), Query: []config.ValueMatch{{Name: "k", Regex: "a.b"}}}),
		r("cookie", hosts("*.example.com"), config.Match{Path: exact("/c"), Cookies: []config.ValueMatch{{Name: "s", Prefix: "x"}}}),
		r("regex", nil, config.Match{Path: regex("/r/[0-9]+")}),
	)
	reqs := []struct {
		rq        *message.Request
		want      string
		maxAllocs float64
	}{
		{req("GET", "A.Example.com:443", "/api/v1?x=1"), "host-prefix", 0},
		{req("GET", "a.example.com", "/api/v1", "X-Env", "prod"), "header", 0},
		{req("GET", "a.example.com", "/q?k=a+b"), "query", 0},
		{req("GET", "a.example.com", "/q?z=1&k=a%20b"), "query", 0},
		{req("GET", "a.example.com", "/qr?k=axb"), "query-re", 0},
		{req("GET", "a.example.com", "/qr?k=a%20b"), "query-re", 1},
		{req("GET", "b.example.com", "/c", "Cookie", "s=xyz"), "cookie", 0},
		{req("GET", "other", "/r/123"), "regex", 0},
		{req("GET", "other", "/nothing"), "", 0},
	}
	for _, c := range reqs {
		got, _ := tb.Lookup(c.rq)
		if got != c.want {
			t.Fatalf("%s%s: got %q, want %q", c.rq.Host, c.rq.Target, got, c.want)
		}
		if n := testing.AllocsPerRun(100, func() { tb.Lookup(c.rq) }); n > c.maxAllocs {
			t.Errorf("%s%s: Lookup allocates %v times, want <= %v", c.rq.Host, c.rq.Target, n, c.maxAllocs)
		}
	}
}

func TestHostHeaderMatcherUsesRequestHost(t *testing.T) {
	tbl, err := New([]Entry[string]{
		{Match: config.Match{Headers: []config.ValueMatch{{Name: "Host", Regex: `api\.[a-z]+\.test(:[0-9]+)?`}}}, Value: "api"},
		{Value: "other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"api.eu.test": "api", "api.eu.test:8080": "api", "www.eu.test": "other"} {
		got, ok := tbl.Lookup(&message.Request{Method: []byte("GET"), Target: []byte("/"), Host: []byte(host)})
		if !ok || got != want {
			t.Errorf("host %s: got %q, want %q", host, got, want)
		}
	}
}
