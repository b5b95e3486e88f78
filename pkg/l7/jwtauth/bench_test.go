package jwtauth

import (
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
)

// benchCheck measures Check on a valid token: peek, key lookup, signature
// verification and claim validation, with one claim copied to a header.
func benchCheck(b *testing.B, s signer, algs ...string) {
	testKeys(b)
	srv := newJWKSServer(b, jwksDoc(b,
		pubJWK(b, rsaA, "A", ""),
		pubJWK(b, ecP256, "ec", ""),
		pubJWK(b, edKey, "ed", ""),
	))
	p := providerCfg(srv.URL, algs...)
	p.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-User"}}
	v := newValidator(b, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	now := time.Now()
	h := bearer(s.sign(b, claims(now, nil)))
	get := func(name string) (string, bool) { return h["Authorization"], true }
	if r := v.Check(get, nil, now); !r.OK {
		b.Fatalf("%+v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := v.Check(get, nil, now); !r.OK {
			b.Fatal(r.Reason)
		}
	}
}

func BenchmarkCheckRS256(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.RS256(), rsaA, "A"}, "RS256")
}

func BenchmarkCheckES256(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.ES256(), ecP256, "ec"}, "ES256")
}

func BenchmarkCheckEdDSA(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.EdDSA(), edKey, "ed"}, "EdDSA")
}

// BenchmarkCheckRejectBadSignature is the cost of a forged token with a
// known kid (the most expensive rejection).
func BenchmarkCheckRejectBadSignature(b *testing.B) {
	testKeys(b)
	srv := newJWKSServer(b, jwksDoc(b, pubJWK(b, rsaA, "A", "")))
	v := newValidator(b, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256")}}, true)
	now := time.Now()
	tok := signer{jwa.RS256(), rsaB, "A"}.sign(b, claims(now, nil))
	get := func(string) (string, bool) { return "Bearer " + tok, true }
	b.ReportAllocs()
	for b.Loop() {
		if r := v.Check(get, nil, now); r.Reason != ReasonInvalid {
			b.Fatal(r.Reason)
		}
	}
}
