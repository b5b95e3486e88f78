package waf

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// Compiled rule sets are shared between tests (compiling one takes ~50ms
// once Coraza's pattern cache is warm, a few hundred ms before).
var (
	wafsMu sync.Mutex
	wafs   = map[string]*WAF{}
)

func testWAF(t testing.TB, cfg config.WAF) *WAF {
	t.Helper()
	key := fmt.Sprint(cfg)
	wafsMu.Lock()
	defer wafsMu.Unlock()
	if w := wafs[key]; w != nil {
		return w
	}
	w, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	wafs[key] = w
	return w
}

var (
	block1  = config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 1}
	detect1 = config.WAF{Mode: config.WAFDetect, ParanoiaLevel: 1}
)

func hdrs(kv ...string) message.Headers {
	hs := make(message.Headers, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, message.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

// curl's defaults.
var cliHeaders = hdrs("User-Agent", "curl/8.5.0", "Accept", "*/*")

func get(uri string) *Request {
	return &Request{Method: "GET", URI: uri, Proto: "HTTP/1.1", Host: "example.com", Headers: cliHeaders,
		ClientIP: "192.0.2.10", ClientPort: 40000, ServerIP: "10.0.0.1", ServerPort: 443}
}

func post(uri, contentType, body string) *Request {
	r := get(uri)
	r.Method = "POST"
	r.Headers = append(slices.Clip(cliHeaders), message.Header{Name: []byte("Content-Type"), Value: []byte(contentType)})
	r.Body = []byte(body)
	r.ContentLength = int64(len(body))
	return r
}

func hasFamily(ids []int, family int) bool {
	for _, id := range ids {
		if id/1000 == family {
			return true
		}
	}
	return false
}

// The probes as a client sends them (percent-encoded: a raw space or quote
// in the request line is itself a protocol violation, rule 920100).
var attacks = []struct {
	name   string
	req    func() *Request
	family int
}{
	{"sqli-or", func() *Request { return get("/?id=1%27%20OR%20%271%27%3D%271") }, 942},
	{"sqli-union", func() *Request { return get("/?q=1%20UNION%20SELECT%20password%20FROM%20users") }, 942},
	{"sqli-form-body", func() *Request {
		return post("/login", "application/x-www-form-urlencoded", "user=admin'--")
	}, 942},
	{"xss-script", func() *Request { return get("/?q=%3Cscript%3Ealert(1)%3C/script%3E") }, 941},
	{"xss-img-onerror", func() *Request { return get("/?q=%3Cimg%20src=x%20onerror=alert(1)%3E") }, 941},
	{"sqli-json-body", func() *Request {
		return post("/api/users", "application/json", `{"name":"x' UNION SELECT password FROM users--"}`)
	}, 942},
}

func TestAttacksBlocked(t *testing.T) {
	w := testWAF(t, block1)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			v := w.Check(a.req())
			if !v.Blocked || !v.Denied || !v.Matched || v.Status != 403 {
				t.Fatalf("verdict %+v: want blocked with 403", v)
			}
			if v.RuleID != 949110 || !strings.HasPrefix(v.Message, "Inbound Anomaly Score Exceeded") {
				t.Errorf("deciding rule %d %q, want 949110 (inbound anomaly score)", v.RuleID, v.Message)
			}
			if !hasFamily(v.RuleIDs, a.family) || v.AttackRuleID/1000 != a.family {
				t.Errorf("rules %v, attack rule %d: want a %dxxx rule", v.RuleIDs, v.AttackRuleID, a.family)
			}
		})
	}
}

var browserHeaders = hdrs(
	"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
	"Accept-Language", "en-US,en;q=0.9,de-DE;q=0.8,de;q=0.7",
	"Accept-Encoding", "gzip, deflate, br, zstd",
	"Cookie", "_ga=GA1.2.1234567890.1700000000; session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dGVzdA; theme=dark; consent=yes",
	"Referer", "https://example.com/products?category=shoes&page=3",
	"Sec-Fetch-Dest", "document",
	"Sec-Fetch-Mode", "navigate",
	"Sec-Fetch-Site", "same-origin",
	"Sec-Fetch-User", "?1",
	"Upgrade-Insecure-Requests", "1",
	"Cache-Control", "max-age=0",
)

var cleanRequests = []struct {
	name string
	req  func() *Request
}{
	{"get-root", func() *Request { return get("/") }},
	{"get-api-query", func() *Request { return get("/api/users?page=2&sort=name") }},
	{"post-json", func() *Request { return post("/api/users", "application/json", `{"name":"Ann","age":31}`) }},
	{"put-json", func() *Request {
		r := post("/api/users/7", "application/json; charset=utf-8", `{"name":"Ann","tags":["a","b"],"address":{"city":"Zürich"}}`)
		r.Method = "PUT"
		return r
	}},
	{"delete", func() *Request { r := get("/api/users/7"); r.Method = "DELETE"; return r }},
	{"post-form", func() *Request {
		return post("/search", "application/x-www-form-urlencoded", "q=running+shoes&size=42&color=blue")
	}},
	{"post-empty", func() *Request { return post("/api/ping", "application/json", "") }},
	{"browser", func() *Request { r := get("/products/42?ref=home"); r.Headers = browserHeaders; return r }},
	{"accept-language", func() *Request {
		r := get("/")
		r.Headers = hdrs("User-Agent", "curl/8.5.0", "Accept", "*/*", "Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5")
		return r
	}},
	{"http2-lowercase", func() *Request {
		r := get("/api/users?page=2")
		r.Proto = "HTTP/2.0"
		r.ContentLength = -1
		r.Headers = hdrs("user-agent", "grpc-web-client", "accept", "application/json", "authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
		return r
	}},
	{"chunked-json", func() *Request {
		r := post("/api/users", "application/json", `{"name":"Bob"}`)
		r.ContentLength = -1
		return r
	}},
}

func TestCleanRequestsPass(t *testing.T) {
	w := testWAF(t, block1)
	for _, c := range cleanRequests {
		t.Run(c.name, func(t *testing.T) {
			if v := w.Check(c.req()); v.Blocked || v.Denied || v.Matched || v.Status != 0 || len(v.RuleIDs) != 0 {
				t.Fatalf("verdict %+v: want no match", v)
			}
		})
	}
}

func TestDetectMode(t *testing.T) {
	w := testWAF(t, detect1)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			v := w.Check(a.req())
			if v.Blocked || v.Status != 0 {
				t.Fatalf("verdict %+v: detect mode must not block", v)
			}
			if !v.Matched || !v.Denied || v.RuleID != 949110 || !hasFamily(v.RuleIDs, a.family) {
				t.Errorf("verdict %+v: want matched, would deny by 949110, a %dxxx rule", v, a.family)
			}
		})
	}
	for _, c := range cleanRequests {
		if v := w.Check(c.req()); v.Matched {
			t.Errorf("%s: verdict %+v, want no match", c.name, v)
		}
	}
}

func TestExcludeRules(t *testing.T) {
	base := testWAF(t, block1)
	probe := attacks[1].req // the UNION probe sets off several 942 rules
	// The detection rules the probe sets off at paranoia level 1.
	var fired []int
	for _, id := range base.Check(probe()).RuleIDs {
		if !evaluationRule(id) {
			fired = append(fired, id)
		}
	}
	if len(fired) < 2 {
		t.Fatalf("probe matched detection rules %v, want several", fired)
	}
	t.Logf("excluding %v", fired)
	w := testWAF(t, config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 1, ExcludeRules: fired})
	if v := w.Check(probe()); v.Blocked || v.Matched {
		t.Errorf("probe with %v excluded: verdict %+v, want it through", fired, v)
	}
	// Probes that trip other rules as well still block (the XSS ones do).
	for _, a := range attacks {
		others := slices.DeleteFunc(base.Check(a.req()).RuleIDs, func(id int) bool {
			return evaluationRule(id) || slices.Contains(fired, id)
		})
		if a.family == 941 && len(others) == 0 {
			t.Errorf("%s shares all its rules with the excluded probe", a.name)
		}
		if v := w.Check(a.req()); len(others) > 0 && !v.Blocked {
			t.Errorf("%s (rules %v): verdict %+v, want still blocked", a.name, others, v)
		}
	}

	// One id: the form body probe only trips libinjection (942100).
	w = testWAF(t, config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 1, ExcludeRules: []int{942100}})
	if v := w.Check(attacks[2].req()); v.Blocked {
		t.Errorf("form body probe with 942100 excluded: verdict %+v, want it through", v)
	}
	if v := w.Check(attacks[3].req()); !v.Blocked {
		t.Errorf("XSS probe with 942100 excluded: verdict %+v, want blocked", v)
	}
}

func TestParanoiaLevel(t *testing.T) {
	// Paranoia level 2 rules: 942330 (classic SQL injection probings: a
	// lone quote), 942480 (@@version), 932236 (a command, here "ping").
	for _, c := range []struct {
		uri  string
		rule int
	}{
		{"/?q=1'", 942330},
		{"/?q=@@version", 942480},
		{"/?host=ping%20127.0.0.1", 932236},
	} {
		if v := testWAF(t, block1).Check(get(c.uri)); v.Blocked {
			t.Errorf("%s at PL1: verdict %+v, want through", c.uri, v)
		}
		v := testWAF(t, config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 2}).Check(get(c.uri))
		if !v.Blocked || !slices.Contains(v.RuleIDs, c.rule) {
			t.Errorf("%s at PL2: verdict %+v, want blocked by %d", c.uri, v, c.rule)
		}
	}
	// ParanoiaLevel 0 is the default, 1.
	v := testWAF(t, config.WAF{Mode: config.WAFBlock}).Check(get("/?q=1'"))
	if v.Blocked {
		t.Errorf("PL0 (default 1): verdict %+v, want through", v)
	}
}

func TestRequestBody(t *testing.T) {
	w := testWAF(t, block1)

	// A complete but malformed JSON body: the rules could not inspect it,
	// so it is refused (200002, status 400).
	v := w.Check(post("/api/users", "application/json", `{"name":"Ann",`))
	if !v.Blocked || v.Status != 400 || v.RuleID != 200002 {
		t.Errorf("malformed JSON: verdict %+v, want 400 by 200002", v)
	}

	// A JSON body cut at BodyLimit is incomplete, not malformed. (Padding
	// keeps these cheap: the rules' cost grows with the number and length
	// of arguments, see BenchmarkCheckJSON.)
	big := `{"name":"Ann","items":[` + strings.Repeat(" ", 2*BodyLimit) + `]}`
	r := post("/api/items", "application/json", "")
	r.Body, r.BodyTruncated, r.ContentLength = []byte(big)[:BodyLimit], true, int64(len(big))
	if v := w.Check(r); v.Blocked || v.Matched {
		t.Errorf("truncated JSON: verdict %+v, want through", v)
	}
	// Longer than BodyLimit: only BodyLimit bytes are read.
	r.Body, r.BodyTruncated = []byte(big), false
	if v := w.Check(r); v.Blocked || v.Matched {
		t.Errorf("over-long JSON: verdict %+v, want through", v)
	}

	// An attack within the inspected part of a truncated body is found.
	form := "x=1' UNION SELECT password FROM users--&" + strings.Repeat("&", BodyLimit)
	r = post("/search", "application/x-www-form-urlencoded", "")
	r.Body, r.BodyTruncated, r.ContentLength = []byte(form)[:BodyLimit], true, int64(len(form))
	if v := w.Check(r); !v.Blocked || !hasFamily(v.RuleIDs, 942) {
		t.Errorf("attack in truncated form body: verdict %+v, want blocked", v)
	}
}

func TestMultipart(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // Coraza spools uploaded files to os.TempDir()
	w := testWAF(t, block1)
	const boundary = "----edgeagentboundary"
	body := func(field string) string {
		return "--" + boundary + "\r\n" +
			"Content-Disposition: form-data; name=\"title\"\r\n\r\n" + field + "\r\n" +
			"--" + boundary + "\r\n" +
			"Content-Disposition: form-data; name=\"file\"; filename=\"report.txt\"\r\n" +
			"Content-Type: text/plain\r\n\r\nquarterly numbers\r\n" +
			"--" + boundary + "--\r\n"
	}
	ct := "multipart/form-data; boundary=" + boundary
	if v := w.Check(post("/upload", ct, body("Q3 report"))); v.Matched {
		t.Errorf("upload: verdict %+v, want no match", v)
	}
	if v := w.Check(post("/upload", ct, body("<script>alert(1)</script>"))); !v.Blocked || !hasFamily(v.RuleIDs, 941) {
		t.Errorf("upload with XSS field: verdict %+v, want blocked", v)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) != 0 {
		t.Errorf("files left in the temp dir: %v", left)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []config.WAF{
		{Mode: "observe", ParanoiaLevel: 1},
		{Mode: config.WAFBlock, ParanoiaLevel: 5},
		{Mode: config.WAFBlock, ParanoiaLevel: -1},
		{Mode: config.WAFBlock, ParanoiaLevel: 1, ExcludeRules: []int{0}},
		{Mode: config.WAFBlock, ParanoiaLevel: 1, ExcludeRules: []int{1000000}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

func TestDirectives(t *testing.T) {
	d, err := Directives(config.WAF{Mode: config.WAFDetect, ParanoiaLevel: 3, ExcludeRules: []int{942100, 920350}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"SecRuleEngine DetectionOnly\n",
		"SecResponseBodyAccess Off\n",
		"setvar:tx.blocking_paranoia_level=3\"",
		"setvar:tx.detection_paranoia_level=3\"",
		"SecRequestBodyLimit 131072\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("directives lack %q", want)
		}
	}
	// Exclusions come after the rules they remove.
	crs := strings.Index(d, "Include @owasp_crs/*.conf")
	if i := strings.Index(d, "SecRuleRemoveById 942100\nSecRuleRemoveById 920350\n"); i < crs || crs < 0 {
		t.Errorf("exclusions not after the CRS include:\n%s", d)
	}
	if d, _ := Directives(block1); !strings.Contains(d, "SecRuleEngine On\n") {
		t.Errorf("block mode: %s", d)
	}
}

// Logs carry the rule ids, the method, the path and the client, never the
// query, header values or the body.
func TestLogsNoRequestData(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w, err := New(block1, slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := post("/login?token=QUERYSECRET", "application/x-www-form-urlencoded", "password=BODYSECRET' OR '1'='1")
	r.Headers = append(r.Headers,
		message.Header{Name: []byte("Cookie"), Value: []byte("sid=COOKIESECRET' UNION SELECT 1--")},
		message.Header{Name: []byte("Authorization"), Value: []byte("Basic HEADERSECRET")})
	v := w.Check(r)
	if !v.Blocked {
		t.Fatalf("verdict %+v, want blocked", v)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, secret := range []string{"QUERYSECRET", "BODYSECRET", "COOKIESECRET", "HEADERSECRET", "UNION"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{`"level":"WARN"`, `"msg":"waf blocked request"`, `"rule_id":949110`, `"path":"/login"`,
		`"method":"POST"`, `"client":"192.0.2.10"`, `"status":403`, `"942100 SQL Injection Attack Detected via libinjection"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestSafeMessage(t *testing.T) {
	for tmpl, leaks := range map[string]bool{
		"SQL Injection Attack Detected via libinjection":                                     false,
		"Inbound Anomaly Score Exceeded (Total Score: %{TX.BLOCKING_INBOUND_ANOMALY_SCORE})": false,
		"HTTP Parameter Pollution (%{MATCHED_VAR_NAME})":                                     true,
		"HTTP header is restricted by policy (%{MATCHED_VAR})":                               true,
		"Captured %{TX.0}": true,
		"%{tx.sampling_percentage} then %{REQUEST_HEADERS.host}": true,
		"unterminated %{": true,
	} {
		if got := expandsRequestData(tmpl); got != leaks {
			t.Errorf("expandsRequestData(%q) = %v, want %v", tmpl, got, leaks)
		}
	}
	raw := `SecRule ARGS_NAMES "@rx x" "id:921180,phase:2,block,msg:'HTTP Parameter Pollution (%{MATCHED_VAR_NAME})',logdata:'%{MATCHED_VAR}'"`
	if m, ok := msgTemplate(raw); !ok || m != "HTTP Parameter Pollution (%{MATCHED_VAR_NAME})" {
		t.Errorf("msgTemplate: %q %v", m, ok)
	}
	if got := clip("aé", 2); got != "a…" {
		t.Errorf("clip: %q", got)
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"example.com": "example.com", "example.com:8443": "example.com",
		"[2001:db8::1]:443": "2001:db8::1", "[2001:db8::1]": "2001:db8::1", "2001:db8::1": "2001:db8::1",
	} {
		if got := hostname(in); got != want {
			t.Errorf("hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCloseKeepsWorking(t *testing.T) {
	w, err := New(block1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if v := w.Check(attacks[0].req()); !v.Blocked {
		t.Errorf("after Close: verdict %+v, want blocked", v)
	}
	if v := w.Check(get("/")); v.Matched {
		t.Errorf("after Close: verdict %+v, want no match", v)
	}
}

func TestConcurrentChecks(t *testing.T) {
	w := testWAF(t, block1)
	const goroutines, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				if (g+i)%2 == 0 {
					a := attacks[(g+i)%len(attacks)]
					if v := w.Check(a.req()); !v.Blocked || !hasFamily(v.RuleIDs, a.family) {
						errs <- fmt.Sprintf("%s: %+v", a.name, v)
						return
					}
				} else {
					c := cleanRequests[(g+i)%len(cleanRequests)]
					if v := w.Check(c.req()); v.Matched {
						errs <- fmt.Sprintf("%s: %+v", c.name, v)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// panicWAF's transactions panic on first use, like a rule engine bug on
// some input would.
type panicWAF struct{}

func (panicWAF) NewTransaction() types.Transaction { return struct{ types.Transaction }{} }
func (panicWAF) NewTransactionWithID(string) types.Transaction {
	return struct{ types.Transaction }{}
}

func TestRuleEnginePanic(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))
	block := &WAF{waf: panicWAF{}, block: true, mode: "block", log: log}
	if v := block.Check(get("/?q=secret")); !v.Blocked || v.Status != 500 {
		t.Errorf("block mode: verdict %+v, want 500", v)
	}
	detect := &WAF{waf: panicWAF{}, mode: "detect", log: log}
	if v := detect.Check(get("/")); v.Blocked || !v.Denied {
		t.Errorf("detect mode: verdict %+v, want through (denied)", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if out := buf.String(); !strings.Contains(out, `"msg":"waf check failed"`) || !strings.Contains(out, `"level":"ERROR"`) || strings.Contains(out, "secret") {
		t.Errorf("log:\n%s", out)
	}
}

func TestProtocolLimits(t *testing.T) {
	w := testWAF(t, block1)
	// A raw control byte: the URI does not parse (200009).
	if v := w.Check(get("/a\x01b?q=1")); !v.Blocked || v.Status != 400 || v.RuleID != 200009 {
		t.Errorf("unparsable URI: verdict %+v, want 400 by 200009", v)
	}
	// More query arguments than are kept (200004): the last one would go
	// uninspected.
	var q strings.Builder
	for i := range 1001 {
		fmt.Fprintf(&q, "a%d=1&", i)
	}
	q.WriteString("x=%3Cscript%3Ealert(1)%3C/script%3E")
	if v := w.Check(get("/?" + q.String())); !v.Blocked || v.Status != 400 || v.RuleID != 200004 {
		t.Errorf("argument flood: verdict %+v, want 400 by 200004", v)
	}
	// Body arguments past the limit are not inspected and not refused.
	var form strings.Builder
	for i := range 1001 {
		fmt.Fprintf(&form, "a%d=1&", i)
	}
	if v := w.Check(post("/batch", "application/x-www-form-urlencoded", form.String()+"x=ok")); v.Blocked {
		t.Errorf("many body arguments: verdict %+v, want through", v)
	}
	// PUT, PATCH and DELETE are allowed (AllowedMethods); others are not.
	for _, m := range []string{"PUT", "PATCH", "DELETE"} {
		r := get("/api/users/7")
		r.Method = m
		if v := w.Check(r); v.Matched {
			t.Errorf("%s: verdict %+v, want no match", m, v)
		}
	}
	r := get("/")
	r.Method = "PROPFIND"
	if v := w.Check(r); !v.Blocked || !slices.Contains(v.RuleIDs, 911100) {
		t.Errorf("PROPFIND: verdict %+v, want blocked by 911100", v)
	}
}
