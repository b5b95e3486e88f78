package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The WAF (OWASP CRS) on a route: classic SQL injection and XSS probes
// are blocked, normal traffic passes with its body intact (also past the
// inspected 128 KiB), detect mode only logs.
func TestWAFRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Core Rule Set")
	}
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
- {name: watched, match: {path: {prefix: /watched}}, waf: {mode: detect}, backends: [{cluster: c}]}
- {name: app, waf: {mode: block}, backends: [{cluster: c}]}
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up.addr()))
	c := client()
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
	}{
		{"sqli in the query", "GET", "/?id=" + url.QueryEscape("1' OR '1'='1"), "", nil, 403},
		{"union select", "GET", "/?q=" + url.QueryEscape("1 UNION SELECT password FROM users"), "", nil, 403},
		{"sqli in a form body", "POST", "/login", "user=" + url.QueryEscape("admin'--") + "&pass=x", form, 403},
		{"xss script", "GET", "/?q=" + url.QueryEscape("<script>alert(1)</script>"), "", nil, 403},
		{"xss handler", "GET", "/?q=" + url.QueryEscape("<img src=x onerror=alert(1)>"), "", nil, 403},
		{"normal page", "GET", "/api/users?page=2&sort=name", "", nil, 200},
		{"normal form", "POST", "/login", "user=ann&pass=correct+horse", form, 200},
		{"normal JSON", "POST", "/api/users", `{"name":"Ann","age":31}`, map[string]string{"Content-Type": "application/json"}, 200},
		{"detect mode passes", "GET", "/watched?id=" + url.QueryEscape("1' OR '1'='1"), "", nil, 200},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		code, _, _, h, err := call(c, tc.method, e.url(tc.path), tc.hdr, body)
		reason := h.Get("Edge-Agent-Reason")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if code != tc.status || (code == 403) != (reason == "waf_blocked") {
			t.Errorf("%s: %d %q, want %d", tc.name, code, reason, tc.status)
		}
	}
	// A body longer than the inspected part reaches the upstream whole.
	big := `{"items":[` + strings.Repeat(`"abcdefghij",`, 20000) + `"end"]}`
	// The CRS checks each of the inspected 128 KiB's JSON values with every
	// rule: about 0.5 s, but 8 s and more under -race, too close to call's 10.
	code, _, resp, _, err := callWithin(time.Minute, c, "POST", e.url("/api/bulk"), map[string]string{"Content-Type": "application/json"}, strings.NewReader(big))
	var echoed echo
	json.Unmarshal([]byte(resp), &echoed)
	if err != nil || code != 200 || echoed.Body != len(big) {
		t.Fatalf("big body: %d, upstream got %d of %d bytes (%v)", code, echoed.Body, len(big), err)
	}
}
