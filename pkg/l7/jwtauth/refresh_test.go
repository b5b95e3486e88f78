package jwtauth

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
)

// TestKeyRotation rotates the issuer's key under traffic: A, then A+B,
// then B. While A is published, A tokens never fail; once B is published
// B tokens pass after a refresh; once A is withdrawn A tokens fail.
func TestKeyRotation(t *testing.T) {
	testKeys(t)
	keyA, keyB := pubJWK(t, rsaA, "A", ""), pubJWK(t, rsaB, "B", "")
	srv := newJWKSServer(t, jwksDoc(t, keyA))
	p := providerCfg(srv.URL, "RS256")
	p.JWKSRefresh = config.Duration(50 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	tokA := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	tokB := signer{jwa.RS256(), rsaB, "B"}.sign(t, claims(now, nil))

	wantOK(t, check(v, bearer(tokA), now))
	wantFail(t, check(v, bearer(tokB), now), ReasonUnknownKey)

	// Traffic with A tokens for as long as A is published.
	var aPublished atomic.Bool
	aPublished.Store(true)
	var wg sync.WaitGroup
	var checked, failed atomic.Int64
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := check(v, bearer(tokA), time.Now())
				checked.Add(1)
				if !r.OK && aPublished.Load() {
					failed.Add(1)
				}
			}
		})
	}

	srv.set(jwksDoc(t, keyA, keyB))
	eventually(t, 5*time.Second, "B tokens to pass", func() bool { return check(v, bearer(tokB), now).OK })
	wantOK(t, check(v, bearer(tokA), now))
	time.Sleep(150 * time.Millisecond) // a few more refreshes with both keys

	aPublished.Store(false)
	srv.set(jwksDoc(t, keyB))
	eventually(t, 5*time.Second, "A tokens to fail", func() bool { return !check(v, bearer(tokA), now).OK })
	close(stop)
	wg.Wait()
	wantFail(t, check(v, bearer(tokA), now), ReasonUnknownKey)
	wantOK(t, check(v, bearer(tokB), now))
	if failed.Load() != 0 {
		t.Fatalf("%d of %d A tokens failed while A was published", failed.Load(), checked.Load())
	}
	t.Logf("%d checks under rotation, %d JWKS fetches", checked.Load(), srv.hits.Load())
}

// TestUnknownKidEarlyRefresh: the issuer publishes B long before the
// scheduled refresh; the first B token fails (and starts a refresh), the
// next ones pass. Unknown kids start at most one refresh per
// EarlyRefreshEvery.
func TestUnknownKidEarlyRefresh(t *testing.T) {
	testKeys(t)
	keyA, keyB := pubJWK(t, rsaA, "A", ""), pubJWK(t, rsaB, "B", "")
	srv := newJWKSServer(t, jwksDoc(t, keyA))
	p := providerCfg(srv.URL, "RS256") // refresh: 1h
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	tokB := signer{jwa.RS256(), rsaB, "B"}.sign(t, claims(now, nil))
	hitsBefore := srv.hits.Load()

	srv.set(jwksDoc(t, keyA, keyB))
	wantFail(t, check(v, bearer(tokB), now), ReasonUnknownKey)
	eventually(t, 5*time.Second, "B tokens to pass", func() bool { return check(v, bearer(tokB), now).OK })
	if n := srv.hits.Load() - hitsBefore; n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}

	// A flood of unknown kids right after: no further fetch.
	for i := range 200 {
		tok := signer{jwa.RS256(), rsaB, fmt.Sprintf("rnd-%d", i)}.sign(t, claims(now, nil))
		wantFail(t, check(v, bearer(tok), now), ReasonUnknownKey)
	}
	time.Sleep(100 * time.Millisecond)
	if n := srv.hits.Load() - hitsBefore; n != 1 {
		t.Fatalf("%d fetches after a flood of unknown kids, want 1", n)
	}
}

// TestEarlyRefreshRateLimit checks requestRefresh's limit with a short
// interval.
func TestEarlyRefreshRateLimit(t *testing.T) {
	s := &keySource{kick: make(chan struct{}, 1), earlyRefreshEvery: 200 * time.Millisecond}
	kicks := 0
	drain := func() {
		select {
		case <-s.kick:
			kicks++
		default:
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.requestRefresh()
			}
		})
	}
	wg.Wait()
	drain()
	if kicks != 1 {
		t.Fatalf("%d kicks, want 1", kicks)
	}
	s.requestRefresh()
	drain()
	if kicks != 1 {
		t.Fatalf("kicked again within the interval")
	}
	time.Sleep(250 * time.Millisecond)
	s.requestRefresh()
	drain()
	if kicks != 2 {
		t.Fatalf("not kicked after the interval")
	}
}

// TestJWKSDownAtStart: New succeeds, requests fail closed with
// jwt_keys_unavailable, and pass once the server comes up.
func TestJWKSDownAtStart(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	srv.down.Store(true)
	p := providerCfg(srv.URL, "RS256")
	p.JWKSRefresh = config.Duration(50 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, false)
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))

	eventually(t, 5*time.Second, "a few failed fetches", func() bool { return srv.hits.Load() >= 3 })
	r := check(v, bearer(tok), now)
	wantFail(t, r, ReasonKeysUnavailable)
	if r.Provider != "idp" || v.Ready() {
		t.Fatalf("%+v, ready %v", r, v.Ready())
	}
	srv.down.Store(false)
	eventually(t, 5*time.Second, "the token to pass", func() bool { return check(v, bearer(tok), now).OK })
	if !v.Ready() {
		t.Fatal("not ready with keys")
	}
}

// TestJWKSDownAtStartConnRefused: nothing listens at the URL at first.
func TestJWKSDownAtStartConnRefused(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	var up atomic.Bool
	p := providerCfg("", "RS256")
	p.JWKSRefresh = config.Duration(50 * time.Millisecond)
	// A transport that refuses to connect until "up" stands in for a
	// server that is not listening yet.
	p.JWKSURL = srv.URL
	client := srv.Client()
	base := client.Transport
	client.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if !up.Load() {
			return nil, fmt.Errorf("dial tcp: connection refused")
		}
		return base.RoundTrip(req)
	})
	v, err := New(t.Context(), config.JWTAuth{Providers: []config.JWTProvider{p}}, testLogger(t), client)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	time.Sleep(150 * time.Millisecond)
	wantFail(t, check(v, bearer(tok), now), ReasonKeysUnavailable)
	up.Store(true)
	eventually(t, 5*time.Second, "the token to pass", func() bool { return check(v, bearer(tok), now).OK })
}

// TestKeepLastGoodKeys: failed refreshes (server errors, bad documents,
// documents without usable keys, oversized documents) keep the keys.
func TestKeepLastGoodKeys(t *testing.T) {
	testKeys(t)
	good := jwksDoc(t, pubJWK(t, rsaA, "A", ""))
	srv := newJWKSServer(t, good)
	p := providerCfg(srv.URL, "RS256")
	p.JWKSRefresh = config.Duration(20 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	wantOK(t, check(v, bearer(tok), now))

	bad := map[string]func(){
		"503":        func() { srv.down.Store(true) },
		"not json":   func() { srv.set([]byte("<html>oops</html>")) },
		"empty set":  func() { srv.set([]byte(`{"keys":[]}`)) },
		"EC only":    func() { srv.set(jwksDoc(t, pubJWK(t, ecP256, "ec", ""))) },
		"over 1 MiB": func() { srv.set([]byte(`{"keys":[],"x":"` + strings.Repeat("a", MaxJWKSBytes) + `"}`)) },
	}
	for name, breakIt := range bad {
		t.Run(name, func(t *testing.T) {
			breakIt()
			h := srv.hits.Load()
			eventually(t, 5*time.Second, "three more fetches", func() bool { return srv.hits.Load() >= h+3 })
			wantOK(t, check(v, bearer(tok), now))
			srv.down.Store(false)
			srv.set(good)
		})
	}
}

// TestJWKSFileReload: a JWKS file is re-read every refresh interval.
func TestJWKSFileReload(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	p := providerCfg("", "RS256")
	p.JWKSURL = ""
	p.JWKSFile = writeFile(t, dir, "jwks.json", jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p.JWKSRefresh = config.Duration(20 * time.Millisecond)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	tokA := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	tokB := signer{jwa.RS256(), rsaB, "B"}.sign(t, claims(now, nil))
	wantOK(t, check(v, bearer(tokA), now))

	writeFile(t, dir, "jwks.json", []byte("garbage"))
	time.Sleep(100 * time.Millisecond)
	wantOK(t, check(v, bearer(tokA), now)) // last good kept

	writeFile(t, dir, "jwks.json", jwksDoc(t, pubJWK(t, rsaB, "B", "")))
	eventually(t, 5*time.Second, "B tokens to pass", func() bool { return check(v, bearer(tokB), now).OK })
	wantFail(t, check(v, bearer(tokA), now), ReasonUnknownKey)
}

// TestCloseStopsRefresh: no fetch happens after Close returns.
func TestCloseStopsRefresh(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p := providerCfg(srv.URL, "RS256")
	p.JWKSRefresh = config.Duration(10 * time.Millisecond)
	v, err := New(t.Context(), config.JWTAuth{Providers: []config.JWTProvider{p}}, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "fetches", func() bool { return srv.hits.Load() >= 3 })
	v.Close()
	n := srv.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if m := srv.hits.Load(); m != n {
		t.Fatalf("%d fetches after Close", m-n)
	}
	v.Close() // twice is fine
}

func TestNextBackoff(t *testing.T) {
	d := time.Duration(0)
	var got []time.Duration
	for range 10 {
		d = nextBackoff(d, 5*time.Minute)
		got = append(got, d)
	}
	if got[0] != time.Second || got[1] != 2*time.Second || got[5] != 32*time.Second || got[6] != time.Minute || got[9] != time.Minute {
		t.Fatalf("backoff %v", got)
	}
	if d := nextBackoff(nextBackoff(0, 50*time.Millisecond), 50*time.Millisecond); d != 50*time.Millisecond {
		t.Fatalf("short refresh backoff %v", d)
	}
	for range 100 {
		if d := jitter(time.Second); d < time.Second || d > 1100*time.Millisecond {
			t.Fatalf("jitter %v", d)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
