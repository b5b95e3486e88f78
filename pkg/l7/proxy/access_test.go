package proxy_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/bcrypt"
)

// IP rules see the real client: X-Forwarded-For counts only from trusted
// proxies.
func TestIPRulesWithTrustedProxies(t *testing.T) {
	up := newBackend(t, "up")
	yaml := `
security: {trustedProxies: [%s]}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
- {name: admin, match: {path: {prefix: /admin}}, ipRules: {allow: [10.0.0.0/8]}, backends: [{cluster: c}]}
- {name: open, ipRules: {deny: [203.0.113.0/24]}, backends: [{cluster: c}]}
clusters: [{name: c, endpoints: [{address: %s}]}]
`
	e := startProxy(t, fmt.Sprintf(yaml, "127.0.0.1/32", up.addr()))
	c := client()
	for _, tc := range []struct {
		path, xff string
		want      int
	}{
		{"/admin", "", 403},                      // the peer 127.0.0.1 is not in 10/8
		{"/admin", "10.1.2.3", 200},              // trusted peer names the client
		{"/admin", "10.1.2.3, 192.0.2.1", 403},   // the right-most untrusted entry is the client
		{"/open", "203.0.113.9", 403},            // denied client
		{"/open", "203.0.113.9, 127.0.0.1", 403}, // trusted hops are skipped
		{"/open", "198.51.100.1", 200},           // others pass
		{"/open", "203.0.113.9, not-an-ip", 200}, // garbage stops the walk at the last trusted hop
		{"/admin", "10.1.2.3, 127.0.0.1, 127.0.0.1", 200},
	} {
		code, _, _, h, err := call(c, "GET", e.url(tc.path), map[string]string{"X-Forwarded-For": tc.xff}, nil)
		if err != nil || code != tc.want {
			t.Errorf("%s XFF %q: %d (%v), want %d", tc.path, tc.xff, code, err, tc.want)
		}
		if code == 403 && h.Get("Edge-Agent-Reason") != "ip_denied" {
			t.Errorf("reason %q", h.Get("Edge-Agent-Reason"))
		}
	}
	// Without trusted proxies the header is just a claim: the peer counts.
	e2 := startProxy(t, fmt.Sprintf(strings.Replace(yaml, "security: {trustedProxies: [%s]}\n", "", 1), up.addr()))
	if code, _, _, _, _ := call(c, "GET", e2.url("/admin"), map[string]string{"X-Forwarded-For": "10.1.2.3"}, nil); code != 403 {
		t.Fatalf("untrusted X-Forwarded-For was believed: %d", code)
	}
}

// A proxyProtocol listener takes the client address from the PROXY
// header (v1 and v2) and refuses connections without one.
func TestProxyProtocol(t *testing.T) {
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}", proxyProtocol: true}]
routes: [{name: r, ipRules: {deny: [198.51.100.0/24]}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))
	send := func(header func(net.Conn)) (int, string) {
		conn, err := net.DialTimeout("tcp", e.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		header(conn)
		fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	v1 := func(src string) func(net.Conn) {
		return func(c net.Conn) { fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 80\r\n", src) }
	}
	v2 := func(src string) func(net.Conn) {
		return func(c net.Conn) {
			h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 80})
			if _, err := h.WriteTo(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, _ := send(v1("198.51.100.7")); code != 403 {
		t.Fatalf("v1 from a denied client: %d", code)
	}
	if code, body := send(v1("192.0.2.7")); code != 200 || !strings.Contains(body, `"X-Forwarded-For":["192.0.2.7"]`) {
		t.Fatalf("v1 from an allowed client: %d %s", code, body)
	}
	if code, _ := send(v2("198.51.100.8")); code != 403 {
		t.Fatalf("v2 from a denied client: %d", code)
	}
	if code, _ := send(v2("192.0.2.8")); code != 200 {
		t.Fatalf("v2 from an allowed client: %d", code)
	}
	if code, _ := send(func(net.Conn) {}); code != 0 {
		t.Fatalf("no PROXY header: got %d, want the connection refused", code)
	}
}

// API keys: missing and wrong keys get 401; the key never goes upstream.
func TestAPIKeys(t *testing.T) {
	up := newBackend(t, "up")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, []byte("# team keys\nkey-one\nkey-two\n"), 0o600)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, apiKeys: {keysFile: %s}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, keys, up.addr()))
	c := client()
	for _, tc := range []struct {
		key, reason string
		want        int
	}{{"", "api_key_missing", 401}, {"key-three", "api_key_invalid", 401}, {"key-two", "", 200}} {
		hdr := map[string]string{}
		if tc.key != "" {
			hdr["X-API-Key"] = tc.key
		}
		code, _, body, h, _ := call(c, "GET", e.url("/"), hdr, nil)
		if code != tc.want || h.Get("Edge-Agent-Reason") != tc.reason {
			t.Fatalf("key %q: %d %q", tc.key, code, h.Get("Edge-Agent-Reason"))
		}
		if code == 200 && strings.Contains(strings.ToLower(body), "x-api-key") {
			t.Fatalf("the API key was sent upstream: %s", body)
		}
	}
}

// Basic auth against bcrypt and {SHA} entries, with a challenge on 401.
func TestBasicAuth(t *testing.T) {
	up := newBackend(t, "up")
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	sha := sha1.Sum([]byte("other"))
	users := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(users, []byte("alice:"+string(hash)+"\nbob:{SHA}"+base64.StdEncoding.EncodeToString(sha[:])+"\n"), 0o600)
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, basicAuth: {realm: shop, usersFile: %s}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, users, up.addr()))
	c := client()
	auth := func(u, p string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
	}
	code, _, _, h, _ := call(c, "GET", e.url("/"), nil, nil)
	if code != 401 || h.Get("WWW-Authenticate") != `Basic realm="shop", charset="UTF-8"` {
		t.Fatalf("no credentials: %d %q", code, h.Get("WWW-Authenticate"))
	}
	conn := dial(t, e.addr)
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\nAuthorization: Basic eDp5\r\n\r\n", auth("alice", "s3cret")["Authorization"])
	if resp := readResponse(t, conn, "GET"); resp.StatusCode != 400 || resp.Header.Get("Edge-Agent-Reason") != "ambiguous_credentials" {
		t.Fatalf("two Authorization headers: %d %q", resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"))
	}
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"alice", "s3cret", 200}, {"alice", "s3cret", 200}, {"alice", "wrong", 401}, {"bob", "other", 200}, {"bob", "x", 401}, {"eve", "s3cret", 401}} {
		if code, _, _, _, _ := call(c, "GET", e.url("/"), auth(tc.user, tc.pass), nil); code != tc.want {
			t.Fatalf("%s:%s: %d, want %d", tc.user, tc.pass, code, tc.want)
		}
	}
}

// A route's body limit: a declared length over it is refused at once, a
// chunked body that grows past it is cut with 413.
func TestRequestBodyLimit(t *testing.T) {
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, maxBodyBytes: 1000, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))
	c := client()
	if code, _, _, _, _ := call(c, "POST", e.url("/"), nil, strings.NewReader(strings.Repeat("x", 1000))); code != 200 {
		t.Fatalf("at the limit: %d", code)
	}
	code, _, _, h, _ := call(c, "POST", e.url("/"), nil, strings.NewReader(strings.Repeat("x", 1001)))
	if code != 413 || h.Get("Edge-Agent-Reason") != "request_body_too_large" {
		t.Fatalf("over the limit: %d %q", code, h.Get("Edge-Agent-Reason"))
	}
	code, _, _, _, _ = call(c, "POST", e.url("/"), nil, io.MultiReader(strings.NewReader(strings.Repeat("y", 5000))))
	if code != 413 {
		t.Fatalf("chunked over the limit: %d", code)
	}
}

// CORS: exact and wildcard-subdomain origins, credentials, preflights
// answered at the edge (before access control: preflights carry none).
func TestCORSWildcardSubdomainsAndCredentials(t *testing.T) {
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, apiKeys: {keysFile: %s}, backends: [{cluster: c}],
  cors: {allowOrigins: ["https://app.example.com", "https://*.shop.example"], allowMethods: [GET, PUT], allowHeaders: [x-api-key], allowCredentials: true, maxAge: 1h}}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, writeFile(t, "k\n"), up.addr()))
	c := client()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"https://eu.shop.example", true},
		{"https://a.b.shop.example", true},
		{"https://shop.example", false}, // the apex is not a subdomain
		{"http://eu.shop.example", false},
		{"https://evilshop.example", false},
		{"https://eu.shop.example.evil.com", false},
	} {
		code, _, _, h, _ := call(c, "OPTIONS", e.url("/x"), map[string]string{"Origin": tc.origin, "Access-Control-Request-Method": "PUT"}, nil)
		got := code == 204 && h.Get("Access-Control-Allow-Origin") == tc.origin && h.Get("Access-Control-Allow-Credentials") == "true" &&
			strings.Contains(h.Get("Access-Control-Allow-Methods"), "PUT") && h.Get("Access-Control-Max-Age") == "3600"
		if got != tc.ok {
			t.Errorf("preflight from %s: %d %v, want allowed=%v", tc.origin, code, h, tc.ok)
		}
	}
	code, _, _, h, _ := call(c, "GET", e.url("/x"), map[string]string{"Origin": "https://eu.shop.example", "X-API-Key": "k"}, nil)
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "https://eu.shop.example" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("actual request: %d %v", code, h)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
