package jwtauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// allAlgs is every algorithm a provider may allow.
var allAlgs = config.JWTAlgorithms

// stdSetup serves a JWKS with RSA key "A", P-256 key "ec", P-384 key
// "ec384" and Ed25519 key "ed", and returns a Validator for it allowing
// algs.
func stdSetup(t *testing.T, algs ...string) (*Validator, *jwksServer) {
	t.Helper()
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t,
		pubJWK(t, rsaA, "A", ""),
		pubJWK(t, ecP256, "ec", ""),
		pubJWK(t, ecP384, "ec384", ""),
		pubJWK(t, edKey, "ed", ""),
	))
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, algs...)}}, true)
	return v, srv
}

func TestValidTokens(t *testing.T) {
	v, _ := stdSetup(t, allAlgs...)
	now := time.Now()
	for _, s := range []signer{
		{jwa.RS256(), rsaA, "A"},
		{jwa.RS384(), rsaA, "A"},
		{jwa.RS512(), rsaA, "A"},
		{jwa.PS256(), rsaA, "A"},
		{jwa.ES256(), ecP256, "ec"},
		{jwa.ES384(), ecP384, "ec384"},
		{jwa.EdDSA(), edKey, "ed"},
	} {
		t.Run(s.alg.String(), func(t *testing.T) {
			r := check(v, bearer(s.sign(t, claims(now, nil))), now)
			wantOK(t, r)
			if r.Provider != "idp" {
				t.Fatalf("provider %q", r.Provider)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	v, _ := stdSetup(t, "RS256")
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	t.Run("beyond skew", func(t *testing.T) {
		wantFail(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.ExpirationKey: now.Add(-31 * time.Second)}))), now), ReasonExpired)
	})
	t.Run("within skew", func(t *testing.T) {
		wantOK(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.ExpirationKey: now.Add(-20 * time.Second)}))), now))
	})
	t.Run("checked against the now given", func(t *testing.T) {
		tok := s.sign(t, claims(now, nil))
		wantOK(t, check(v, bearer(tok), now.Add(59*time.Minute)))
		wantFail(t, check(v, bearer(tok), now.Add(61*time.Minute)), ReasonExpired)
	})
	t.Run("exp required", func(t *testing.T) {
		wantFail(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.ExpirationKey: nil}))), now), ReasonInvalid)
	})
	t.Run("nbf in the future", func(t *testing.T) {
		wantFail(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.NotBeforeKey: now.Add(2 * time.Minute)}))), now), ReasonInvalid)
	})
	t.Run("nbf within skew", func(t *testing.T) {
		wantOK(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.NotBeforeKey: now.Add(20 * time.Second)}))), now))
	})
	t.Run("iat in the future", func(t *testing.T) {
		wantFail(t, check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.IssuedAtKey: now.Add(2 * time.Minute)}))), now), ReasonInvalid)
	})
}

func TestAudience(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p := providerCfg(srv.URL, "RS256")
	p.Audiences = []string{"api", "admin"}
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	for _, tc := range []struct {
		aud  any
		want string
	}{
		{[]string{"api"}, ""},
		{"admin", ""},
		{[]string{"other", "admin"}, ""},
		{[]string{"other"}, ReasonAudience},
		{"apis", ReasonAudience},
		{nil, ReasonAudience},
	} {
		r := check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.AudienceKey: tc.aud}))), now)
		if tc.want == "" {
			wantOK(t, r)
		} else {
			wantFail(t, r, tc.want)
			if r.Provider != "idp" {
				t.Fatalf("provider %q", r.Provider)
			}
		}
	}

	// Without audiences configured, aud is not checked.
	p.Audiences = nil
	v2 := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	wantOK(t, check(v2, bearer(s.sign(t, claims(now, map[string]any{jwt.AudienceKey: nil}))), now))
	wantOK(t, check(v2, bearer(s.sign(t, claims(now, map[string]any{jwt.AudienceKey: "x"}))), now))
}

func TestIssuer(t *testing.T) {
	v, _ := stdSetup(t, "RS256")
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	for _, iss := range []any{"https://evil.example", testIssuer + "/", nil} {
		r := check(v, bearer(s.sign(t, claims(now, map[string]any{jwt.IssuerKey: iss}))), now)
		wantFail(t, r, ReasonIssuer)
		if r.Provider != "" {
			t.Fatalf("provider %q for an unknown issuer", r.Provider)
		}
	}
}

func TestAlgorithmNotAllowed(t *testing.T) {
	v, _ := stdSetup(t, "RS256")
	now := time.Now()
	// PS256 with the right RSA key: the key would verify it, the
	// provider does not allow it.
	wantFail(t, check(v, bearer(signer{jwa.PS256(), rsaA, "A"}.sign(t, claims(now, nil))), now), ReasonAlgorithm)
	wantFail(t, check(v, bearer(signer{jwa.ES256(), ecP256, "ec"}.sign(t, claims(now, nil))), now), ReasonAlgorithm)
}

// rawToken builds a compact JWS from a header, claims and signature by
// hand, for tokens the library will not make.
func rawToken(t *testing.T, header map[string]any, c map[string]any, sign func(input string) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	cc := map[string]any{}
	for k, v := range c {
		if tm, ok := v.(time.Time); ok {
			v = tm.Unix()
		}
		cc[k] = v
	}
	input := enc(header) + "." + enc(cc)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(input))
}

func TestAlgNone(t *testing.T) {
	v, _ := stdSetup(t, allAlgs...)
	now := time.Now()
	for _, alg := range []string{"none", "None", "NONE", ""} {
		for _, sig := range [][]byte{nil, []byte("x")} {
			tok := rawToken(t, map[string]any{"alg": alg, "kid": "A", "typ": "JWT"}, claims(now, nil), func(string) []byte { return sig })
			wantFail(t, check(v, bearer(tok), now), ReasonAlgorithm)
		}
	}
	// No alg at all.
	tok := rawToken(t, map[string]any{"kid": "A"}, claims(now, nil), func(string) []byte { return nil })
	wantFail(t, check(v, bearer(tok), now), ReasonAlgorithm)
}

// TestHMACForgedWithPublicKey is the classic algorithm confusion attack:
// the attacker signs HS256 with the issuer's public key (which is public)
// as the HMAC secret and hopes the verifier uses the RSA key as a secret.
func TestHMACForgedWithPublicKey(t *testing.T) {
	v, _ := stdSetup(t, allAlgs...) // every algorithm a provider may allow
	testKeys(t)
	now := time.Now()
	pub := &rsaA.PublicKey
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	jwkJSON, err := json.Marshal(pubJWK(t, rsaA, "A", ""))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PKIX PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PKCS1 PEM": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1}),
		"PKIX DER":  pkix,
		"PKCS1 DER": pkcs1,
		"JWK JSON":  jwkJSON,
		"modulus":   pub.N.Bytes(),
	}
	for name, secret := range secrets {
		for _, alg := range []jwa.SignatureAlgorithm{jwa.HS256(), jwa.HS384(), jwa.HS512()} {
			for _, kid := range []string{"A", ""} {
				t.Run(fmt.Sprintf("%s/%s/kid=%q", name, alg, kid), func(t *testing.T) {
					tok := signer{alg, secret, kid}.sign(t, claims(now, nil))
					wantFail(t, check(v, bearer(tok), now), ReasonAlgorithm)
				})
			}
		}
	}
	// The same forgery presented as RS256 (header says RS256, signature
	// is an HMAC) is just a bad signature.
	tok := rawToken(t, map[string]any{"alg": "RS256", "kid": "A"}, claims(now, nil), func(in string) []byte {
		m := hmac.New(sha256.New, secrets["PKIX PEM"])
		m.Write([]byte(in))
		return m.Sum(nil)
	})
	wantFail(t, check(v, bearer(tok), now), ReasonInvalid)
}

// TestKeyTypeMustMatchAlgorithm: below the allow list, a key only ever
// verifies algorithms of its own type.
func TestKeyTypeMustMatchAlgorithm(t *testing.T) {
	testKeys(t)
	cases := []struct {
		key  any
		algs string // algorithms it fits
	}{
		{&rsaA.PublicKey, "RS256 RS384 RS512 PS256 PS384 PS512"},
		{&ecP256.PublicKey, "ES256"},
		{&ecP384.PublicKey, "ES384"},
		{edKey.Public(), "EdDSA"},
		{[]byte("secret"), ""},
	}
	for _, c := range cases {
		for _, alg := range slices.Concat(allAlgs, []string{"HS256", "HS384", "HS512", "none", "", "ES256K", "Ed25519"}) {
			want := strings.Contains(" "+c.algs+" ", " "+alg+" ") && alg != ""
			if got := keyFitsAlg(c.key, alg); got != want {
				t.Errorf("keyFitsAlg(%T, %q) = %v, want %v", c.key, alg, got, want)
			}
		}
	}

	// Even a provider whose list named HMAC (New refuses that) would not
	// map it to an algorithm.
	p := &provider{algs: []string{"HS256", "none", "RS256"}}
	for _, a := range []string{"HS256", "none"} {
		if _, ok := p.algorithm(a); ok {
			t.Fatalf("%s maps to an algorithm", a)
		}
	}
	// And the library, given an RSA public key for HS256, refuses too.
	pkix, _ := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	forged := signer{jwa.HS256(), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), "A"}.sign(t, claims(time.Now(), nil))
	if _, err := jwt.Parse([]byte(forged), jwt.WithKey(jwa.HS256(), &rsaA.PublicKey)); err == nil {
		t.Fatal("the library verified HS256 with an RSA public key")
	}

	// End to end: an ES256 token whose kid names the RSA key.
	v, _ := stdSetup(t, "RS256", "ES256")
	now := time.Now()
	wantFail(t, check(v, bearer(signer{jwa.ES256(), ecP256, "A"}.sign(t, claims(now, nil))), now), ReasonInvalid)
	// A JWK that names its algorithm is used for that one only.
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "RS256")))
	v2 := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256", "PS256")}}, true)
	wantOK(t, check(v2, bearer(signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))), now))
	wantFail(t, check(v2, bearer(signer{jwa.PS256(), rsaA, "A"}.sign(t, claims(now, nil))), now), ReasonInvalid)
}

func TestTampered(t *testing.T) {
	v, _ := stdSetup(t, "RS256", "ES256")
	now := time.Now()
	for _, s := range []signer{{jwa.RS256(), rsaA, "A"}, {jwa.ES256(), ecP256, "ec"}} {
		tok := s.sign(t, claims(now, nil))
		wantOK(t, check(v, bearer(tok), now))
		parts := strings.Split(tok, ".")

		// Payload replaced (sub changed), signature kept.
		forged := claims(now, map[string]any{jwt.SubjectKey: "admin"})
		pb, _ := json.Marshal(map[string]any{"iss": forged["iss"], "sub": "admin", "aud": forged["aud"],
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
		wantFail(t, check(v, bearer(parts[0]+"."+base64.RawURLEncoding.EncodeToString(pb)+"."+parts[2]), now), ReasonInvalid)

		// One signature byte flipped.
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[len(sig)/2] ^= 1
		wantFail(t, check(v, bearer(parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig)), now), ReasonInvalid)

		// Signature of another token.
		other := strings.Split(s.sign(t, claims(now, map[string]any{"x": 1})), ".")
		wantFail(t, check(v, bearer(parts[0]+"."+parts[1]+"."+other[2]), now), ReasonInvalid)

		// Structure.
		for _, bad := range []string{parts[0] + "." + parts[1], tok + ".x", "a.b.c", "..", "x", parts[0] + "=." + parts[1] + "." + parts[2]} {
			wantFail(t, check(v, bearer(bad), now), ReasonInvalid)
		}
	}
}

func TestTokenTooLarge(t *testing.T) {
	v, _ := stdSetup(t, "RS256")
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	tok := s.sign(t, claims(now, map[string]any{"pad": strings.Repeat("x", 5000)}))
	if len(tok) > MaxTokenBytes {
		t.Fatalf("test token is %d bytes", len(tok))
	}
	wantOK(t, check(v, bearer(tok), now))
	tok = s.sign(t, claims(now, map[string]any{"pad": strings.Repeat("x", 7000)}))
	if len(tok) <= MaxTokenBytes {
		t.Fatalf("test token is %d bytes", len(tok))
	}
	wantFail(t, check(v, bearer(tok), now), ReasonInvalid)
}

func TestTokenSources(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))

	t.Run("authorization", func(t *testing.T) {
		v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256")}}, true)
		wantFail(t, check(v, headers{}, now), ReasonMissing)
		wantFail(t, v.Check(nil, nil, now), ReasonMissing)
		wantFail(t, check(v, headers{"Authorization": "Basic dXNlcjpwYXNz"}, now), ReasonMissing)
		wantFail(t, check(v, headers{"Authorization": "Bearertoken " + tok}, now), ReasonMissing)
		wantFail(t, check(v, headers{"Authorization": ""}, now), ReasonMissing)
		wantFail(t, check(v, headers{"Authorization": "Bearer"}, now), ReasonInvalid)
		wantFail(t, check(v, headers{"Authorization": "Bearer   "}, now), ReasonInvalid)
		wantOK(t, check(v, headers{"authorization": "bearer " + tok}, now))
		wantOK(t, check(v, headers{"Authorization": "BEARER  " + tok + " "}, now))
		// A token in a cookie is not looked at.
		wantFail(t, v.Check(headers{}.get, headers{"Authorization": tok}.get, now), ReasonMissing)
	})
	t.Run("optional", func(t *testing.T) {
		v := newValidator(t, config.JWTAuth{Optional: true, Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256")}}, true)
		r := check(v, headers{}, now)
		if !r.OK || r.Reason != ReasonMissing || r.Provider != "" || r.Status != 0 {
			t.Fatalf("optional without token: %+v", r)
		}
		wantOK(t, check(v, bearer(tok), now))
		// A token that is present must be valid.
		wantFail(t, check(v, bearer(tok[:len(tok)-4]), now), ReasonInvalid)
	})
	t.Run("cookie", func(t *testing.T) {
		p := providerCfg(srv.URL, "RS256")
		p.FromHeader, p.FromCookie = "", "session"
		v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
		wantOK(t, v.Check(headers{}.get, headers{"session": tok}.get, now))
		wantFail(t, v.Check(bearer(tok).get, headers{"other": tok}.get, now), ReasonMissing)
		wantFail(t, v.Check(bearer(tok).get, nil, now), ReasonMissing)
		wantFail(t, v.Check(nil, headers{"session": "garbage"}.get, now), ReasonInvalid)
	})
	t.Run("other header", func(t *testing.T) {
		p := providerCfg(srv.URL, "RS256")
		p.FromHeader = "X-Token"
		v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
		wantOK(t, check(v, headers{"x-token": tok}, now))
		wantFail(t, check(v, headers{"X-Token": "Bearer " + tok}, now), ReasonInvalid)
		wantFail(t, check(v, bearer(tok), now), ReasonMissing)
	})
}

func TestMultipleProviders(t *testing.T) {
	testKeys(t)
	srvA := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	srvB := newJWKSServer(t, jwksDoc(t, pubJWK(t, ecP256, "B", "")))
	pa := providerCfg(srvA.URL, "RS256")
	pb := providerCfg(srvB.URL, "ES256")
	pb.Name, pb.Issuer = "other", "https://other.example"
	pb.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-Sub"}}
	// A third provider on a cookie, with the first issuer.
	pc := providerCfg(srvA.URL, "RS256")
	pc.Name, pc.FromHeader, pc.FromCookie = "cookie", "", "tok"
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{pa, pb, pc}}, true)
	now := time.Now()

	tokA := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))
	tokB := signer{jwa.ES256(), ecP256, "B"}.sign(t, claims(now, map[string]any{jwt.IssuerKey: "https://other.example"}))
	r := check(v, bearer(tokA), now)
	wantOK(t, r)
	if r.Provider != "idp" || len(r.Headers) != 0 {
		t.Fatalf("%+v", r)
	}
	r = check(v, bearer(tokB), now)
	wantOK(t, r)
	if r.Provider != "other" || len(r.Headers) != 1 || r.Headers[0] != [2]string{"X-Sub", "user-1"} {
		t.Fatalf("%+v", r)
	}
	// Each provider uses its own keys and algorithms: a token naming
	// issuer B signed with A's key and algorithm fails.
	forged := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{jwt.IssuerKey: "https://other.example"}))
	r = check(v, bearer(forged), now)
	wantFail(t, r, ReasonAlgorithm) // B allows ES256 only
	if r.Provider != "other" {
		t.Fatalf("%+v", r)
	}
	forged = signer{jwa.ES256(), ecP256, "A"}.sign(t, claims(now, nil))
	wantFail(t, check(v, bearer(forged), now), ReasonAlgorithm) // A allows RS256 only
	forged = signer{jwa.ES256(), ecP256, "A"}.sign(t, claims(now, map[string]any{jwt.IssuerKey: "https://other.example"}))
	wantFail(t, check(v, bearer(forged), now), ReasonUnknownKey) // B has no kid A
	r = v.Check(headers{}.get, headers{"tok": tokA}.get, now)
	wantOK(t, r)
	if r.Provider != "cookie" {
		t.Fatalf("%+v", r)
	}
	// The header comes first: a bad bearer token is not rescued by a
	// good cookie.
	wantFail(t, v.Check(bearer("x.y.z").get, headers{"tok": tokA}.get, now), ReasonInvalid)

	names := v.ClaimHeaderNames()
	if len(names) != 1 || names[0] != "X-Sub" {
		t.Fatalf("ClaimHeaderNames = %v", names)
	}
}

func TestSameIssuerTwoProviders(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p1 := providerCfg(srv.URL, "RS256")
	p1.Name, p1.Audiences = "web", []string{"web"}
	p2 := providerCfg(srv.URL, "RS256")
	p2.Name, p2.Audiences = "mobile", []string{"mobile"}
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p1, p2}}, true)
	now := time.Now()
	s := signer{jwa.RS256(), rsaA, "A"}
	if r := check(v, bearer(s.sign(t, claims(now, map[string]any{"aud": "mobile"}))), now); !r.OK || r.Provider != "mobile" {
		t.Fatalf("%+v", r)
	}
	if r := check(v, bearer(s.sign(t, claims(now, map[string]any{"aud": "web"}))), now); !r.OK || r.Provider != "web" {
		t.Fatalf("%+v", r)
	}
	r := check(v, bearer(s.sign(t, claims(now, map[string]any{"aud": "tv"}))), now)
	wantFail(t, r, ReasonAudience)
	if r.Provider != "web" {
		t.Fatalf("%+v", r)
	}
}

func TestClaimsToHeaders(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	p := providerCfg(srv.URL, "RS256")
	p.ClaimsToHeaders = []config.ClaimHeader{
		{Claim: "sub", Header: "X-User"},
		{Claim: "n", Header: "X-N"},
		{Claim: "big", Header: "X-Big"},
		{Claim: "neg", Header: "X-Neg"},
		{Claim: "f", Header: "X-F"},
		{Claim: "exp1", Header: "X-Exp1"},
		{Claim: "admin", Header: "X-Admin"},
		{Claim: "off", Header: "X-Off"},
		{Claim: "obj", Header: "X-Obj"},
		{Claim: "arr", Header: "X-Arr"},
		{Claim: "null", Header: "X-Null"},
		{Claim: "crlf", Header: "X-Crlf"},
		{Claim: "absent", Header: "X-Absent"},
		{Claim: "exp", Header: "X-Exp"},
		{Claim: "email", Header: "X-Email"},
	}
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Unix(1_800_000_000, 0)
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{
		"n":     42,
		"big":   json.Number("12345678901234567890"),
		"neg":   -7,
		"f":     1.5,
		"exp1":  json.Number("1e3"),
		"admin": true,
		"off":   false,
		"obj":   map[string]any{"a": 1},
		"arr":   []any{"a"},
		"null":  json.RawMessage("null"),
		"crlf":  "a\r\nX-Injected: 1",
		"email": "ünïcode@example.com",
	}))
	r := check(v, bearer(tok), now)
	wantOK(t, r)
	want := [][2]string{
		{"X-User", "user-1"},
		{"X-N", "42"},
		{"X-Big", "12345678901234567890"},
		{"X-Neg", "-7"},
		{"X-F", "1.5"},
		{"X-Exp1", "1000"},
		{"X-Admin", "true"},
		{"X-Off", "false"},
		{"X-Exp", "1800003600"},
		{"X-Email", "ünïcode@example.com"},
	}
	if fmt.Sprint(r.Headers) != fmt.Sprint(want) {
		t.Fatalf("headers\n got %v\nwant %v", r.Headers, want)
	}
}

func TestNoKid(t *testing.T) {
	testKeys(t)
	now := time.Now()
	tok := signer{jwa.RS256(), rsaA, ""}.sign(t, claims(now, nil))
	// One RSA key (and an EC key, which does not count for RS256).
	srv := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", ""), pubJWK(t, ecP256, "ec", "")))
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256", "ES256")}}, true)
	wantOK(t, check(v, bearer(tok), now))
	wantOK(t, check(v, bearer(signer{jwa.ES256(), ecP256, ""}.sign(t, claims(now, nil))), now))
	// Two RSA keys: ambiguous.
	srv2 := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "A", ""), pubJWK(t, rsaB, "B", "")))
	v2 := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv2.URL, "RS256")}}, true)
	wantFail(t, check(v2, bearer(tok), now), ReasonUnknownKey)
	// A kid-less key in the set is found for a kid-less token.
	srv3 := newJWKSServer(t, jwksDoc(t, pubJWK(t, rsaA, "", "")))
	v3 := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv3.URL, "RS256")}}, true)
	wantOK(t, check(v3, bearer(tok), now))
	wantFail(t, check(v3, bearer(signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))), now), ReasonUnknownKey)
}

func TestNewErrors(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good.json", jwksDoc(t, pubJWK(t, rsaA, "A", "")))
	octKey, err := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(p *config.JWTProvider){
		"missing file":  func(p *config.JWTProvider) { p.JWKSFile = dir + "/nope.json" },
		"not json":      func(p *config.JWTProvider) { p.JWKSFile = writeFile(t, dir, "bad.json", []byte("{not json")) },
		"empty set":     func(p *config.JWTProvider) { p.JWKSFile = writeFile(t, dir, "empty.json", []byte(`{"keys":[]}`)) },
		"only hmac key": func(p *config.JWTProvider) { p.JWKSFile = writeFile(t, dir, "oct.json", jwksDoc(t, octKey)) },
		"only EC key for RS256": func(p *config.JWTProvider) {
			p.JWKSFile = writeFile(t, dir, "ec.json", jwksDoc(t, pubJWK(t, ecP256, "ec", "")))
		},
		"too large": func(p *config.JWTProvider) {
			p.JWKSFile = writeFile(t, dir, "big.json", []byte(`{"keys":[],"pad":"`+strings.Repeat("x", MaxJWKSBytes)+`"}`))
		},
		"HS256 allowed":     func(p *config.JWTProvider) { p.Algorithms = []string{"RS256", "HS256"} },
		"none allowed":      func(p *config.JWTProvider) { p.Algorithms = []string{"none"} },
		"no algorithms":     func(p *config.JWTProvider) { p.Algorithms = nil },
		"no issuer":         func(p *config.JWTProvider) { p.Issuer = "" },
		"url and file":      func(p *config.JWTProvider) { p.JWKSURL = "https://idp.example/jwks" },
		"neither":           func(p *config.JWTProvider) { p.JWKSFile = "" },
		"header and cookie": func(p *config.JWTProvider) { p.FromCookie = "c" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			p := config.JWTProvider{Name: "f", Issuer: testIssuer, JWKSFile: good, Algorithms: []string{"RS256"}, FromHeader: "Authorization"}
			mod(&p)
			v, err := New(t.Context(), config.JWTAuth{Providers: []config.JWTProvider{p}}, testLogger(t), nil)
			if err == nil {
				v.Close()
				t.Fatal("New accepted the config")
			}
			t.Log(err)
		})
	}
	if _, err := New(t.Context(), config.JWTAuth{}, nil, nil); err == nil {
		t.Fatal("New accepted no providers")
	}
	// The good file, and an unreachable URL, are fine.
	for _, p := range []config.JWTProvider{
		{Name: "f", Issuer: testIssuer, JWKSFile: good, Algorithms: []string{"RS256"}},
		{Name: "u", Issuer: testIssuer, JWKSURL: "http://127.0.0.1:1/jwks", Algorithms: []string{"RS256"}},
	} {
		v, err := New(t.Context(), config.JWTAuth{Providers: []config.JWTProvider{p}}, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		v.Close()
	}
}

// TestJWKSSkipsUnusableKeys: a set that mixes keys the provider can use
// with ones it cannot (encryption keys, HMAC secrets, types the library
// does not know, weak RSA) keeps the usable ones.
func TestJWKSSkipsUnusableKeys(t *testing.T) {
	testKeys(t)
	enc := pubJWK(t, rsaB, "enc", "")
	if err := enc.Set(jwk.KeyUsageKey, "enc"); err != nil {
		t.Fatal(err)
	}
	oct, _ := jwk.Import([]byte("0123456789abcdef0123456789abcdef"))
	_ = oct.Set(jwk.KeyIDKey, "oct")
	doc := jwksDoc(t, pubJWK(t, rsaA, "A", ""), enc, oct)
	// Append a key of an unknown type and an RSA key of 512 bits.
	var m map[string][]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m["keys"] = append(m["keys"],
		json.RawMessage(`{"kty":"PQC","kid":"future","x":"AAAA"}`),
		json.RawMessage(`{"kty":"RSA","kid":"weak","e":"AQAB","n":"1L0iD-8RGf7g3nWoF1GM0nMXe1xpNGq6hPNPYXpeK6e7vfbMxdqUoqEPGDp3D0kyhDkiyz4XBHkEfpvjQWf8VQ"}`))
	doc, _ = json.Marshal(m)

	dir := t.TempDir()
	p := providerCfg("", "RS256")
	p.JWKSURL, p.JWKSFile = "", writeFile(t, dir, "jwks.json", doc)
	v := newValidator(t, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	wantOK(t, check(v, bearer(signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, nil))), now))
	wantFail(t, check(v, bearer(signer{jwa.RS256(), rsaB, "enc"}.sign(t, claims(now, nil))), now), ReasonUnknownKey)
	set := v.sources[0].providers[0].keys.current()
	if set.kids() != "A" {
		t.Fatalf("kept keys %q", set.kids())
	}
}

func TestNoTokensInLogs(t *testing.T) {
	v, srv := stdSetup(t, "RS256")
	now := time.Now()
	secret := "s3cr3t-claim-value"
	tok := signer{jwa.RS256(), rsaA, "A"}.sign(t, claims(now, map[string]any{"email": secret}))
	badKid := signer{jwa.RS256(), rsaA, "nope"}.sign(t, claims(now, map[string]any{"email": secret}))
	logBuf.Reset()
	srv.down.Store(true) // the early refresh for the unknown kid fails and logs
	for range 3 {
		check(v, bearer(tok), now)
		check(v, bearer(tok+"x"), now)
		check(v, bearer(badKid), now)
		check(v, bearer(tok), now.Add(2*time.Hour))
	}
	eventually(t, 5*time.Second, "a failed refresh", func() bool { return strings.Contains(logBuf.String(), "cannot refresh") })
	out := logBuf.String()
	for _, s := range append(strings.Split(tok, "."), strings.Split(badKid, ".")...) {
		if strings.Contains(out, s) {
			t.Fatal("a token segment was logged")
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, "user-1") {
		t.Fatal("a claim was logged")
	}
}

func TestStatusIs401(t *testing.T) {
	r := fail(ReasonExpired, nil)
	if r.Status != http.StatusUnauthorized || r.Challenge != `Bearer realm="edge-agent", error="invalid_token"` {
		t.Fatalf("%+v", r)
	}
}
