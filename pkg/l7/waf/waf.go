// Package waf inspects requests with the OWASP Core Rule Set (CRS 4) run
// by Coraza, for routes that set waf (config.WAF).
//
// A WAF is one compiled rule set. Compiling the CRS is expensive: the
// first one in a process takes ~0.3s and ~20MiB (Coraza caches the
// compiled patterns process-wide), each further one ~50-80ms and ~2MiB.
// Callers build one per distinct config.WAF and share it between the
// routes that use it; Check is safe for concurrent use.
//
// Checking is expensive too: CRS runs a few hundred regular expressions
// over every argument, cookie and inspected header, so a plain browser GET
// costs milliseconds of CPU and each argument of a body (a JSON leaf, a
// form field) adds several hundred microseconds (BenchmarkCheck*).
//
// CRS's protocol policy applies as is, apart from the methods (see
// AllowedMethods): request content types other than form, multipart, XML
// and JSON (gRPC, application/octet-stream, text/plain) are denied by
// 920420, request headers such as Content-Encoding and
// X-HTTP-Method-Override by 920450, backup and config file extensions in
// the path by 920440. Routes that need them exclude those rules.
//
// Only requests are inspected: the request line, the headers and up to
// BodyLimit bytes of the body. Responses are not (the proxy streams them).
// CRS scores matches (anomaly scoring) and the blocking evaluation rule
// (949110) denies once the inbound score reaches the threshold (5, one
// critical match); in detect mode nothing is denied but the verdict says
// what would have been.
package waf

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/types"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// BodyLimit is how many bytes of a request body are inspected. The caller
// buffers up to this much before Check (and sets Request.BodyTruncated if
// the body is longer); the rest is forwarded uninspected. At most 1000
// arguments are parsed from it (SecArgumentsLimit).
const BodyLimit = 128 << 10

// AllowedMethods are the methods CRS accepts (rule 911100). CRS's own
// default is GET HEAD POST OPTIONS, which would deny every PUT, PATCH and
// DELETE on an API route; method policy belongs to the route instead.
const AllowedMethods = "GET HEAD POST OPTIONS PUT PATCH DELETE"

// Limits of what is copied into log records and Verdict.Message.
const (
	maxLogPath = 256
	maxLogMsg  = 200
)

// WAF is one compiled rule set. It is safe for concurrent use and holds no
// per-request state.
type WAF struct {
	waf   coraza.WAF
	block bool
	mode  string
	log   *slog.Logger
}

// Request is what Check inspects. Strings are copied into the rule engine;
// nothing is retained after Check returns.
type Request struct {
	Method string
	// URI is the request target as received (origin-form path?query, not
	// decoded).
	URI string
	// Proto is "HTTP/1.1" (the default when empty), "HTTP/1.0" or
	// "HTTP/2.0".
	Proto string
	// Host is the authority (Host header or :authority). It is given to
	// the rules as the Host header unless Headers already hold one.
	Host string
	// Headers as received, without Host (message.Request keeps Host apart).
	Headers message.Headers
	// ContentLength is the declared body length, -1 when unknown (chunked,
	// or HTTP/2 without content-length). message.Request drops the framing
	// headers, so unless Headers hold Content-Length or Transfer-Encoding
	// the rules are given the one this implies. 0 with a non-empty Body
	// means len(Body).
	ContentLength int64
	// Body is the start of the request body, at most BodyLimit bytes (any
	// more are ignored). BodyTruncated tells the body was longer; Body must
	// then hold exactly BodyLimit bytes: it is inspected as far as it goes,
	// and a JSON or multipart body cut there is not taken for a malformed
	// one (a body cut shorter would be: 400 by rule 200002).
	Body          []byte
	BodyTruncated bool
	// The connection (the client after trusted proxies and PROXY protocol).
	ClientIP   string
	ClientPort int
	ServerIP   string
	ServerPort int
}

// Verdict is the outcome of Check.
type Verdict struct {
	// Blocked: answer Status and do not forward the request. Only ever set
	// in block mode.
	Blocked bool
	// Denied: the rule set decided to deny the request (the anomaly score
	// reached the threshold; or the URI, the query's argument count or the
	// body could not be inspected). In block mode Blocked is set too; in
	// detect mode it is what would have happened.
	Denied bool
	// Matched: at least one rule matched (and logged), possibly below the
	// anomaly threshold. Always set when Denied.
	Matched bool
	// Status to answer with when Blocked: 403 for attacks, 400 when the
	// request could not be inspected (200002 body, 200004 argument count,
	// 200009 URI), 500 when the rule engine failed; 0 when not Blocked.
	Status int
	// RuleID is the rule that decided (949110, the inbound anomaly score
	// evaluation, for CRS attack detections) or, when nothing was denied,
	// the first matched rule.
	RuleID int
	// AttackRuleID is the first matched rule that is not an anomaly score
	// evaluation (949xxx/959xxx/980xxx): what the request looked like (e.g.
	// 942100 SQL injection, 941100 XSS). 0 when none.
	AttackRuleID int
	// RuleIDs of all matched rules that log, in the order they matched.
	RuleIDs []int
	// Message of RuleID (e.g. "Inbound Anomaly Score Exceeded (Total Score:
	// 10)"). It never holds request data.
	Message string
}

// New compiles the CRS for cfg. ParanoiaLevel 0 means the default (1).
func New(cfg config.WAF, log *slog.Logger) (*WAF, error) {
	if log == nil {
		log = slog.Default()
	}
	directives, err := Directives(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cw, err := coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(directives))
	if err != nil {
		return nil, fmt.Errorf("waf: compiling the core rule set: %w", err)
	}
	w := &WAF{waf: cw, block: cfg.Mode == config.WAFBlock, mode: string(cfg.Mode), log: log}
	attrs := []slog.Attr{
		slog.String("mode", w.mode),
		slog.Int("paranoia_level", paranoia(cfg)),
		slog.Any("excluded_rules", cfg.ExcludeRules),
		slog.Duration("took", time.Since(start)),
	}
	if rc, ok := cw.(interface{ RulesCount() int }); ok {
		attrs = append(attrs, slog.Int("rules", rc.RulesCount()))
	}
	log.LogAttrs(context.Background(), slog.LevelDebug, "waf rule set compiled", attrs...)
	return w, nil
}

// Close releases what the WAF holds in Coraza's process-wide cache of
// compiled patterns (shared by every WAF compiled from the same rules;
// freed when its last owner closes). Call it when the WAF is dropped, e.g.
// after a reload replaced it. Check keeps working after Close (rules hold
// their own references), so requests in flight are unaffected.
func (w *WAF) Close() error {
	if c, ok := w.waf.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

func paranoia(cfg config.WAF) int {
	if cfg.ParanoiaLevel == 0 {
		return config.DefaultWAFParanoiaLevel
	}
	return cfg.ParanoiaLevel
}

// Directives returns the SecLang configuration New compiles for cfg (with
// the CRS files of coreruleset.FS as the include root).
func Directives(cfg config.WAF) (string, error) {
	var engine string
	switch cfg.Mode {
	case config.WAFBlock:
		engine = "On"
	case config.WAFDetect:
		engine = "DetectionOnly"
	default:
		return "", fmt.Errorf("waf: mode must be %s or %s, got %q", config.WAFDetect, config.WAFBlock, cfg.Mode)
	}
	pl := paranoia(cfg)
	if pl < 1 || pl > 4 {
		return "", fmt.Errorf("waf: paranoia level must be 1 to 4, got %d", cfg.ParanoiaLevel)
	}
	var b strings.Builder
	// Coraza's recommended base (body processors for JSON and XML, the
	// body parse error rules), then what differs here: the engine mode;
	// bodies inspected in memory up to BodyLimit, a longer one as far as
	// it goes (ProcessPartial: the caller only ever buffers BodyLimit);
	// no response inspection; no audit log (Check logs through slog).
	fmt.Fprintf(&b, `Include @coraza.conf-recommended
SecRuleEngine %s
SecRequestBodyAccess On
SecRequestBodyLimit %d
SecRequestBodyInMemoryLimit %d
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess Off
SecAuditEngine Off
`, engine, BodyLimit, BodyLimit)
	// Coraza's own (v3.8) recommended configuration adds to the older copy
	// embedded in coreruleset: a URI that does not parse (raw control
	// bytes) is refused, and so is a query string or path with more
	// arguments than are kept (1000): filler arguments would push an
	// attack past what the rules see. Body arguments past the 1000th are
	// not refused (Coraza's 200005): like the bytes past BodyLimit they
	// go uninspected, as a JSON API's batch body easily holds more leaves;
	// the limit also bounds the CPU a body costs.
	b.WriteString(`SecArgumentsLimit 1000
SecRule URI_PARSE_ERROR "@eq 1" \
    "id:200009,phase:1,t:none,log,deny,status:400,msg:'URI failed to parse.'"
SecRule ARGUMENTS_LIMIT_REACHED "@eq 1" \
    "id:200004,phase:1,t:none,log,deny,status:400,msg:'Argument limit reached; request rejected (GET/PATH args)'"
`)
	// 200002 denies (400) a body its processor cannot parse: otherwise a
	// body malformed for the rules but accepted by the backend would go
	// uninspected. A body cut at BodyLimit (INBOUND_DATA_ERROR) is not
	// malformed, only incomplete, and what was parsed is inspected.
	b.WriteString(`SecRuleRemoveById 200002
SecRule REQBODY_ERROR "!@eq 0" \
    "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2,chain"
    SecRule INBOUND_DATA_ERROR "@eq 0" "t:none"
Include @crs-setup.conf.example
`)
	// The CRS setup ids for these settings (crs-setup.conf.example).
	fmt.Fprintf(&b, `SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%d"
SecAction "id:900001,phase:1,pass,t:none,nolog,setvar:tx.detection_paranoia_level=%d"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=%s'"
Include @owasp_crs/*.conf
`, pl, pl, AllowedMethods)
	for _, id := range cfg.ExcludeRules {
		if id < 1 || id > 999999 {
			return "", fmt.Errorf("waf: excluded rule id %d is not between 1 and 999999", id)
		}
		b.WriteString("SecRuleRemoveById ")
		b.WriteString(strconv.Itoa(id))
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// Check runs the rules on r. The transaction is always closed before it
// returns. A failure inside the rule engine (an error, or a panic on some
// input) is logged and fails closed in block mode (Blocked, 500) and open
// in detect mode.
func (w *WAF) Check(r *Request) (v Verdict) {
	tx := w.waf.NewTransaction()
	defer func() {
		if p := recover(); p != nil {
			// The transaction is dropped rather than closed: its state is
			// unknown, and Close would hand it back to Coraza's pool.
			v = w.failed(r, fmt.Errorf("rule engine panic (%T)", p), debug.Stack())
			return
		}
		tx.ProcessLogging()
		_ = tx.Close()
	}()

	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	tx.ProcessConnection(r.ClientIP, r.ClientPort, r.ServerIP, r.ServerPort)
	tx.ProcessURI(r.URI, r.Method, proto)
	if r.Host != "" {
		tx.SetServerName(hostname(r.Host))
	}
	var hasHost, hasFraming bool
	for i := range r.Headers {
		h := &r.Headers[i]
		switch {
		case message.EqualFold(h.Name, "host"):
			hasHost = true
		case message.EqualFold(h.Name, "content-length"), message.EqualFold(h.Name, "transfer-encoding"):
			hasFraming = true
		}
		tx.AddRequestHeader(string(h.Name), string(h.Value))
	}
	if !hasHost && r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
	}
	if !hasFraming {
		addFraming(tx, r, proto)
	}
	body := r.Body
	if len(body) > BodyLimit {
		body = body[:BodyLimit]
	}

	var err error
	if tx.ProcessRequestHeaders() == nil {
		if len(body) > 0 {
			// Writing BodyLimit bytes reaches SecRequestBodyLimit: Coraza
			// flags INBOUND_DATA_ERROR (the body is cut, not malformed)
			// and runs the body phase itself (ProcessPartial).
			_, _, err = tx.WriteRequestBody(body)
		}
		if err == nil && tx.Interruption() == nil {
			// Also without a body: CRS decides (949110) in this phase. A
			// second call after ProcessPartial ran it is a no-op.
			_, err = tx.ProcessRequestBody()
		}
	}
	if err != nil {
		// Only the body buffer can fail, and it is in memory.
		return w.failed(r, err, nil)
	}
	v = w.verdict(tx)
	if v.Matched {
		w.logVerdict(r, &v, tx)
	}
	return v
}

// failed is the verdict when the rules could not run to the end: what was
// not inspected is not let through in block mode.
func (w *WAF) failed(r *Request, err error, stack []byte) Verdict {
	v := Verdict{Denied: true, Matched: true, Message: "waf: internal error"}
	if w.block {
		v.Blocked, v.Status = true, 500
	}
	attrs := []slog.Attr{slog.String("mode", w.mode), slog.String("err", err.Error())}
	if r != nil {
		attrs = append(attrs,
			slog.String("method", clip(r.Method, 16)),
			slog.String("path", clip(uriPath(r.URI), maxLogPath)),
			slog.String("client", r.ClientIP))
	}
	if stack != nil {
		attrs = append(attrs, slog.String("stack", string(stack)))
	}
	w.log.LogAttrs(context.Background(), slog.LevelError, "waf check failed", attrs...)
	return v
}

// addFraming gives the rules the Content-Length or Transfer-Encoding
// header message.Request keeps out of its header list.
func addFraming(tx types.Transaction, r *Request, proto string) {
	n := r.ContentLength
	if n == 0 && len(r.Body) > 0 {
		n = int64(len(r.Body))
	}
	switch {
	case n > 0:
		tx.AddRequestHeader("Content-Length", strconv.FormatInt(n, 10))
	case n == 0:
		switch r.Method {
		case "POST", "PUT", "PATCH":
			tx.AddRequestHeader("Content-Length", "0")
		}
	case strings.HasPrefix(proto, "HTTP/1."):
		tx.AddRequestHeader("Transfer-Encoding", "chunked")
	}
}

// hostname strips the port from an authority.
func hostname(authority string) string {
	if strings.HasPrefix(authority, "[") {
		if i := strings.IndexByte(authority, ']'); i > 0 {
			return authority[1:i]
		}
		return authority
	}
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && strings.IndexByte(authority, ':') == i {
		return authority[:i]
	}
	return authority
}

// detectionOnly is implemented by Coraza's transaction (not yet part of its
// public interface): the interruption DetectionOnly mode did not carry out.
type detectionOnly interface {
	DetectionOnlyInterruption() *types.Interruption
}

// logs is implemented by Coraza's matched rule (Log is planned for its
// public interface in v4).
type logs interface{ Log() bool }

func (w *WAF) verdict(tx types.Transaction) Verdict {
	var v Verdict
	var firstMsg, decidingMsg string
	it := tx.Interruption()
	if it == nil && !w.block {
		if d, ok := tx.(detectionOnly); ok {
			it = d.DetectionOnlyInterruption()
		}
	}
	for _, mr := range tx.MatchedRules() {
		if !logged(mr) {
			continue
		}
		id := mr.Rule().ID()
		v.RuleIDs = append(v.RuleIDs, id)
		if firstMsg == "" {
			firstMsg = safeMessage(mr)
		}
		if it != nil && id == it.RuleID && decidingMsg == "" {
			decidingMsg = safeMessage(mr)
		}
		if v.AttackRuleID == 0 && !evaluationRule(id) {
			v.AttackRuleID = id
		}
	}
	switch {
	case it != nil:
		v.Denied, v.Matched = true, true
		v.RuleID, v.Message = it.RuleID, decidingMsg
		if w.block {
			v.Blocked = true
			v.Status = it.Status
			if v.Status < 400 || v.Status > 599 {
				v.Status = 403
			}
		}
	case len(v.RuleIDs) > 0:
		v.Matched = true
		v.RuleID, v.Message = v.RuleIDs[0], firstMsg
	}
	return v
}

// logged reports whether a matched rule logs: CRS's initialization and
// bookkeeping rules are nolog.
func logged(mr types.MatchedRule) bool {
	if l, ok := mr.(logs); ok {
		return l.Log()
	}
	return mr.Message() != ""
}

// evaluationRule reports whether id is one of CRS's anomaly score
// evaluation or correlation rules rather than a detection.
func evaluationRule(id int) bool {
	switch id / 1000 {
	case 949, 959, 980:
		return true
	}
	return false
}

func (w *WAF) logVerdict(r *Request, v *Verdict, tx types.Transaction) {
	level, msg := slog.LevelWarn, "waf blocked request"
	switch {
	case v.Denied && !v.Blocked:
		msg = "waf would block request (detect mode)"
	case !v.Denied:
		// Below the anomaly threshold: nothing was (or would be) blocked.
		level, msg = slog.LevelInfo, "waf rules matched below the anomaly threshold"
	}
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	// Each matched rule's id and message (never the matched data, which
	// may be a header value or body content).
	rules := make([]string, 0, len(v.RuleIDs))
	for _, mr := range tx.MatchedRules() {
		if !logged(mr) {
			continue
		}
		rules = append(rules, strconv.Itoa(mr.Rule().ID())+" "+safeMessage(mr))
	}
	attrs := []slog.Attr{
		slog.String("mode", w.mode),
		slog.String("method", clip(r.Method, 16)),
		slog.String("path", clip(uriPath(r.URI), maxLogPath)),
		slog.String("client", r.ClientIP),
		slog.Int("rule_id", v.RuleID),
		slog.Int("attack_rule_id", v.AttackRuleID),
		slog.String("message", v.Message),
		slog.Any("rules", rules),
	}
	if v.Blocked {
		attrs = append(attrs, slog.Int("status", v.Status))
	}
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}

func uriPath(uri string) string {
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		return uri[:i]
	}
	return uri
}

// safeMessage is the rule's message when it holds no request data. A few
// CRS messages expand request data (the matched header name, argument
// name, or a capture); for those the unexpanded template is returned, so
// header values and body content never reach a log or a Verdict.
func safeMessage(mr types.MatchedRule) string {
	msg := mr.Message()
	if tmpl, ok := msgTemplate(mr.Rule().Raw()); ok && expandsRequestData(tmpl) {
		msg = tmpl
	}
	return clip(msg, maxLogMsg)
}

// msgTemplate finds msg:'...' in a rule's source.
func msgTemplate(raw string) (string, bool) {
	i := strings.Index(raw, "msg:'")
	if i < 0 {
		return "", false
	}
	rest := raw[i+len("msg:'"):]
	j := strings.IndexByte(rest, '\'')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

// expandsRequestData reports whether a message template has a macro other
// than a named TX variable (the anomaly scores, settings): MATCHED_VAR,
// ARGS, REQUEST_HEADERS, and TX.0-9 (regex captures) are request data.
func expandsRequestData(tmpl string) bool {
	for {
		i := strings.Index(tmpl, "%{")
		if i < 0 {
			return false
		}
		tmpl = tmpl[i+2:]
		name := tmpl
		if j := strings.IndexByte(tmpl, '}'); j >= 0 {
			name = tmpl[:j]
		}
		if len(name) < 4 || !strings.EqualFold(name[:3], "tx.") || name[3] >= '0' && name[3] <= '9' {
			return true
		}
	}
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
