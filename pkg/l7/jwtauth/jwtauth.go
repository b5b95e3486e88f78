// Package jwtauth validates JSON Web Tokens (RFC 7519) on a route against
// the keys its issuers publish as JWK sets (RFC 7517).
//
// A Validator is built once per route's config.JWTAuth. It keeps each
// provider's JWKS in memory (parsed, exported to crypto keys) and
// refreshes it in the background, so Check does no I/O: it finds the
// token, peeks at its (unverified) issuer only to pick the provider, then
// verifies the signature with that provider's key for the token's kid and
// validates exp (required), nbf and iat (when present, all with the
// provider's clock skew), the issuer and the audience.
//
// A token that passed is remembered (by its SHA-256, never itself), so
// that the next requests carrying it skip the verification: for at most a
// minute, never past its exp, only once its nbf and iat have passed, and
// only while the keys of every provider are those it was checked with (a
// JWKS refresh that changes a key set forgets every token). Failures are
// never remembered. At most CacheSize tokens are kept.
//
// Signature verification and claim validation are done by
// github.com/lestrrat-go/jwx/v3. Only the algorithms a provider lists are
// accepted; none and HMAC never are, and a key verifies only the
// algorithms of its own type, so a public key can not be used as an HMAC
// secret.
//
// Tokens and claims are never logged.
package jwtauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Reasons are stable, machine-readable causes of a failed (or, for
// ReasonMissing on an optional route, a tokenless) check, fit for metric
// labels and logs.
const (
	ReasonMissing         = "jwt_missing"          // no token where the providers look
	ReasonInvalid         = "jwt_invalid"          // malformed, too large, bad signature, no exp, nbf/iat in the future, bad claims
	ReasonExpired         = "jwt_expired"          // exp (plus clock skew) has passed
	ReasonAudience        = "jwt_audience"         // aud holds none of the provider's audiences
	ReasonIssuer          = "jwt_issuer"           // iss is no provider's issuer
	ReasonAlgorithm       = "jwt_algorithm"        // the header's alg is not allowed (none, HMAC, unlisted)
	ReasonUnknownKey      = "jwt_unknown_key"      // no key for the kid (an early JWKS refresh is started)
	ReasonKeysUnavailable = "jwt_keys_unavailable" // the provider's JWKS has not loaded yet
)

// Challenges are the WWW-Authenticate values of 401 answers (RFC 6750
// section 3): without an error code when no token was sent, with
// invalid_token otherwise. They never echo the token.
const (
	ChallengeMissing = `Bearer realm="edge-agent"`
	ChallengeInvalid = `Bearer realm="edge-agent", error="invalid_token"`
)

// Limits.
const (
	// MaxTokenBytes bounds a token; a longer one is ReasonInvalid.
	MaxTokenBytes = 8 << 10
	// MaxJWKSBytes bounds a JWKS document (fetched or read).
	MaxJWKSBytes = 1 << 20
	// DefaultFetchTimeout bounds a JWKS fetch when New is given no
	// http.Client (or one without a Timeout).
	DefaultFetchTimeout = 5 * time.Second
	// EarlyRefreshEvery is the least time between two early JWKS
	// refreshes of one provider (asked for by unknown kids, or by
	// requests while no keys are loaded).
	EarlyRefreshEvery = 10 * time.Second
)

// Result is the outcome of Check.
type Result struct {
	// OK: let the request through. On an optional route a request without
	// a token is OK with Reason ReasonMissing and no Provider.
	OK bool
	// Status is the HTTP status to answer with when !OK (always 401).
	Status int
	// Reason is one of the Reason constants when !OK (or ReasonMissing,
	// see OK); empty for a valid token.
	Reason string
	// Provider is the name of the provider whose issuer the token names,
	// when one does (also on failures after the issuer matched).
	Provider string
	// Headers are the provider's ClaimsToHeaders for a valid token, in
	// their order: {header, value}. Claims that are absent, not a string,
	// number or bool, or whose string holds control characters, are
	// skipped. Numbers are in plain decimal, bools "true"/"false".
	// The slice is shared with other Results for the same token (it
	// comes from the cache): read it, never modify or append to it.
	Headers [][2]string
	// Challenge is the WWW-Authenticate value to send with the 401.
	Challenge string
}

// Validator checks the tokens of one route. It is safe for concurrent use.
type Validator struct {
	sources  []*tokenSource
	optional bool
	headers  []string

	// cache holds the tokens that passed (nil: none are kept). keyGen is
	// bumped by a provider's refresh after it stores a key set that
	// differs from the one before; cached entries of an older generation
	// are not used.
	cache  *tokenCache
	keyGen atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// tokenSource is one place a token is looked for, and the providers that
// look there.
type tokenSource struct {
	header    string // header name, or ""
	bearer    bool   // header is Authorization: "Bearer <token>"
	cookie    string // cookie name, or ""
	providers []*provider
}

type provider struct {
	name      string
	issuer    string
	audiences []string
	algs      []string
	skew      time.Duration
	claims    []config.ClaimHeader
	keys      *keySource
}

// New builds the Validator for cfg and starts refreshing its providers'
// keys; it stops when ctx is done or Close is called. Defaults pkg/config
// applies are applied here too (refresh 5m, skew 30s, the Authorization
// header); the refresh interval may be shorter than config allows.
//
// A JWKSFile is read now: an unreadable file or a document without a
// usable key is an error. A JWKSURL is fetched in the background, so a
// server that is down does not fail New: requests get 401
// ReasonKeysUnavailable until the keys arrive, and the fetch is retried
// with backoff. httpClient nil means a client with a 5s timeout.
func New(ctx context.Context, cfg config.JWTAuth, log *slog.Logger, httpClient *http.Client) (*Validator, error) {
	if len(cfg.Providers) == 0 {
		return nil, errors.New("jwt: at least one provider is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultFetchTimeout}
	}
	v := &Validator{optional: cfg.Optional, cache: newTokenCache(CacheSize)}
	byPlace := map[string]*tokenSource{}
	seenHeader := map[string]bool{}
	var starts []func(context.Context)
	for i := range cfg.Providers {
		pc := &cfg.Providers[i]
		p, first, err := newProvider(pc, log, httpClient, &v.keyGen)
		if err != nil {
			return nil, fmt.Errorf("jwt provider %q: %w", pc.Name, err)
		}
		ks := p.keys
		starts = append(starts, func(ctx context.Context) { ks.run(ctx, first) })

		place, src := "", &tokenSource{}
		switch {
		case pc.FromCookie != "":
			place, src.cookie = "cookie:"+pc.FromCookie, pc.FromCookie
		default:
			h := pc.FromHeader
			if h == "" {
				h = "Authorization"
			}
			place, src.header, src.bearer = "header:"+strings.ToLower(h), h, strings.EqualFold(h, "Authorization")
		}
		if s, ok := byPlace[place]; ok {
			src = s
		} else {
			byPlace[place] = src
			v.sources = append(v.sources, src)
		}
		src.providers = append(src.providers, p)
		for _, ch := range pc.ClaimsToHeaders {
			if k := strings.ToLower(ch.Header); !seenHeader[k] {
				seenHeader[k] = true
				v.headers = append(v.headers, ch.Header)
			}
		}
	}
	ctx, v.cancel = context.WithCancel(ctx)
	for _, start := range starts {
		v.wg.Go(func() { start(ctx) })
	}
	return v, nil
}

// newProvider checks one provider's config, reads its JWKS file if it has
// one, and returns it with the delay before its first background load.
// keyGen is bumped whenever its key set changes.
func newProvider(pc *config.JWTProvider, log *slog.Logger, client *http.Client, keyGen *atomic.Uint64) (*provider, time.Duration, error) {
	if pc.Issuer == "" {
		return nil, 0, errors.New("issuer is required")
	}
	if len(pc.Algorithms) == 0 {
		return nil, 0, errors.New("list the allowed algorithms")
	}
	for _, a := range pc.Algorithms {
		if _, ok := algorithms[a]; !ok {
			return nil, 0, fmt.Errorf("algorithm %q is not allowed (none and HMAC never are)", a)
		}
	}
	if (pc.JWKSURL == "") == (pc.JWKSFile == "") {
		return nil, 0, errors.New("set exactly one of jwksURL, jwksFile")
	}
	if pc.FromHeader != "" && pc.FromCookie != "" {
		return nil, 0, errors.New("set at most one of fromHeader, fromCookie")
	}
	refresh := pc.JWKSRefresh.D()
	if refresh <= 0 {
		refresh = config.DefaultJWKSRefresh
	}
	skew := pc.ClockSkew.D()
	if skew < 0 {
		skew = 0
	}
	ks := &keySource{
		provider:          pc.Name,
		url:               pc.JWKSURL,
		file:              pc.JWKSFile,
		algs:              pc.Algorithms,
		refresh:           refresh,
		client:            client,
		log:               log,
		kick:              make(chan struct{}, 1),
		earlyRefreshEvery: EarlyRefreshEvery,
		keyGen:            keyGen,
	}
	first := time.Duration(0)
	if ks.file != "" {
		if err := ks.load(context.Background()); err != nil {
			return nil, 0, fmt.Errorf("jwksFile: %w", err)
		}
		first = refresh
	}
	p := &provider{
		name:      pc.Name,
		issuer:    pc.Issuer,
		audiences: pc.Audiences,
		algs:      pc.Algorithms,
		skew:      skew,
		claims:    pc.ClaimsToHeaders,
		keys:      ks,
	}
	return p, first, nil
}

// Ready reports whether every provider has keys loaded (until then its
// tokens fail with ReasonKeysUnavailable).
func (v *Validator) Ready() bool {
	for _, s := range v.sources {
		for _, p := range s.providers {
			if p.keys.current() == nil {
				return false
			}
		}
	}
	return true
}

// Close stops the background refreshes and waits for them to end.
func (v *Validator) Close() {
	v.cancel()
	v.wg.Wait()
}

// ClaimHeaderNames lists every header some provider's ClaimsToHeaders may
// set. A caller removes them from every incoming request (with or without
// a token) so that a client cannot pose as having a claim.
func (v *Validator) ClaimHeaderNames() []string { return slices.Clone(v.headers) }

// Check finds the request's token and validates it at time now. get looks
// up a request header by (case-insensitive) name and cookie a cookie by
// name; either may be nil when the request has none. The sources are
// tried in the order the providers list them, and the first one that
// carries a token decides: that token must be valid.
//
// A token that passed at some time is passed again without verification
// until min(its exp, that time + 1m), at any now from that time on, as
// long as no provider's keys have changed (see the package comment).
// The Headers of the Result are then shared: see Result.
func (v *Validator) Check(get func(name string) (string, bool), cookie func(name string) (string, bool), now time.Time) Result {
	for i, src := range v.sources {
		token, found := src.extract(get, cookie)
		if !found {
			continue
		}
		return v.checkAt(i, src, token, now)
	}
	if v.optional {
		return Result{OK: true, Reason: ReasonMissing}
	}
	return Result{Status: http.StatusUnauthorized, Reason: ReasonMissing, Challenge: ChallengeMissing}
}

// checkAt checks a token found at source i, through the cache.
func (v *Validator) checkAt(i int, src *tokenSource, token string, now time.Time) Result {
	if v.cache == nil || token == "" || len(token) > MaxTokenBytes {
		r, _ := src.check(token, now)
		return r
	}
	key := keyOf(token, i)
	at := now.UnixNano()
	// The generation is read before the keys are: a refresh that stores
	// new keys during the check bumps it after, so what is stored below
	// with the generation read here is not used once the new keys are.
	gen := v.keyGen.Load()
	if e, ok := v.cache.get(key, at, gen); ok {
		return Result{OK: true, Provider: e.provider, Headers: e.headers}
	}
	r, until := src.check(token, now)
	if r.OK && until > at {
		v.cache.put(key, cacheEntry{provider: r.Provider, headers: r.Headers, from: at, until: until, gen: gen})
	}
	return r
}

// extract returns the token at this source. An Authorization header
// whose scheme is not Bearer is not a token (found is false); "Bearer"
// with nothing after it is found, as an empty (invalid) token.
func (s *tokenSource) extract(get, cookie func(string) (string, bool)) (token string, found bool) {
	var val string
	var ok bool
	switch {
	case s.cookie != "":
		if cookie == nil {
			return "", false
		}
		val, ok = cookie(s.cookie)
	default:
		if get == nil {
			return "", false
		}
		val, ok = get(s.header)
	}
	val = strings.TrimSpace(val)
	if !ok || val == "" {
		return "", false
	}
	if !s.bearer {
		return val, true
	}
	const scheme = "Bearer"
	if len(val) < len(scheme) || !strings.EqualFold(val[:len(scheme)], scheme) {
		return "", false
	}
	rest := val[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // another scheme that starts with "Bearer"
	}
	return strings.TrimLeft(rest, " \t"), true
}

func fail(reason string, p *provider) Result {
	r := Result{Status: http.StatusUnauthorized, Reason: reason, Challenge: ChallengeInvalid}
	if p != nil {
		r.Provider = p.name
	}
	return r
}

// peeked is what is read from a token before its signature is checked:
// used only to choose the provider and the key, never trusted.
type peeked struct {
	alg, kid, iss string
	payload       string // the base64url payload segment
}

// peek splits a compact JWS and reads alg and kid from its header and
// iss from its payload.
func peek(token string) (peeked, bool) {
	var pk peeked
	hdr, rest, ok := strings.Cut(token, ".")
	if !ok {
		return pk, false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	// An empty signature (alg none) is let through here so that it is
	// refused as ReasonAlgorithm; verification refuses it anyway.
	if !ok || strings.IndexByte(sig, '.') >= 0 || hdr == "" || payload == "" {
		return pk, false
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if !decodeSegment(hdr, &h) {
		return pk, false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if !decodeSegment(payload, &c) {
		return pk, false
	}
	return peeked{alg: h.Alg, kid: h.Kid, iss: c.Iss, payload: payload}, true
}

// b64 is the encoding of JWS segments: base64url without padding.
var b64 = base64.RawURLEncoding.Strict()

// decodeSegment base64url-decodes (unpadded, as JWS requires) a segment
// and unmarshals the JSON object in it into dst.
func decodeSegment(seg string, dst any) bool {
	var stack [1024]byte
	n := base64.RawURLEncoding.DecodedLen(len(seg))
	buf := stack[:0]
	if n > len(stack) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := b64.Decode(buf, []byte(seg))
	if err != nil {
		return false
	}
	return json.Unmarshal(buf[:m], dst) == nil
}

// check validates a token found at this source. For a valid token it
// also returns until when (unix ns) the result may be reused, 0 if not at
// all.
func (s *tokenSource) check(token string, now time.Time) (Result, int64) {
	if token == "" || len(token) > MaxTokenBytes {
		return fail(ReasonInvalid, nil), 0
	}
	pk, ok := peek(token)
	if !ok {
		return fail(ReasonInvalid, nil), 0
	}
	var first *Result
	for _, p := range s.providers {
		if p.issuer != pk.iss {
			continue
		}
		r, until := p.verify(token, pk, now)
		if r.OK {
			return r, until
		}
		if first == nil {
			first = &r
		}
	}
	if first == nil {
		return fail(ReasonIssuer, nil), 0
	}
	return *first, 0
}

// verify checks a token that names p's issuer with p's keys and rules.
// For a valid token it also returns until when (unix ns) the result may
// be reused (see reuseUntil), 0 if not at all.
func (p *provider) verify(token string, pk peeked, now time.Time) (Result, int64) {
	alg, ok := p.algorithm(pk.alg)
	if !ok {
		return fail(ReasonAlgorithm, p), 0
	}
	set := p.keys.current()
	if set == nil {
		p.keys.requestRefresh()
		return fail(ReasonKeysUnavailable, p), 0
	}
	key, found := set.lookup(pk.kid, pk.alg)
	switch found {
	case keyFound:
	case keyUnknown:
		p.keys.requestRefresh()
		return fail(ReasonUnknownKey, p), 0
	case keyAmbiguous:
		return fail(ReasonUnknownKey, p), 0
	default: // keyMismatch
		return fail(ReasonInvalid, p), 0
	}
	if h := verifyHook; h != nil {
		h()
	}
	// The library checks again that the header's alg is alg and that the
	// key's type fits it, verifies the signature, then validates exp
	// (required), nbf and iat.
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(alg, key.raw),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(p.skew),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	)
	if err != nil {
		if errors.Is(err, jwt.TokenExpiredError()) {
			return fail(ReasonExpired, p), 0
		}
		return fail(ReasonInvalid, p), 0
	}
	if iss, _ := tok.Issuer(); iss != p.issuer {
		return fail(ReasonIssuer, p), 0
	}
	if len(p.audiences) > 0 {
		aud, _ := tok.Audience()
		if !containsAny(aud, p.audiences) {
			return fail(ReasonAudience, p), 0
		}
	}
	r := Result{OK: true, Provider: p.name}
	if len(p.claims) > 0 {
		// Clipped: the slice is shared through the cache, so a caller
		// that appended to it anyway would copy it, not write in it.
		r.Headers = slices.Clip(claimHeaders(pk.payload, p.claims))
	}
	return r, reuseUntil(tok, now)
}

// reuseUntil is until when (unix ns) a valid token's result may be
// reused: min(exp, now + cacheMaxAge), exp without the clock skew; 0
// (never) while its nbf or iat is still ahead of now (it passed thanks to
// the skew). Over [now, until), as long as the keys do not change, every
// provider's verdict on the token is the one it has at now, whatever its
// skew: nbf and iat have passed and stay so, and exp is not reached.
func reuseUntil(tok jwt.Token, now time.Time) int64 {
	if nbf, ok := tok.NotBefore(); ok && nbf.After(now) {
		return 0
	}
	if iat, ok := tok.IssuedAt(); ok && iat.After(now) {
		return 0
	}
	until := now.Add(cacheMaxAge)
	if exp, ok := tok.Expiration(); ok && exp.Before(until) {
		until = exp
	}
	if !until.After(now) {
		return 0
	}
	return until.UnixNano()
}

// algorithm returns the library's value for name if p allows it.
func (p *provider) algorithm(name string) (jwa.SignatureAlgorithm, bool) {
	for _, a := range p.algs {
		if a == name {
			alg, ok := algorithms[a]
			return alg, ok
		}
	}
	return jwa.SignatureAlgorithm{}, false
}

func containsAny(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// claimHeaders reads the claims to copy from the (verified) payload
// segment. Numbers keep their JSON digits when they are integers, so ids
// beyond 2^53 are not rounded.
func claimHeaders(payload string, claims []config.ClaimHeader) [][2]string {
	var m map[string]json.RawMessage
	if !decodeSegment(payload, &m) {
		return nil
	}
	out := make([][2]string, 0, len(claims))
	for _, ch := range claims {
		raw, ok := m[ch.Claim]
		if !ok {
			continue
		}
		if val, ok := claimString(raw); ok {
			out = append(out, [2]string{ch.Header, val})
		}
	}
	return out
}

// claimString renders a string, number or bool claim for a header.
func claimString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil || !headerSafe(s) {
			return "", false
		}
		return s, true
	case c == 't' || c == 'f':
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return "", false
		}
		return strconv.FormatBool(b), true
	case c == '-' || (c >= '0' && c <= '9'):
		s := string(raw)
		if isInteger(s) {
			return s, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return "", false // null, object, array
}

func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// headerSafe refuses control characters (CR and LF above all), which a
// header value must not carry.
func headerSafe(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
