package jwtauth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// CacheSize bounds how many validated tokens a Validator remembers.
const CacheSize = 4096

// cacheMaxAge caps how long a validated token is reused without being
// verified again, so that a key withdrawn from a JWKS whose server does
// not change (or an issuer that is rotated out of a config that is kept)
// stops being accepted within it, whatever the token's exp says.
const cacheMaxAge = time.Minute

// cacheShards splits the cache so that concurrent requests seldom wait
// for one another; each shard holds CacheSize/cacheShards entries.
const cacheShards = 16

// verifyHook, when set (by tests only, before any Check), is called before
// each signature verification.
var verifyHook func()

// cacheKey is the SHA-256 of a raw token (the token itself is never
// kept) and the index of the source it was found at: a source has its
// own providers, so a token's result at one says nothing of another.
type cacheKey struct {
	sum [sha256.Size]byte
	src uint32
}

// cacheEntry is what a valid token's check yielded, and when it may be
// reused: at times from <= now < until (unix ns), while the Validator's
// key generation is still gen.
type cacheEntry struct {
	provider    string
	headers     [][2]string // shared read-only with every Result it is given to
	from, until int64
	gen         uint64
}

// tokenCache is a bounded map of validated tokens. Only tokens that
// passed every check enter it, so filling it takes valid tokens from a
// configured issuer. When a shard is full, a stale entry among a few
// sampled at random is evicted, else a random one.
type tokenCache struct {
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	m   map[cacheKey]cacheEntry
	max int
	_   [40]byte // one shard per cache line
}

// newTokenCache returns a cache of at most size entries (rounded down to
// a multiple of cacheShards, at least one per shard). The maps grow as
// tokens arrive (a full cache takes under 1 MiB): every JWT route has
// its own, and most see far fewer tokens.
func newTokenCache(size int) *tokenCache {
	per := max(1, size/cacheShards)
	c := &tokenCache{}
	for i := range c.shards {
		c.shards[i] = cacheShard{m: map[cacheKey]cacheEntry{}, max: per}
	}
	return c
}

// keyOf hashes a token (at most MaxTokenBytes) found at source src. The
// token is copied to the stack first: converting it to []byte for the
// hash would allocate on every request.
func keyOf(token string, src int) cacheKey {
	var buf [MaxTokenBytes]byte
	n := copy(buf[:], token)
	return cacheKey{sum: sha256.Sum256(buf[:n]), src: uint32(src)}
}

func (c *tokenCache) shard(k cacheKey) *cacheShard {
	return &c.shards[k.sum[0]%cacheShards]
}

// get returns the entry for k if it may be used at now with key
// generation gen. An entry that has expired, or whose generation is
// older, is removed.
func (c *tokenCache) get(k cacheKey, now int64, gen uint64) (cacheEntry, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	if ok && e.stale(now, gen) {
		delete(s.m, k)
		ok = false
	}
	s.mu.Unlock()
	// A newer generation than the caller's (it read the generation just
	// before a concurrent refresh) or a now before the check that stored
	// the entry: not usable by this caller, but not stale either.
	if !ok || e.gen != gen || now < e.from {
		return cacheEntry{}, false
	}
	return e, true
}

// put stores e under k, evicting an entry if the shard is full.
func (c *tokenCache) put(k cacheKey, e cacheEntry) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= s.max {
		s.evict(e.from, e.gen)
	}
	s.m[k] = e
}

// evict removes one entry: the first stale one among up to 8 visited in
// the map's (random) iteration order, else the first visited.
func (s *cacheShard) evict(now int64, gen uint64) {
	var victim cacheKey
	n := 0
	for k, e := range s.m {
		if n == 0 {
			victim = k
		}
		if e.stale(now, gen) {
			victim = k
			break
		}
		if n++; n == 8 {
			break
		}
	}
	delete(s.m, victim)
}

// stale reports whether e can no longer be used by anyone: it has
// expired at now, or the keys have changed since it was stored.
func (e *cacheEntry) stale(now int64, gen uint64) bool {
	return now >= e.until || e.gen < gen
}

// entries is the number of entries (for tests).
func (c *tokenCache) entries() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
