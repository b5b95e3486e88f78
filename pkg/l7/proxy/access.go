package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/extauth"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/waf"
	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/bcrypt"
)

// Access control that needs no outside service: the client's real
// address (trusted proxies, PROXY protocol), IP rules, API keys, basic
// auth and body limits.

// clientIP is the request's client address: the peer, or, when the peer
// is a trusted proxy, the right-most X-Forwarded-For entry that is not.
func clientIP(trusted []netip.Prefix, req *message.Request, peer []byte) []byte {
	if len(trusted) == 0 {
		return peer
	}
	a, err := netip.ParseAddr(string(peer))
	if err != nil || !inPrefixes(trusted, a.Unmap().WithZone("")) {
		return peer
	}
	client := peer
	for i := len(req.Headers) - 1; i >= 0; i-- {
		h := req.Headers[i]
		if !message.EqualFold(h.Name, "x-forwarded-for") {
			continue
		}
		v := h.Value
		for len(v) > 0 {
			j := bytes.LastIndexByte(v, ',')
			entry := bytes.TrimSpace(v[j+1:])
			if j < 0 {
				v = nil
			} else {
				v = v[:j]
			}
			ea, err := netip.ParseAddr(string(entry))
			if err != nil {
				// Some balancers write "ip:port" or "[ip6]:port".
				ap, perr := netip.ParseAddrPort(string(entry))
				if perr != nil {
					return client // garbage: stop at the last address we could trust
				}
				ea = ap.Addr()
				entry = []byte(ea.String())
			}
			client = entry
			if !inPrefixes(trusted, ea.Unmap().WithZone("")) {
				return entry
			}
		}
	}
	return client
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parsePrefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := config.ParseCIDR(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ipRules is config.IPRules in run-time form.
type ipRules struct{ allow, deny []netip.Prefix }

func compileIPRules(r *config.IPRules) *ipRules {
	if r == nil {
		return nil
	}
	return &ipRules{allow: parsePrefixes(r.Allow), deny: parsePrefixes(r.Deny)}
}

// allows: deny wins; with an allow list, only listed clients pass.
func (r *ipRules) allows(client []byte) bool {
	a, err := netip.ParseAddr(string(client))
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("") // a zone would make every prefix miss
	if inPrefixes(r.deny, a) {
		return false
	}
	return len(r.allow) == 0 || inPrefixes(r.allow, a)
}

// apiKeys holds SHA-256 digests of the keys: the keys themselves are not
// kept, and a comparison takes the same time whichever key (if any) matches.
type apiKeys struct {
	header  string
	digests [][sha256.Size]byte
}

func compileAPIKeys(k *config.APIKeys) (*apiKeys, error) {
	if k == nil {
		return nil, nil
	}
	keys := k.Keys
	if k.KeysFile != "" {
		lines, err := readSecretLines(k.KeysFile)
		if err != nil {
			return nil, err
		}
		keys = append(append([]string(nil), keys...), lines...)
	}
	if len(keys) == 0 {
		return nil, errors.New("no API keys")
	}
	ak := &apiKeys{header: k.Header}
	for _, key := range keys {
		ak.digests = append(ak.digests, sha256.Sum256([]byte(key)))
	}
	return ak, nil
}

func (k *apiKeys) check(hs message.Headers) (ok bool, reason string) {
	v, found := hs.Get(k.header)
	if !found || len(v) == 0 {
		return false, "api_key_missing"
	}
	d := sha256.Sum256(v)
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(d[:], k.digests[i][:])
	}
	if match == 1 {
		return true, ""
	}
	return false, "api_key_invalid"
}

// basicAuth checks htpasswd entries: bcrypt ($2a$, $2b$, $2y$) or {SHA}
// (SHA-1, base64). A bcrypt check costs milliseconds of CPU, so verified
// credentials are remembered (as a SHA-256 of user:password) for the
// life of the config.
type basicAuth struct {
	realm     string
	challenge []byte
	users     map[string]string
	mu        sync.Mutex
	verified  map[[sha256.Size]byte]bool
	// dummy is a bcrypt hash at the users' cost, made on first need.
	cost      int
	dummyOnce sync.Once
	dummy     []byte
}

func (b *basicAuth) dummyHash() []byte {
	b.dummyOnce.Do(func() {
		b.dummy, _ = bcrypt.GenerateFromPassword([]byte("edge-agent: no such user"), b.cost)
	})
	return b.dummy
}

const maxVerifiedCredentials = 4096

func compileBasicAuth(b *config.BasicAuth) (*basicAuth, error) {
	if b == nil {
		return nil, nil
	}
	lines := b.Users
	if b.UsersFile != "" {
		fl, err := readSecretLines(b.UsersFile)
		if err != nil {
			return nil, err
		}
		lines = append(append([]string(nil), lines...), fl...)
	}
	ba := &basicAuth{realm: b.Realm, users: map[string]string{}, verified: map[[sha256.Size]byte]bool{}, cost: bcrypt.MinCost,
		challenge: []byte(`Basic realm="` + b.Realm + `", charset="UTF-8"`)}
	for i, l := range lines {
		user, hash, ok := strings.Cut(l, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("users line %d: not user:hash", i+1)
		}
		switch {
		case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
			cost, err := bcrypt.Cost([]byte(hash))
			if err != nil {
				return nil, fmt.Errorf("users line %d (%s): bad bcrypt hash", i+1, user)
			}
			ba.cost = max(ba.cost, cost)
		case strings.HasPrefix(hash, "{SHA}"):
			if d, err := base64.StdEncoding.DecodeString(hash[5:]); err != nil || len(d) != sha1.Size {
				return nil, fmt.Errorf("users line %d (%s): bad {SHA} hash", i+1, user)
			}
		default:
			return nil, fmt.Errorf("users line %d (%s): unsupported hash (use bcrypt: htpasswd -B)", i+1, user)
		}
		ba.users[user] = hash
	}
	if len(ba.users) == 0 {
		return nil, errors.New("no users")
	}
	return ba, nil
}

func (b *basicAuth) check(hs message.Headers) (ok bool, reason string) {
	v, found := hs.Get("authorization")
	if !found || len(v) < 6 || !message.EqualFold(v[:6], "basic ") {
		return false, "basic_auth_missing"
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(v)-6))
	n, err := base64.StdEncoding.Decode(raw, bytes.TrimSpace(v[6:]))
	if err != nil {
		return false, "basic_auth_invalid"
	}
	user, pass, found := bytes.Cut(raw[:n], []byte{':'})
	hash, known := b.users[string(user)]
	if !found || !known {
		// Spend what a wrong password for a known user costs, so the
		// answer's timing does not tell which user names exist.
		_ = bcrypt.CompareHashAndPassword(b.dummyHash(), pass)
		return false, "basic_auth_invalid"
	}
	key := sha256.Sum256(raw[:n])
	b.mu.Lock()
	cached := b.verified[key]
	b.mu.Unlock()
	if cached {
		return true, ""
	}
	if strings.HasPrefix(hash, "{SHA}") {
		d := sha1.Sum(pass)
		want, _ := base64.StdEncoding.DecodeString(hash[5:])
		if subtle.ConstantTimeCompare(d[:], want) != 1 {
			return false, "basic_auth_invalid"
		}
	} else if bcrypt.CompareHashAndPassword([]byte(hash), pass) != nil {
		return false, "basic_auth_invalid"
	}
	b.mu.Lock()
	if len(b.verified) >= maxVerifiedCredentials {
		clear(b.verified)
	}
	b.verified[key] = true
	b.mu.Unlock()
	return true, ""
}

// readSecretLines reads non-empty, non-comment lines of a secrets file.
// Errors name the file, never its content.
func readSecretLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// errBodyTooLarge ends a request body past the route's limit.
var errBodyTooLarge = errors.New("request body larger than the route allows")

// limitedBody fails a body that grows past n bytes.
type limitedBody struct {
	r io.Reader
	n int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return 0, errBodyTooLarge
	}
	return n, err
}

// readProxyHeader reads the PROXY protocol (v1 or v2) header a listener
// requires, and returns the connection as seen from the client's side.
func readProxyHeader(nc net.Conn) (net.Conn, error) {
	br := bufio.NewReaderSize(nc, 512)
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol header: %w", err)
	}
	pc := &proxiedConn{Conn: nc, r: br, remote: nc.RemoteAddr()}
	if h.Command.IsProxy() && h.SourceAddr != nil {
		pc.remote = h.SourceAddr
	}
	return pc, nil
}

// proxiedConn is a connection behind a PROXY protocol header: reads come
// after the header, RemoteAddr is the client the header names.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (p *proxiedConn) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *proxiedConn) RemoteAddr() net.Addr       { return p.remote }

// CloseWrite half-closes when the connection underneath can.
func (p *proxiedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// replacedByAuth: an incoming header access control replaces or removes.
func replacedByAuth(name []byte, s *scratch) bool {
	for _, d := range s.drop {
		if message.EqualFold(name, d) {
			return true
		}
	}
	for _, h := range s.authHdrs {
		if bytes.EqualFold(name, h.Name) {
			return true
		}
	}
	return false
}

// authorize runs the route's credential checks in order: API key, basic
// auth. It answers the request itself (401) when one fails.
func authorize(ctx context.Context, st *State, route *Route, req *message.Request, rid []byte, fe frontend, s *scratch) (reqInfo, bool) {
	b := &route.backends[0]
	s.drop = route.authDrop
	// Two credentials in one request: the upstream might read another one
	// than the one checked here.
	if (route.basicAuth != nil || route.jwt != nil) && count(req.Headers, "authorization") > 1 ||
		route.apiKeys != nil && count(req.Headers, route.apiKeys.header) > 1 {
		return localReply(fe, s, b.stats, 400, "ambiguous_credentials", rid, st), true
	}
	if k := route.apiKeys; k != nil {
		if ok, reason := k.check(req.Headers); !ok {
			return localReply(fe, s, b.stats, 401, reason, rid, st), true
		}
	}
	if ba := route.basicAuth; ba != nil {
		if ok, reason := ba.check(req.Headers); !ok {
			s.extra = append(s.extra, message.Header{Name: hdrWWWAuthenticate, Value: ba.challenge})
			return localReply(fe, s, b.stats, 401, reason, rid, st), true
		}
	}
	if v := route.jwt; v != nil {
		get := func(name string) (string, bool) {
			val, ok := req.Headers.Get(name)
			return string(val), ok
		}
		cookie := func(name string) (string, bool) {
			val, ok := cookieValue(req.Headers, name)
			return string(val), ok
		}
		res := v.Check(get, cookie, time.Now())
		if !res.OK {
			s.extra = append(s.extra, message.Header{Name: hdrWWWAuthenticate, Value: []byte(res.Challenge)})
			return localReply(fe, s, b.stats, res.Status, res.Reason, rid, st), true
		}
		for _, h := range res.Headers {
			s.authHdrs = append(s.authHdrs, message.Header{Name: []byte(h[0]), Value: []byte(h[1])})
		}
	}
	if a := route.extAuth; a != nil {
		scheme := "http"
		if req.TLS {
			scheme = "https"
		}
		proto := "HTTP/1.1"
		if req.ProtoMajor == 2 {
			proto = "HTTP/2"
		}
		d := a.Check(ctx, &extauth.Request{Method: req.Method, Target: req.Target, Host: req.Host, Headers: authView(req.Headers, s),
			Scheme: scheme, Proto: proto, RequestID: rid, ClientIP: s.client, ContentLength: req.ContentLength})
		if !d.Allowed {
			if len(d.Headers) == 0 && len(d.Body) == 0 {
				return localReply(fe, s, b.stats, d.Status, d.Reason, rid, st), true
			}
			return authReply(fe, s, b, &d, rid, st), true
		}
		s.extOps = d.Upstream
	}
	if w := route.waf; w != nil {
		if v, ok := inspect(ctx, st, route, w, req, fe, s); !ok {
			return localReply(fe, s, b.stats, 499, "downstream_canceled", rid, st), true
		} else if errors.Is(s.replayErr, errInspectTimeout) {
			return localReply(fe, s, b.stats, 408, "request_body_timeout", rid, st), true
		} else if v.Blocked {
			return localReply(fe, s, b.stats, v.Status, "waf_blocked", rid, st), true
		}
	}
	return reqInfo{}, false
}

// inspect runs the WAF on req, with up to waf.BodyLimit bytes of its body
// (read now, and sent upstream again before the rest). It waits for a
// WAF slot; false means the client left first.
//
// gRPC calls are inspected without their bodies (the CRS cannot read
// protobuf, and a stream may not end before its answer). A body of
// unknown length has inspectBodyTime to deliver its first 128 KiB or to
// end; a client that waits for the response before sending more (a
// streaming upload) gets 408.
func inspect(ctx context.Context, st *State, route *Route, w *waf.WAF, req *message.Request, fe frontend, s *scratch) (waf.Verdict, bool) {
	var body []byte
	truncated := false
	tooLarge := route.maxBody > 0 && req.ContentLength > route.maxBody // refused next, unread
	if req.Body != nil && req.ContentLength != 0 && !s.grpc && !tooLarge {
		fe.continueBody()
		var fired atomic.Bool
		var t *time.Timer
		if req.ContentLength < 0 {
			abort := fe.abortFunc()
			t = time.AfterFunc(inspectBodyTime, func() { fired.Store(true); abort() })
		}
		limit := int64(waf.BodyLimit)
		if req.ContentLength > 0 && req.ContentLength < limit {
			limit = req.ContentLength
		}
		buf := s.wafBuf[:0]
		if int64(cap(buf)) < limit {
			buf = make([]byte, 0, limit)
		}
		n, err := io.ReadFull(req.Body, buf[:limit])
		if t != nil && !t.Stop() && fired.Load() {
			err = errInspectTimeout
		}
		body, s.wafBuf = buf[:n], buf
		switch {
		case err == nil:
			truncated = req.ContentLength < 0 || req.ContentLength > int64(n)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// A chunked body shorter than the limit: all of it is here.
		default:
			s.replayErr = err
		}
		s.replay2 = prefixBody{pre: body, rest: req.Body, err: s.replayErr}
		req.Body = &s.replay2
	}
	select {
	case st.wafSlots <- struct{}{}:
	case <-ctx.Done():
		return waf.Verdict{}, false
	}
	defer func() { <-st.wafSlots }()
	return w.Check(&waf.Request{Method: string(req.Method), URI: string(req.Target), Host: string(req.Host),
		Proto: protoName(req), Headers: req.Headers, ContentLength: req.ContentLength, Body: body, BodyTruncated: truncated,
		ClientIP: string(s.client)}), true
}

func protoName(req *message.Request) string {
	if req.ProtoMajor == 2 {
		return "HTTP/2.0"
	}
	return "HTTP/1.1"
}

// inspectBodyTime bounds reading a body of unknown length for the WAF.
const inspectBodyTime = 5 * time.Second

var errInspectTimeout = errors.New("request body too slow for inspection")

// authView is the request's headers as the upstream will see them, for an
// authorization service: headers access control removes are gone and the
// ones it sets (verified claims) are there, so a client cannot show the
// service a forged claim. Built only when there is something to change.
func authView(hs message.Headers, s *scratch) message.Headers {
	if len(s.drop) == 0 && len(s.authHdrs) == 0 {
		return hs
	}
	v := s.view[:0]
	for _, h := range hs {
		if !replacedByAuth(h.Name, s) {
			v = append(v, h)
		}
	}
	v = append(v, s.authHdrs...)
	s.view = v
	return v
}

// prefixBody reads pre, then rest (or err, a read error met while
// reading pre).
type prefixBody struct {
	pre  []byte
	rest io.Reader
	err  error
}

func (p *prefixBody) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	return p.rest.Read(b)
}

// authReply sends an authorization service's refusal to the client as it
// came (status, headers, body), with the request id and the reason.
func authReply(fe frontend, s *scratch, b *backend, d *extauth.Decision, rid []byte, st *State) reqInfo {
	fe.beforeLocalReply()
	s.local = localBody{b: append(s.local.b[:0], d.Body...)}
	hs := replyHeaders(append(s.resp[:0], d.Headers...), d.Reason, rid, s, st)
	n := sendLocal(fe, s, d.Status, hs)
	return reqInfo{status: d.Status, reason: d.Reason, bytes: n, stats: b.stats}
}

var hdrWWWAuthenticate = []byte("WWW-Authenticate")

// count is how many times name occurs in hs.
func count(hs message.Headers, name string) int {
	n := 0
	for i := range hs {
		if message.EqualFold(hs[i].Name, name) {
			n++
		}
	}
	return n
}
