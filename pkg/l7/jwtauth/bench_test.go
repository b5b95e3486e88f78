package jwtauth

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/lestrrat-go/jwx/v3/jwa"
)

// benchCheck measures Check on a valid token, with one claim copied to a
// header. Cached, the token is verified once and then found in the cache
// (hash, lookup), as when a client sends the same token again; uncached,
// every Check peeks, looks the key up, verifies the signature and
// validates the claims.
func benchCheck(b *testing.B, s signer, cached bool, algs ...string) {
	testKeys(b)
	srv := newJWKSServer(b, jwksDoc(b,
		pubJWK(b, rsaA, "A", ""),
		pubJWK(b, ecP256, "ec", ""),
		pubJWK(b, edKey, "ed", ""),
	))
	p := providerCfg(srv.URL, algs...)
	p.ClaimsToHeaders = []config.ClaimHeader{{Claim: "sub", Header: "X-User"}}
	v := newValidator(b, config.JWTAuth{Providers: []config.JWTProvider{p}}, true)
	if !cached {
		v.cache = nil
	}
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
	benchCheck(b, signer{jwa.RS256(), rsaA, "A"}, true, "RS256")
}

func BenchmarkCheckES256(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.ES256(), ecP256, "ec"}, true, "ES256")
}

func BenchmarkCheckEdDSA(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.EdDSA(), edKey, "ed"}, true, "EdDSA")
}

func BenchmarkCheckRS256Uncached(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.RS256(), rsaA, "A"}, false, "RS256")
}

func BenchmarkCheckES256Uncached(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.ES256(), ecP256, "ec"}, false, "ES256")
}

func BenchmarkCheckEdDSAUncached(b *testing.B) {
	testKeys(b)
	benchCheck(b, signer{jwa.EdDSA(), edKey, "ed"}, false, "EdDSA")
}

// BenchmarkCheckRS256Parallel is the cached path from every core, with
// as many tokens as goroutines (shard contention).
func BenchmarkCheckRS256Parallel(b *testing.B) {
	testKeys(b)
	srv := newJWKSServer(b, jwksDoc(b, pubJWK(b, rsaA, "A", "")))
	v := newValidator(b, config.JWTAuth{Providers: []config.JWTProvider{providerCfg(srv.URL, "RS256")}}, true)
	now := time.Now()
	var toks []string
	for i := range 64 {
		toks = append(toks, "Bearer "+signer{jwa.RS256(), rsaA, "A"}.sign(b, claims(now, map[string]any{"n": i})))
		if r := check(v, headers{"Authorization": toks[i]}, now); !r.OK {
			b.Fatal(r.Reason)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := toks[next.Add(1)%int64(len(toks))]
		get := func(string) (string, bool) { return tok, true }
		for pb.Next() {
			if r := v.Check(get, nil, now); !r.OK {
				b.Error(r.Reason)
				return
			}
		}
	})
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
