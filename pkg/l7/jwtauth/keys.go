package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// algorithms maps the names a provider may allow to the library's values.
// None and the HMAC algorithms are absent on purpose: a public key must
// never double as a shared secret.
var algorithms = map[string]jwa.SignatureAlgorithm{
	"RS256": jwa.RS256(), "RS384": jwa.RS384(), "RS512": jwa.RS512(),
	"PS256": jwa.PS256(), "PS384": jwa.PS384(), "PS512": jwa.PS512(),
	"ES256": jwa.ES256(), "ES384": jwa.ES384(), "ES512": jwa.ES512(),
	"EdDSA": jwa.EdDSA(),
}

// pubKey is one verification key from a JWKS, exported to its crypto type
// once when the set is loaded.
type pubKey struct {
	kid string
	alg string // the JWK's "alg"; empty: any algorithm the key type fits
	raw any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// fits reports whether k may verify a token signed with alg: the key type
// (and curve) must be the algorithm's, and a JWK that names its algorithm
// is used for that one only.
func (k *pubKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	return keyFitsAlg(k.raw, alg)
}

// keyFitsAlg reports whether a public key of raw's type can verify alg.
func keyFitsAlg(raw any, alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := raw.(*rsa.PublicKey)
		return ok
	case "ES256":
		return onCurve(raw, elliptic.P256())
	case "ES384":
		return onCurve(raw, elliptic.P384())
	case "ES512":
		return onCurve(raw, elliptic.P521())
	case "EdDSA":
		k, ok := raw.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize
	}
	return false // none, HMAC and anything unknown
}

func onCurve(raw any, c elliptic.Curve) bool {
	k, ok := raw.(*ecdsa.PublicKey)
	return ok && k.Curve == c
}

// keySet is a parsed JWKS: immutable once stored, shared by all requests.
type keySet struct {
	byKid map[string][]*pubKey
	all   []*pubKey
}

type lookupResult int

const (
	keyFound     lookupResult = iota
	keyUnknown                // no key with that kid (or, without kid, none of the type)
	keyAmbiguous              // no kid and several keys of the type
	keyMismatch               // the kid names keys of another type or algorithm
)

// lookup picks the key for a token's kid and alg. Without a kid the set
// must hold exactly one key that fits the algorithm.
func (s *keySet) lookup(kid, alg string) (*pubKey, lookupResult) {
	if kid != "" {
		cands, ok := s.byKid[kid]
		if !ok {
			return nil, keyUnknown
		}
		for _, k := range cands {
			if k.fits(alg) {
				return k, keyFound
			}
		}
		return nil, keyMismatch
	}
	var found *pubKey
	for _, k := range s.all {
		if !k.fits(alg) {
			continue
		}
		if found != nil {
			return nil, keyAmbiguous
		}
		found = k
	}
	if found == nil {
		return nil, keyUnknown
	}
	return found, keyFound
}

// equal reports whether s and o hold the same keys (ids, algorithms and
// public keys) in the same order.
func (s *keySet) equal(o *keySet) bool {
	return slices.EqualFunc(s.all, o.all, func(a, b *pubKey) bool {
		if a.kid != b.kid || a.alg != b.alg {
			return false
		}
		k, ok := a.raw.(interface{ Equal(crypto.PublicKey) bool })
		return ok && k.Equal(b.raw)
	})
}

// kids lists the set's key ids (for logs: they are public).
func (s *keySet) kids() string {
	ids := make([]string, 0, len(s.all))
	for _, k := range s.all {
		if k.kid == "" {
			ids = append(ids, "(no kid)")
		} else {
			ids = append(ids, k.kid)
		}
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

// parseKeySet parses a JWKS document (or a single JWK) and keeps the
// public signature keys usable with at least one of algs. Keys the library
// cannot parse (e.g. types it does not know, RSA under 2048 bits), keys
// for encryption, symmetric keys and keys of unused types are skipped and
// counted. A document that is not JSON, or that leaves no usable key, is
// an error.
func parseKeySet(data []byte, algs []string) (*keySet, int, error) {
	set, err := jwk.Parse(data, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, 0, fmt.Errorf("parsing the JWKS: %w", err)
	}
	ks := &keySet{byKid: map[string][]*pubKey{}}
	skipped := 0
	for i := range set.Len() {
		key, ok := set.Key(i)
		if !ok {
			skipped++
			continue
		}
		pk, err := exportKey(key)
		if err != nil || !slices.ContainsFunc(algs, pk.fits) {
			skipped++
			continue
		}
		ks.all = append(ks.all, pk)
		if pk.kid != "" {
			ks.byKid[pk.kid] = append(ks.byKid[pk.kid], pk)
		}
	}
	if len(ks.all) == 0 {
		return nil, skipped, fmt.Errorf("the JWKS has no key usable with %s (%d skipped)", strings.Join(algs, ", "), skipped)
	}
	return ks, skipped, nil
}

var errSkipKey = errors.New("not a signature verification key")

// exportKey turns one JWK into a public key of its crypto type.
func exportKey(key jwk.Key) (*pubKey, error) {
	if _, ok := key.(jwk.UnsupportedKey); ok {
		return nil, errSkipKey
	}
	switch key.KeyType() {
	case jwa.RSA(), jwa.EC(), jwa.OKP():
	default: // oct (HMAC secrets) and anything else
		return nil, errSkipKey
	}
	if use, ok := key.KeyUsage(); ok && use != "sig" {
		return nil, errSkipKey
	}
	if ops, ok := key.KeyOps(); ok && !slices.Contains(ops, jwk.KeyOpVerify) {
		return nil, errSkipKey
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	// A set that (wrongly) carries private keys still yields public ones.
	pub, err := key.PublicKey()
	if err != nil {
		return nil, err
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return nil, err
	}
	// Normalize to the pointer/value forms keyFitsAlg expects.
	switch k := raw.(type) {
	case rsa.PublicKey:
		raw = &k
	case ecdsa.PublicKey:
		raw = &k
	case *ed25519.PublicKey:
		raw = *k
	}
	pk := &pubKey{raw: raw}
	pk.kid, _ = key.KeyID()
	if a, ok := key.Algorithm(); ok {
		pk.alg = a.String()
	}
	return pk, nil
}
