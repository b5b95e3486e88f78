package jwtauth

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// countVerifications counts signature verifications until the test ends.
// Tests that use it must not run in parallel.
func countVerifications(t testing.TB) *atomic.Int64 {
	t.Helper()
	n := &atomic.Int64{}
	verifyHook = func() { n.Add(1) }
	t.Cleanup(func() { verifyHook = nil })
	return n
}

// wantVerified checks that n verifications happened since *last, and
// moves *last on.
func wantVerified(t *testing.T, n *atomic.Int64, last *int64, want int64, what string) {
	t.Helper()
	got := n.Load() - *last
	*last = n.Load()
	if got != want {
		t.Fatalf("%s: %d verifications, want %d", what, got, want)
	}
}

// cacheSetup is a Validator with one RS256 provider (key "A", skew 30s)
// that copies sub to X-User.
func cacheSetup(t *testing.T) (*Validator, *jwksServer) {
	t.Helper()
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p := providerCfg(srv.URL, "RS256")
	p.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-User"}}
	return newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true), srv
}

func TestCacheHit(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))

	first := check(v, bearer(tok), now)
	wantOK(t, first)
	wantVerified(t, n, &last, 1, "first check")
	want := Result{OK: true, Provider: "idp", Headers: [][2]string{{"X-User", "user-1"}}}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("got %+v, want %+v", first, want)
	}
	for i := range 100 {
		r := check(v, bearer(tok), now.Add(time.Duration(i)*100*time.Millisecond))
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("hit %d: got %+v, want %+v", i, r, want)
		}
	}
	wantVerified(t, n, &last, 0, "100 more checks within a minute")
	if got := v.cache.entries(); got != 1 {
		t.Fatalf("%d entries, want 1", got)
	}
	// The same token after the scheme's whitespace is the same token.
	wantOK(t, check(v, headers{"Authorization": "bearer  " + tok + " "}, now))
	wantVerified(t, n, &last, 0, "the token with other whitespace")

	// The headers are shared and clipped, so an append copies them.
	r := check(v, bearer(tok), now)
	if &r.Headers[0] != &first.Headers[0] || cap(r.Headers) != len(r.Headers) {
		t.Fatalf("headers not shared or not clipped: len %d cap %d", len(r.Headers), cap(r.Headers))
	}
}

// TestCacheSources: a token cached at one source is checked afresh at
// another, by that source's providers.
func TestCacheSources(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	pa := providerCfg(srv.URL, "RS256")
	pc := providerCfg(srv.URL, "RS256")
	pc.Name, pc.FromHeader, pc.FromCookie = "cookie", "", "tok"
	pc.Audiences = []string{"web"}
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{pa, pc}}, true)
	n := countVerifications(t)
	var last int64
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil)) // aud api

	if r := check(v, bearer(tok), now); !r.OK || r.Provider != "idp" {
		t.Fatalf("%+v", r)
	}
	wantVerified(t, n, &last, 1, "header")
	for range 2 {
		r := v.Check(headers{}.get, headers{"tok": tok}.get, now)
		wantFail(t, r, ReasonAudience)
		if r.Provider != "cookie" {
			t.Fatalf("%+v", r)
		}
	}
	wantVerified(t, n, &last, 2, "cookie (failures are not cached)")
	wantOK(t, check(v, bearer(tok), now))
	wantVerified(t, n, &last, 0, "header again")
}

func TestCacheExpiry(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now().Truncate(time.Second)
	exp := now.Add(30 * time.Second)
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{jwt.ExpirationKey: exp}))

	wantOK(t, check(v, bearer(tok), now))
	wantOK(t, check(v, bearer(tok), exp.Add(-time.Nanosecond)))
	wantVerified(t, n, &last, 1, "until exp")
	// From exp on the cache is not used; the skew still lets the token
	// pass, each time verified, and it is not cached again.
	wantOK(t, check(v, bearer(tok), exp))
	wantOK(t, check(v, bearer(tok), exp.Add(29*time.Second)))
	wantVerified(t, n, &last, 2, "within the skew")
	if got := v.cache.entries(); got != 0 {
		t.Fatalf("%d entries after exp, want 0", got)
	}
	wantFail(t, check(v, bearer(tok), exp.Add(31*time.Second)), ReasonExpired)

	// Without skew: rejected at exp although it was cached just before.
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p := providerCfg(srv.URL, "RS256")
	p.ClockSkew = 0
	v0 := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	wantOK(t, check(v0, bearer(tok), exp.Add(-time.Second)))
	wantOK(t, check(v0, bearer(tok), exp.Add(-time.Nanosecond)))
	wantFail(t, check(v0, bearer(tok), exp), ReasonExpired)
	wantFail(t, check(v0, bearer(tok), exp.Add(time.Hour)), ReasonExpired)
}

// TestCacheMaxAge: an entry is used for a minute at most, and never by
// a check at a time before the one that stored it.
func TestCacheMaxAge(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil)) // exp: 1h

	wantOK(t, check(v, bearer(tok), now))
	wantOK(t, check(v, bearer(tok), now.Add(cacheMaxAge-time.Nanosecond)))
	wantVerified(t, n, &last, 1, "within the first minute")
	wantOK(t, check(v, bearer(tok), now.Add(cacheMaxAge)))
	wantVerified(t, n, &last, 1, "after a minute")
	wantOK(t, check(v, bearer(tok), now.Add(2*cacheMaxAge-time.Nanosecond)))
	wantVerified(t, n, &last, 0, "within the second minute")
	wantOK(t, check(v, bearer(tok), now.Add(cacheMaxAge-time.Second)))
	wantVerified(t, n, &last, 1, "before the entry was stored")
	// A token that expires within the minute is kept until its exp only
	// (TestCacheExpiry); one checked at exp+skew fails even if cached.
	wantFail(t, check(v, bearer(tok), now.Add(time.Hour+31*time.Second)), ReasonExpired)
}

// TestCacheNotBefore: a token whose nbf or iat is ahead (it passes thanks
// to the skew) is verified every time until that moment.
func TestCacheNotBefore(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now().Truncate(time.Second)
	for _, claim := range []string{jwt.NotBeforeKey, jwt.IssuedAtKey} {
		t.Run(claim, func(t *testing.T) {
			last = n.Load()
			at := now.Add(10 * time.Second)
			tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{claim: at}))
			wantOK(t, check(v, bearer(tok), now))
			wantOK(t, check(v, bearer(tok), at.Add(-time.Second)))
			wantVerified(t, n, &last, 2, "before "+claim)
			wantOK(t, check(v, bearer(tok), at))
			wantOK(t, check(v, bearer(tok), at.Add(time.Second)))
			wantVerified(t, n, &last, 1, "from "+claim+" on")
			wantFail(t, check(v, bearer(tok), now.Add(-time.Minute)), ReasonInvalid)
		})
	}
}

func TestCacheFailuresNotCached(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	forged := signer{jwa.RS256(), rsaB, "A"}.sign(t, claims(now, nil))
	expired := s.sign(t, claims(now, map[string]any{jwt.ExpirationKey: now.Add(-time.Hour)}))
	wrongAud := s.sign(t, claims(now, map[string]any{jwt.AudienceKey: "other"}))
	for range 3 {
		wantFail(t, check(v, bearer(forged), now), ReasonInvalid)
		wantFail(t, check(v, bearer(expired), now), ReasonExpired)
		wantFail(t, check(v, bearer(wrongAud), now), ReasonAudience)
		wantFail(t, check(v, bearer("x.y.z"), now), ReasonInvalid)
	}
	wantVerified(t, n, &last, 9, "failures")
	if got := v.cache.entries(); got != 0 {
		t.Fatalf("%d entries after failures only", got)
	}
}

// TestCacheTampered: any change to a cached token is another token (its
// hash differs), which is verified and fails.
func TestCacheTampered(t *testing.T) {
	v, _ := cacheSetup(t)
	n := countVerifications(t)
	var last int64
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	wantOK(t, check(v, bearer(tok), now))
	wantVerified(t, n, &last, 1, "the token")

	parts := strings.Split(tok, ".")
	pb, _ := json.Marshal(claims(now, map[string]any{jwt.SubjectKey: "admin", jwt.ExpirationKey: now.Add(time.Hour).Unix(), jwt.IssuedAtKey: now.Unix()}))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	// flip changes the top bit of the 6 a base64url character stands for:
	// the last character's low bits may be padding, which decoders ignore.
	flip := func(s string, i int) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		b := []byte(s)
		b[i] = alphabet[strings.IndexByte(alphabet, b[i])^32]
		return string(b)
	}
	variants := map[string]string{
		"payload replaced": parts[0] + "." + base64.RawURLEncoding.EncodeToString(pb) + "." + parts[2],
		"signature bit":    parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig),
		"last char":        flip(tok, len(tok)-1),
		"payload char":     flip(tok, len(parts[0])+5),
		"trailing data":    tok + "A",
	}
	for name, bad := range variants {
		if keyOf(bad, 0) == keyOf(tok, 0) {
			t.Fatalf("%s: same key", name)
		}
		for range 2 {
			r := check(v, bearer(bad), now)
			if r.OK {
				t.Fatalf("%s passed", name)
			}
		}
	}
	if got := n.Load() - last; got < 2 {
		t.Fatalf("%d verifications of tampered tokens", got)
	}
	last = n.Load()
	wantOK(t, check(v, bearer(tok), now))
	wantVerified(t, n, &last, 0, "the token again")
}

// TestCacheKeyChange: a refresh that changes the key set makes every
// cached token be verified again (so a withdrawn key's tokens fail at the
// next refresh, not a minute later); a refresh that brings the same keys
// does not.
func TestCacheKeyChange(t *testing.T) {
	testKeys(t)
	keyA, keyB := pubJWK(t, rsaA, "A", ""), pubJWK(t, rsaB, "B", "")
	srv := newJWKSServer(t, jwksDoc(t, keyA))
	p := providerCfg(srv.URL, "RS256")
	p.JWKSRefresh = config.Duration(20 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	keys := v.sources[0].providers[0].keys
	loaded := func(kids string) func() bool {
		return func() bool { return keys.current().kids() == kids }
	}
	n := countVerifications(t)
	var last int64
	now := time.Now() // fixed: entries never expire by time here
	tokA := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	tokB := signer{jwa.RS256(), rsaB, "B"}.sign(t, claims(now, nil))

	wantOK(t, check(v, bearer(tokA), now))
	wantVerified(t, n, &last, 1, "A")
	gen := v.keyGen.Load()
	h := srv.hits.Load()
	eventually(t, 5*time.Second, "three refreshes", func() bool { return srv.hits.Load() >= h+3 })
	wantOK(t, check(v, bearer(tokA), now))
	wantVerified(t, n, &last, 0, "A after refreshes of the same set")
	if v.keyGen.Load() != gen {
		t.Fatal("the generation moved without a change")
	}

	// B added: A is verified once more, and still passes.
	srv.set(jwksDoc(t, keyA, keyB))
	eventually(t, 5*time.Second, "A and B", loaded("A,B"))
	wantOK(t, check(v, bearer(tokA), now))
	wantOK(t, check(v, bearer(tokA), now))
	wantVerified(t, n, &last, 1, "A after B was added")
	wantOK(t, check(v, bearer(tokB), now))

	// A withdrawn: its cached tokens fail as soon as the set is loaded.
	srv.set(jwksDoc(t, keyB))
	eventually(t, 5*time.Second, "B alone", loaded("B"))
	wantFail(t, check(v, bearer(tokA), now), ReasonUnknownKey)
	wantOK(t, check(v, bearer(tokB), now))

	// The same kid with another key is a change too.
	gen = v.keyGen.Load()
	srv.set(jwksDoc(t, pubJWK(t, rsaA, "B", "")))
	eventually(t, 5*time.Second, "A's key as B", func() bool { return keys.current().all[0].raw.(*rsa.PublicKey).Equal(&rsaA.PublicKey) })
	wantFail(t, check(v, bearer(tokB), now), ReasonInvalid)
	if v.keyGen.Load() == gen {
		t.Fatal("the generation did not move")
	}
}

func TestKeySetEqual(t *testing.T) {
	testKeys(t)
	parse := func(doc []byte) *keySet {
		t.Helper()
		s, _, err := parseKeySet(doc, allAlgs)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, ec := pubJWK(t, rsaA, "A", ""), pubJWK(t, rsaB, "B", ""), pubJWK(t, ecP256, "ec", "")
	base := parse(jwksDoc(t, a, b, ec))
	if !base.equal(parse(jwksDoc(t, a, b, ec))) {
		t.Fatal("the same document parsed twice differs")
	}
	for name, doc := range map[string][]byte{
		"key removed":   jwksDoc(t, a, b),
		"key added":     jwksDoc(t, a, b, ec, pubJWK(t, edKey, "ed", "")),
		"other order":   jwksDoc(t, b, a, ec),
		"kid changed":   jwksDoc(t, pubJWK(t, rsaA, "A2", ""), b, ec),
		"key under kid": jwksDoc(t, pubJWK(t, rsaB, "A", ""), b, ec),
		"alg set":       jwksDoc(t, pubJWK(t, rsaA, "A", "RS256"), b, ec),
		"curve key":     jwksDoc(t, a, b, pubJWK(t, ecP384, "ec", "")),
	} {
		if base.equal(parse(doc)) {
			t.Errorf("%s: equal", name)
		}
	}
}

// TestCacheSameResults: with the cache, Check answers what it answers
// without, for tokens near their exp, nbf and iat, at times going back
// and forth, and with two providers of one issuer whose skews differ (the
// first fails tokens the second passes, until their nbf).
func TestCacheSameResults(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, edKey, "ed", "")))
	strict := providerCfg(srv.URL, "EdDSA")
	strict.Name, strict.ClockSkew = "strict", 0
	strict.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-Strict"}}
	lax := providerCfg(srv.URL, "EdDSA")
	lax.Name = "lax"
	lax.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-Lax"}}
	cfg := config.JWTAuth{Providers: []config.JWTProvider{strict, lax}}
	cached := newValidator(t, cfg, true)
	plain := newValidator(t, cfg, true)
	plain.cache = nil

	t0 := time.Now().Truncate(time.Second)
	s := signer{jwa.EdDSA(), edKey, "ed"}
	var toks []string
	for _, c := range []map[string]any{
		nil,
		{jwt.ExpirationKey: t0.Add(20 * time.Second)},
		{jwt.ExpirationKey: t0.Add(90 * time.Second)},
		{jwt.NotBeforeKey: t0.Add(10 * time.Second)},
		{jwt.IssuedAtKey: t0.Add(15 * time.Second)},
		{jwt.NotBeforeKey: t0.Add(-10 * time.Second), jwt.ExpirationKey: t0.Add(45 * time.Second)},
		{jwt.AudienceKey: "other"},
	} {
		toks = append(toks, s.sign(t, claims(t0, c)))
	}
	var steps []time.Duration
	for d := -40 * time.Second; d <= 150*time.Second; d += 5 * time.Second {
		steps = append(steps, d)
	}
	for i := len(steps) - 1; i >= 0; i -= 3 { // and back
		steps = append(steps, steps[i]+time.Second)
	}
	for _, d := range steps {
		now := t0.Add(d)
		for i, tok := range toks {
			got, want := check(cached, bearer(tok), now), check(plain, bearer(tok), now)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("token %d at t0%+v: cached %+v, uncached %+v", i, d, got, want)
			}
		}
	}
}

// TestCacheConcurrent: valid and invalid tokens checked from many
// goroutines while the key set changes (A is always in it). Run with
// -race.
func TestCacheConcurrent(t *testing.T) {
	testKeys(t)
	keyA, keyB := pubJWK(t, rsaA, "A", ""), pubJWK(t, ecP256, "ec", "")
	srv := newJWKSServer(t, jwksDoc(t, keyA))
	p := providerCfg(srv.URL, "RS256", "ES256")
	p.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-User"}}
	p.JWKSRefresh = config.Duration(5 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	v.cache = newTokenCache(4 * cacheShards) // small: evictions too
	now := time.Now()
	type tc struct {
		tok  string
		user string // "" for a token that must fail
	}
	var toks []tc
	for i := range 12 {
		user := fmt.Sprintf("user-%d", i)
		toks = append(toks, tc{signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{jwt.SubjectKey: user})), user})
	}
	toks = append(toks,
		tc{signer{jwa.RS256(), rsaB, "A"}.sign(t, claims(now, nil)), ""},
		tc{toks[0].tok + "x", ""},
		tc{signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{jwt.ExpirationKey: now.Add(-time.Hour)})), ""},
	)

	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(7 * time.Millisecond):
			}
			if i%2 == 0 {
				srv.set(jwksDoc(t, keyA, keyB))
			} else {
				srv.set(jwksDoc(t, keyA))
			}
		}
	})
	var wg sync.WaitGroup
	var bad atomic.Int64
	var errs sync.Map
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				c := toks[(g+i)%len(toks)]
				r := check(v, bearer(c.tok), now.Add(time.Duration(i)*time.Second))
				switch {
				case c.user == "" && r.OK,
					c.user != "" && (!r.OK || len(r.Headers) != 1 || r.Headers[0] != [2]string{"X-User", c.user}):
					bad.Add(1)
					errs.Store(fmt.Sprintf("%s: %+v", c.user, r), true)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flips.Wait()
	if bad.Load() != 0 {
		errs.Range(func(k, _ any) bool { t.Log(k); return true })
		t.Fatalf("%d wrong results", bad.Load())
	}
	if got, max := v.cache.entries(), 4*cacheShards; got > max {
		t.Fatalf("%d entries, bound %d", got, max)
	}
	t.Logf("key generation %d", v.keyGen.Load())
}

// TestCacheBound: the cache never holds more than its size, whatever is
// put in it; a full shard evicts a stale entry when it finds one.
func TestCacheBound(t *testing.T) {
	c := newTokenCache(CacheSize)
	key := func(i int) cacheKey { return keyOf(fmt.Sprint("token-", i), 0) }
	for i := range 3 * CacheSize {
		c.put(key(i), cacheEntry{provider: "p", from: 0, until: 100, gen: 1})
		if i%512 == 0 && c.entries() > CacheSize {
			t.Fatalf("%d entries after %d puts", c.entries(), i+1)
		}
	}
	if got := c.entries(); got > CacheSize || got < CacheSize*9/10 {
		t.Fatalf("%d entries, want at most %d (and about that many)", got, CacheSize)
	}
	last := key(3*CacheSize - 1)
	if _, ok := c.get(last, 50, 1); !ok {
		t.Fatal("the last entry put is missing")
	}

	// One shard of 4 entries: 2 stale (expired, old generation) and 2
	// fresh; two puts evict the stale ones.
	small := newTokenCache(4 * cacheShards)
	var inShard []cacheKey
	for i := 0; len(inShard) < 6; i++ {
		if k := key(i); small.shard(k) == &small.shards[0] {
			inShard = append(inShard, k)
		}
	}
	small.put(inShard[0], cacheEntry{from: 0, until: 10, gen: 2})  // expired at 20
	small.put(inShard[1], cacheEntry{from: 0, until: 100, gen: 1}) // old generation
	small.put(inShard[2], cacheEntry{from: 0, until: 100, gen: 2})
	small.put(inShard[3], cacheEntry{from: 0, until: 100, gen: 2})
	small.put(inShard[4], cacheEntry{from: 20, until: 100, gen: 2})
	small.put(inShard[5], cacheEntry{from: 20, until: 100, gen: 2})
	for i, k := range inShard {
		_, ok := small.get(k, 30, 2)
		if want := i >= 2; ok != want {
			t.Fatalf("entry %d present %v, want %v", i, ok, want)
		}
	}

	// End to end, with valid tokens.
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, edKey, "ed", "")))
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "EdDSA")}}, true)
	v.cache = newTokenCache(4 * cacheShards)
	now := time.Now()
	for i := range 300 {
		tok := signer{jwa.EdDSA(), edKey, "ed"}.sign(t, claims(now, map[string]any{"n": i}))
		wantOK(t, check(v, bearer(tok), now))
		wantOK(t, check(v, bearer(tok), now))
	}
	if got := v.cache.entries(); got > 4*cacheShards {
		t.Fatalf("%d entries, bound %d", got, 4*cacheShards)
	}
}

// TestCacheHitAllocs: a hit allocates nothing.
func TestCacheHitAllocs(t *testing.T) {
	v, _ := cacheSetup(t)
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	auth := "Bearer " + tok
	get := func(string) (string, bool) { return auth, true }
	wantOK(t, v.Check(get, nil, now))
	if a := testing.AllocsPerRun(100, func() {
		if !v.Check(get, nil, now).OK {
			t.Fatal("not OK")
		}
	}); a != 0 {
		t.Fatalf("%v allocations per hit", a)
	}
}
