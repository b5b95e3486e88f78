// Package ratelimit decides whether a request may pass a route's rate
// limit: a token bucket per key (the client IP, a header value, or one
// key for the whole route), refilled continuously at requests per period
// and holding at most burst tokens.
//
// Local keeps the buckets in process. It is on the proxy's hot path, so a
// request for a key already tracked takes one shard mutex and allocates
// nothing. Memory is bounded: at most maxKeys keys, the least recently
// used forgotten first (a forgotten key comes back with a full bucket,
// which errs on the side of letting traffic through).
//
// The bucket is kept as a GCRA "theoretical arrival time" (TAT): one int64
// per key instead of a token count plus a timestamp, and integer
// arithmetic (nanoseconds, unless the config needs coarser units) so no
// rounding drift accumulates.
package ratelimit

import (
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"
)

// Decision is the outcome for one request, with what the RateLimit-*
// response headers need.
type Decision struct {
	Allowed bool
	// Limit is the bucket size (burst): RateLimit-Limit.
	Limit int
	// Remaining is the whole tokens left after this request:
	// RateLimit-Remaining.
	Remaining int
	// Reset is the time until the bucket is full again: RateLimit-Reset
	// (round up to whole seconds when formatting it).
	Reset time.Duration
	// RetryAfter, when !Allowed, is the time until one token is
	// available (> 0); zero when Allowed.
	RetryAfter time.Duration
}

// Limiter decides for one key. A global (remote) limiter can implement it
// too.
type Limiter interface {
	Allow(key string, now time.Time) Decision
}

const (
	// MaxKeyLen is the longest key stored as is. Keys come from clients
	// (header values) and may be as long as the header size limit; longer
	// ones are stored as a keyed 128-bit hash so maxKeys bounds memory, not
	// just the number of keys.
	MaxKeyLen = 256

	maxShards = 64
	// minPerShard keeps each shard's LRU large enough that per-shard
	// eviction stays close to a global LRU; small limits get one shard.
	minPerShard = 256

	// Offsets from the epoch are clamped to ±2^61 time units (≥ 73
	// years) and the burst tolerance is at most 2^59 units, so no sum or
	// difference of them can overflow int64, whatever the clock or config
	// does.
	maxOffset = int64(1) << 61
	maxTau    = int64(1) << 59
	maxBurst  = 1 << 30 // far above config.MaxPolicyLimit; bounds the shift loop

	hashedKeyPrefix = "\xffrl-hash:"
)

// Local is an in-process token-bucket Limiter: requests per period per
// key, at most burst at once, at most maxKeys keys (the least recently
// used evicted first). Keys are spread over up to 64 shards, each with its
// own mutex and LRU list, so eviction is O(1) and per shard. It is safe
// for concurrent use.
type Local struct {
	interval int64 // time units per token: period / requests, ≥ 1
	tau      int64 // burst tolerance in time units: burst × interval
	shift    uint  // a time unit is 2^shift ns
	burst    int
	// epoch anchors the int64 offsets (in time units). Taken from
	// time.Now, it carries a monotonic reading, so callers passing
	// time.Now() are immune to wall clock steps.
	epoch  time.Time
	seed   maphash.Seed
	seed2  maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu  sync.Mutex
	m   map[string]*entry
	lru entry // sentinel: lru.next is the most recently used
	cap int
	// The fields above fill 64 bytes; padding to 128 keeps each shard's
	// hot fields off its neighbours' cache lines.
	_ [64]byte
}

type entry struct {
	key        string
	tat        int64 // when the bucket will be full again, units from epoch
	prev, next *entry
}

// NewLocal returns a Local admitting requests per period per key, at most
// burst at once, tracking at most maxKeys keys. Arguments are validated by
// the config package; out-of-range ones are clamped here (requests, burst
// and maxKeys to at least 1, a non-positive period to one second) rather
// than panicking.
func NewLocal(requests int, period time.Duration, burst, maxKeys int) *Local {
	requests = max(requests, 1)
	burst = min(max(burst, 1), maxBurst)
	maxKeys = max(maxKeys, 1)
	if period <= 0 {
		period = time.Second
	}
	// Time is counted in units of 2^shift ns, shift > 0 only when
	// burst × period/requests would not fit in maxTau ns (e.g. a burst of
	// 2^20 refilled once a day: ~2900 years). The loop ends because
	// maxTau/maxBurst ≥ 2^29.
	iv := float64(period) / float64(requests)
	shift := uint(0)
	for iv/float64(uint64(1)<<shift) > float64(maxTau/int64(burst)) {
		shift++
	}
	// Round to nearest: the rate error is ≤ half a unit per token, which
	// only matters above ~10^8 requests per second per key.
	interval := max(int64(math.Round(iv/float64(uint64(1)<<shift))), 1)
	// The loop compared against an integer, so rounding cannot push
	// burst × interval past maxTau; min is belt and braces.
	tau := min(int64(burst)*interval, maxTau)

	n := 1
	for n < maxShards && maxKeys/(n*2) >= minPerShard {
		n *= 2
	}
	l := &Local{
		interval: interval,
		tau:      tau,
		shift:    shift,
		burst:    burst,
		epoch:    time.Now(),
		seed:     maphash.MakeSeed(),
		seed2:    maphash.MakeSeed(),
		mask:     uint64(n - 1),
		shards:   make([]shard, n),
	}
	// Split maxKeys exactly (not ceil) so Len() never exceeds it.
	for i := range l.shards {
		s := &l.shards[i]
		s.cap = maxKeys / n
		if i < maxKeys%n {
			s.cap++
		}
		// No size hint: most routes see few keys, and maps grow cheaply.
		s.m = make(map[string]*entry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
	}
	return l
}

// Allow takes one token from key's bucket if it has one. now is passed in
// so callers can reuse one clock reading and tests need no sleeping.
func (l *Local) Allow(key string, now time.Time) Decision {
	if len(key) > MaxKeyLen {
		// The lookup through string(buf[:]) does not allocate; only an
		// insert does (it clones the key anyway).
		var buf [len(hashedKeyPrefix) + 16]byte
		l.hashLong(&buf, key)
		return l.allow(string(buf[:]), now)
	}
	return l.allow(key, now)
}

func (l *Local) allow(key string, now time.Time) Decision {
	t := int64(now.Sub(l.epoch)) >> l.shift
	t = min(max(t, -maxOffset), maxOffset)

	s := &l.shards[0]
	if l.mask != 0 {
		s = &l.shards[maphash.String(l.seed, key)&l.mask]
	}
	s.mu.Lock()
	e := s.m[key]
	if e != nil {
		s.moveToFront(e)
	} else {
		e = s.insert(key, t)
	}
	tat := max(e.tat, t) // an idle bucket is full, not over-full
	d := Decision{Limit: l.burst}
	if next := tat + l.interval; next-t <= l.tau {
		e.tat = next
		tat = next
		d.Allowed = true
	} else {
		d.RetryAfter = l.duration(next - t - l.tau)
	}
	s.mu.Unlock()

	d.Reset = l.duration(tat - t)
	d.Remaining = int(min((l.tau-(tat-t))/l.interval, int64(l.burst)))
	return d
}

// duration converts a non-negative count of time units to a Duration,
// saturating rather than overflowing when shift > 0.
func (l *Local) duration(u int64) time.Duration {
	if u > math.MaxInt64>>l.shift {
		return math.MaxInt64
	}
	return time.Duration(u << l.shift)
}

// Len is the number of keys currently tracked.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// hashLong writes the fixed-size stand-in for a key longer than MaxKeyLen.
// 128 bits under per-limiter random seeds: clients can neither predict
// nor feasibly find collisions to share (or steal) another key's bucket.
// A short key equal to a stand-in would need the seeds to construct.
func (l *Local) hashLong(buf *[len(hashedKeyPrefix) + 16]byte, key string) {
	n := copy(buf[:], hashedKeyPrefix)
	h1, h2 := maphash.String(l.seed, key), maphash.String(l.seed2, key)
	for i := range 8 {
		buf[n+i] = byte(h1 >> (8 * i))
		buf[n+8+i] = byte(h2 >> (8 * i))
	}
}

// insert adds key with a full bucket, recycling the least recently used
// entry when the shard is at capacity. Called with s.mu held.
func (s *shard) insert(key string, t int64) *entry {
	var e *entry
	if len(s.m) >= s.cap {
		e = s.lru.prev
		s.unlink(e)
		delete(s.m, e.key)
	} else {
		e = new(entry)
	}
	// Clone so the map does not pin the request buffer the key was sliced
	// from.
	e.key = strings.Clone(key)
	e.tat = t
	s.m[e.key] = e
	s.pushFront(e)
	return e
}

func (s *shard) moveToFront(e *entry) {
	if s.lru.next == e {
		return
	}
	s.unlink(e)
	s.pushFront(e)
}

func (s *shard) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.prev = &s.lru
	e.next = s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

var _ Limiter = (*Local)(nil)
