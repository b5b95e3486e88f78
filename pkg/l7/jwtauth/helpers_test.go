package jwtauth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const testIssuer = "https://issuer.example"

// Keys are generated once per test binary (RSA generation is slow).
var (
	keysOnce sync.Once
	rsaA     *rsa.PrivateKey
	rsaB     *rsa.PrivateKey
	ecP256   *ecdsa.PrivateKey
	ecP384   *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil {
				err = e
			}
		}
		rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		ecP256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		ecP384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		if err != nil {
			panic(err)
		}
	})
}

// pubJWK is the public JWK of priv with kid (and alg, if not empty).
func pubJWK(t testing.TB, priv any, kid, alg string) jwk.Key {
	t.Helper()
	k, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	if alg != "" {
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// jwksDoc marshals keys as a JWK set.
func jwksDoc(t testing.TB, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signer signs tokens with one key, alg and kid, through the library.
type signer struct {
	alg  jwa.SignatureAlgorithm
	priv any
	kid  string
}

// claims are a valid token's claims at now, with over applied (a nil
// value removes a claim).
func claims(now time.Time, over map[string]any) map[string]any {
	c := map[string]any{
		jwt.IssuerKey:     testIssuer,
		jwt.SubjectKey:    "user-1",
		jwt.AudienceKey:   []string{"api"},
		jwt.IssuedAtKey:   now.Add(-time.Minute),
		jwt.ExpirationKey: now.Add(time.Hour),
	}
	maps.Copy(c, over)
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
	return c
}

func (s signer) sign(t testing.TB, c map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
		if err := tok.Set(k, v); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	var key any = s.priv
	if s.kid != "" {
		jk, err := jwk.Import(s.priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := jk.Set(jwk.KeyIDKey, s.kid); err != nil {
			t.Fatal(err)
		}
		key = jk
	}
	b, err := jwt.Sign(tok, jwt.WithKey(s.alg, key))
	if err != nil {
		t.Fatalf("sign %s: %v", s.alg, err)
	}
	return string(b)
}

// jwksServer serves a JWKS that tests change, and can be "down" (503).
type jwksServer struct {
	*httptest.Server
	doc  atomic.Pointer[[]byte]
	down atomic.Bool
	hits atomic.Int64
}

func newJWKSServer(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(doc)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte) { s.doc.Store(&doc) }

// provider is a provider config for testIssuer at url, allowing algs.
func providerCfg(url string, algs ...string) config.JWTProvider {
	return config.JWTProvider{
		Name:        "idp",
		Issuer:      testIssuer,
		Audiences:   []string{"api"},
		JWKSURL:     url,
		JWKSRefresh: config.Duration(time.Hour),
		Algorithms:  algs,
		ClockSkew:   config.Duration(30 * time.Second),
		FromHeader:  "Authorization",
	}
}

// newValidator builds a Validator, closes it at the end of the test, and
// waits until every provider has keys (unless wait is false).
func newValidator(t testing.TB, cfg config.JWTAuth, wait bool) *Validator {
	t.Helper()
	v, err := New(t.Context(), cfg, testLogger(t), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	if wait {
		eventually(t, 5*time.Second, "keys loaded", v.Ready)
	}
	return v
}

// testLogger logs to the test log at debug level; logBuf also captures
// every line so tests can check what was (not) logged.
var logBuf = &syncBuffer{}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func eventually(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// headers is a request's headers for Check (case-insensitive names).
type headers map[string]string

func (h headers) get(name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func bearer(tok string) headers { return headers{"Authorization": "Bearer " + tok} }

func check(v *Validator, h headers, now time.Time) Result {
	return v.Check(h.get, nil, now)
}

func wantOK(t testing.TB, r Result) {
	t.Helper()
	if !r.OK || r.Status != 0 || r.Reason != "" {
		t.Fatalf("want OK, got %+v", r)
	}
}

func wantFail(t testing.TB, r Result, reason string) {
	t.Helper()
	if r.OK || r.Status != http.StatusUnauthorized || r.Reason != reason {
		t.Fatalf("want 401 %s, got %+v", reason, r)
	}
	want := ChallengeInvalid
	if reason == ReasonMissing {
		want = ChallengeMissing
	}
	if r.Challenge != want {
		t.Fatalf("challenge %q, want %q", r.Challenge, want)
	}
	if r.Headers != nil {
		t.Fatalf("failed check has headers %v", r.Headers)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	// Write then rename, as a config management tool would, so a reader
	// never sees half a file.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}
