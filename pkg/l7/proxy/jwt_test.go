package proxy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// JWT on a route, end to end: the JWKS comes from a real HTTP server,
// tokens from a real signer; claims reach the upstream as headers, and a
// client cannot send those headers itself.
func TestJWTRoute(t *testing.T) {
	priv, jwksURL := jwksFixture(t)
	sign := func(mod func(tok jwt.Token)) string {
		tok, _ := jwt.NewBuilder().Issuer("https://id.test").Subject("alice").Audience([]string{"shop"}).
			IssuedAt(time.Now()).Expiration(time.Now().Add(time.Hour)).Claim("tier", "gold").Build()
		if mod != nil {
			mod(tok)
		}
		key, _ := jwk.Import(priv)
		key.Set(jwk.KeyIDKey, "k1")
		b, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), key))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, backends: [{cluster: c}], jwt: {providers: [{name: id, issuer: "https://id.test", audiences: [shop],
  jwksURL: "%s", algorithms: [RS256], claimsToHeaders: [{claim: sub, header: X-User}, {claim: tier, header: X-Tier}]}]}}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, jwksURL, up.addr()))
	c := client()
	bearer := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-User": "mallory"}
	}
	// The keys arrive in the background: wait until a good token passes.
	var body string
	waitUntil(t, 5*time.Second, func() bool {
		code, _, b, _, _ := call(c, "GET", e.url("/"), bearer(sign(nil)), nil)
		body = b
		return code == 200
	}, "a valid token never passed")
	if !strings.Contains(body, `"X-User":["alice"]`) || !strings.Contains(body, `"X-Tier":["gold"]`) || strings.Contains(body, "mallory") {
		t.Fatalf("upstream saw %s", body)
	}
	for _, tc := range []struct {
		name, reason string
		hdr          map[string]string
	}{
		{"no token", "jwt_missing", map[string]string{"X-User": "mallory"}},
		{"expired", "jwt_expired", bearer(sign(func(tok jwt.Token) { tok.Set(jwt.ExpirationKey, time.Now().Add(-time.Hour)) }))},
		{"wrong audience", "jwt_audience", bearer(sign(func(tok jwt.Token) { tok.Set(jwt.AudienceKey, []string{"other"}) }))},
		{"tampered", "jwt_invalid", bearer(strings.Replace(sign(nil), ".", ".e", 1))},
	} {
		code, _, _, h, _ := call(c, "GET", e.url("/"), tc.hdr, nil)
		if code != 401 || h.Get("Edge-Agent-Reason") != tc.reason || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %q %q", tc.name, code, h.Get("Edge-Agent-Reason"), h.Get("WWW-Authenticate"))
		}
	}
}

// jwksFixture makes an RSA key ("k1") and serves its public half as a
// JWK set from a real HTTP server for the test's life.
func jwksFixture(tb testing.TB) (*rsa.PrivateKey, string) {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	pub, _ := jwk.PublicKeyOf(priv)
	pub.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	set.AddKey(pub)
	doc, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(doc) }))
	tb.Cleanup(srv.Close)
	return priv, srv.URL + "/jwks"
}
