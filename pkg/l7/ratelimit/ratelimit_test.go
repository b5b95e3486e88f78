package ratelimit

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func check(t *testing.T, what string, got, want Decision) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func TestBurstThenDeny(t *testing.T) {
	// 10 per second: one token every 100ms, holding 5.
	l := NewLocal(10, time.Second, 5, 100)
	for i := range 5 {
		check(t, fmt.Sprintf("request %d", i), l.Allow("k", t0), Decision{
			Allowed: true, Limit: 5, Remaining: 4 - i, Reset: ms(100 * (i + 1)),
		})
	}
	for i := range 3 {
		check(t, fmt.Sprintf("denied %d", i), l.Allow("k", t0), Decision{
			Allowed: false, Limit: 5, Remaining: 0, Reset: ms(500), RetryAfter: ms(100),
		})
	}
}

func TestRefill(t *testing.T) {
	l := NewLocal(10, time.Second, 5, 100)
	for range 5 {
		l.Allow("k", t0)
	}
	// Halfway to the next token: still denied, and told to wait the rest.
	check(t, "after 40ms", l.Allow("k", t0.Add(ms(40))), Decision{
		Limit: 5, Reset: ms(460), RetryAfter: ms(60),
	})
	// One token refilled, exactly one admitted.
	check(t, "after 100ms", l.Allow("k", t0.Add(ms(100))), Decision{
		Allowed: true, Limit: 5, Remaining: 0, Reset: ms(500),
	})
	check(t, "again at 100ms", l.Allow("k", t0.Add(ms(100))), Decision{
		Limit: 5, Reset: ms(500), RetryAfter: ms(100),
	})
	// 350ms later: 3.5 tokens; continuous refill keeps the half token.
	now := t0.Add(ms(450))
	for i := range 3 {
		if d := l.Allow("k", now); !d.Allowed || d.Remaining != 2-i {
			t.Fatalf("at 450ms request %d: %+v", i, d)
		}
	}
	check(t, "4th at 450ms", l.Allow("k", now), Decision{
		Limit: 5, Reset: ms(450), RetryAfter: ms(50),
	})
	// Long idle: the bucket is full, never over-full.
	now = t0.Add(time.Hour)
	check(t, "after an hour", l.Allow("k", now), Decision{
		Allowed: true, Limit: 5, Remaining: 4, Reset: ms(100),
	})
	for range 4 {
		l.Allow("k", now)
	}
	if d := l.Allow("k", now); d.Allowed {
		t.Fatalf("6th after idle admitted: %+v", d)
	}
}

func TestRetryAfterIsPeriodOverRequests(t *testing.T) {
	for _, tc := range []struct {
		requests int
		period   time.Duration
		want     time.Duration
	}{
		{1, time.Second, time.Second},
		{3, time.Second, 333333333},
		{100, time.Minute, 600 * time.Millisecond},
		{1, 24 * time.Hour, 24 * time.Hour},
	} {
		l := NewLocal(tc.requests, tc.period, 1, 10)
		if d := l.Allow("k", t0); !d.Allowed {
			t.Fatalf("%d/%s: first denied", tc.requests, tc.period)
		}
		d := l.Allow("k", t0)
		if d.Allowed || d.RetryAfter != tc.want {
			t.Fatalf("%d/%s: got %+v, want RetryAfter %s", tc.requests, tc.period, d, tc.want)
		}
	}
}

func TestIndependentKeys(t *testing.T) {
	l := NewLocal(1, time.Minute, 2, 100)
	for _, k := range []string{"10.0.0.1", "10.0.0.2", ""} {
		for i := range 2 {
			if d := l.Allow(k, t0); !d.Allowed || d.Remaining != 1-i {
				t.Fatalf("key %q request %d: %+v", k, i, d)
			}
		}
	}
	for _, k := range []string{"10.0.0.1", "10.0.0.2", ""} {
		if d := l.Allow(k, t0); d.Allowed {
			t.Fatalf("key %q: third admitted", k)
		}
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

// exhausted reports whether key's bucket is empty, i.e. the limiter still
// remembers it (with a one-token bucket and a long period, a forgotten
// key comes back full).
func exhausted(l *Local, key string, now time.Time) bool {
	return !l.Allow(key, now).Allowed
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	l := NewLocal(1, time.Hour, 1, 3)
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k, t0)
	}
	l.Allow("a", t0) // touch a: b is now the least recently used
	l.Allow("d", t0) // evicts b
	if n := l.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	if !exhausted(l, "a", t0) {
		t.Fatal("a was evicted though recently used")
	}
	if exhausted(l, "b", t0) {
		t.Fatal("b survived though least recently used")
	}
	// Checking b re-added it and evicted c (a and d were used after it).
	if exhausted(l, "c", t0) {
		t.Fatal("c survived")
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
}

func TestEvictionBoundsMemorySharded(t *testing.T) {
	for _, maxKeys := range []int{1, 7, 1000, 1023, 65536} {
		l := NewLocal(1, time.Hour, 1, maxKeys)
		l.Allow("hot", t0)
		for i := range 4 * maxKeys {
			l.Allow(strconv.Itoa(i), t0)
			if i%50 == 0 {
				l.Allow("hot", t0)
			}
			if i%997 == 0 {
				if n := l.Len(); n > maxKeys {
					t.Fatalf("maxKeys %d: Len = %d after %d keys", maxKeys, n, i+1)
				}
			}
		}
		if n := l.Len(); n != maxKeys {
			t.Fatalf("maxKeys %d: Len = %d, want full", maxKeys, n)
		}
		// With shards of ≥ 256 keys, 50 new keys between touches cannot
		// push "hot" out of its shard.
		if maxKeys >= 1000 && !exhausted(l, "hot", t0) {
			t.Fatalf("maxKeys %d: recently used key was evicted", maxKeys)
		}
	}
}

func TestLongKeys(t *testing.T) {
	l := NewLocal(1, time.Hour, 1, 100)
	prefix := strings.Repeat("x", MaxKeyLen)
	a, b := prefix+"a", prefix+"b"
	if !l.Allow(a, t0).Allowed || !l.Allow(b, t0).Allowed {
		t.Fatal("long keys sharing a prefix share a bucket")
	}
	if !exhausted(l, a, t0) || !exhausted(l, b, t0) {
		t.Fatal("long key not remembered")
	}
	// The key at the limit is stored as is, not confused with a longer one.
	if !l.Allow(prefix, t0).Allowed {
		t.Fatal("MaxKeyLen key shares a bucket with a longer key")
	}
	huge := strings.Repeat("y", 1<<20)
	l.Allow(huge, t0)
	if !exhausted(l, huge, t0) {
		t.Fatal("huge key not remembered")
	}
	for i := range l.shards {
		for k := range l.shards[i].m {
			if len(k) > MaxKeyLen {
				t.Fatalf("stored a %d-byte key", len(k))
			}
		}
	}
}

func TestClampsInvalidArgs(t *testing.T) {
	l := NewLocal(0, 0, 0, 0) // 1 per second, burst 1, one key
	if d := l.Allow("a", t0); !d.Allowed || d.Limit != 1 {
		t.Fatalf("first: %+v", d)
	}
	if d := l.Allow("a", t0); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("second: %+v", d)
	}
	l.Allow("b", t0)
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
}

func TestNoOverflow(t *testing.T) {
	// The config's extremes: burst 2^20 refilled once a day is ~2900
	// years of tolerance, beyond int64 nanoseconds.
	l := NewLocal(1, 24*time.Hour, 1<<20, 10)
	for i := range 3 {
		d := l.Allow("k", t0)
		if !d.Allowed || d.Limit != 1<<20 || d.Remaining != 1<<20-1-i {
			t.Fatalf("request %d: %+v", i, d)
		}
		if want := time.Duration(i+1) * 24 * time.Hour; absDiff(d.Reset, want) > time.Microsecond {
			t.Fatalf("request %d: Reset %s, want %s", i, d.Reset, want)
		}
	}
	// Drain it (at a fixed time every call is one token) and check the
	// reported durations saturate instead of wrapping negative.
	var d Decision
	for range 1 << 20 {
		if d = l.Allow("k", t0); !d.Allowed {
			break
		}
	}
	if d.Allowed || d.Remaining != 0 || d.Reset != math.MaxInt64 || absDiff(d.RetryAfter, 24*time.Hour) > time.Microsecond {
		t.Fatalf("drained: %+v", d)
	}

	// Absurd arguments, and clocks far from the epoch, must not panic or
	// wrap.
	l = NewLocal(1, math.MaxInt64, math.MaxInt, math.MaxInt)
	for _, now := range []time.Time{{}, t0, time.Unix(1<<40, 0), {}} {
		if d := l.Allow("k", now); d.Reset < 0 || d.RetryAfter < 0 || d.Remaining < 0 {
			t.Fatalf("at %v: %+v", now, d)
		}
	}
	l = NewLocal(math.MaxInt, time.Nanosecond, 1, 1)
	if d := l.Allow("k", t0); !d.Allowed {
		t.Fatalf("max rate: %+v", d)
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

func TestConcurrentFixedTime(t *testing.T) {
	const burst, keys, workers, calls = 50, 4, 32, 500
	l := NewLocal(1, time.Hour, burst, 100)
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				k := (w + i) % keys
				if l.Allow("key"+strconv.Itoa(k), t0).Allowed {
					allowed[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if n := allowed[k].Load(); n != burst {
			t.Errorf("key %d: %d allowed, want exactly %d", k, n, burst)
		}
	}
}

func TestConcurrentAdvancingTime(t *testing.T) {
	// 1000/s (1ms a token), burst 20. Goroutines pass times spread over
	// 200ms, out of order: per key at most burst + 200 can pass.
	const burst, keys, workers, calls = 20, 3, 16, 2000
	const span = 200 * time.Millisecond
	l := NewLocal(1000, time.Second, burst, 100)
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				now := t0.Add(span * time.Duration(i) / calls)
				k := (w + i) % keys
				if l.Allow(strconv.Itoa(k), now).Allowed {
					allowed[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		n := allowed[k].Load()
		if hi := int64(burst + span/time.Millisecond); n > hi || n < burst {
			t.Errorf("key %d: %d allowed, want within [%d, %d]", k, n, burst, hi)
		}
	}
}

func TestHitDoesNotAllocate(t *testing.T) {
	l := NewLocal(100, time.Second, 10, 1000)
	long := strings.Repeat("z", 2*MaxKeyLen)
	l.Allow("10.1.2.3", t0)
	l.Allow(long, t0)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		l.Allow("10.1.2.3", now)
		l.Allow(long, now)
	}); n != 0 {
		t.Fatalf("%v allocs per hit, want 0", n)
	}
}

func BenchmarkAllowHit(b *testing.B) {
	l := NewLocal(1_000_000, time.Second, 1000, 1<<16)
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		l.Allow(keys[i], t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		now := time.Now()
		i := 0
		for pb.Next() {
			l.Allow(keys[i&255], now)
			i++
		}
	})
}

func BenchmarkAllowRoute(b *testing.B) {
	// One bucket for the whole route: every goroutine on one mutex.
	l := NewLocal(1_000_000, time.Second, 1000, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := time.Now()
		for pb.Next() {
			l.Allow("", now)
		}
	})
}
