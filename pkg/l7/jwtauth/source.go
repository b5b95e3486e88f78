package jwtauth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// keySource holds one provider's keys and keeps them fresh: a goroutine
// re-reads the JWKS (URL or file) every refresh interval, and sooner when
// asked (an unknown kid, no keys yet), at most once per earlyRefreshEvery.
// A failed read keeps the last good set.
type keySource struct {
	provider string // for logs
	url      string
	file     string
	algs     []string
	refresh  time.Duration
	client   *http.Client
	log      *slog.Logger

	set  atomic.Pointer[keySet]
	kick chan struct{} // buffered (1): an early refresh is wanted
	// lastKick is when an early refresh was last asked for (unix ns).
	lastKick          atomic.Int64
	earlyRefreshEvery time.Duration
	// keyGen (the Validator's) is bumped after a set that differs from
	// the one in use is stored; nil: not bumped.
	keyGen *atomic.Uint64

	// Used only by the refresh goroutine.
	etag     string
	lastKids string
}

// where names the JWKS location for logs (URLs in configs carry no
// credentials: pkg/config refuses user info).
func (s *keySource) where() string {
	if s.url != "" {
		return s.url
	}
	return s.file
}

// current is the key set in use, nil until one has been loaded.
func (s *keySource) current() *keySet { return s.set.Load() }

// requestRefresh asks the refresh goroutine for an early fetch, unless one
// was asked for less than earlyRefreshEvery ago. It never blocks.
func (s *keySource) requestRefresh() {
	now := time.Now().UnixNano()
	last := s.lastKick.Load()
	if last != 0 && now-last < int64(s.earlyRefreshEvery) {
		return
	}
	if !s.lastKick.CompareAndSwap(last, now) {
		return // another request won the race
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run refreshes the keys until ctx is done. The first load happens after
// first (0 for a URL source, which New does not fetch itself).
func (s *keySource) run(ctx context.Context, first time.Duration) {
	timer := time.NewTimer(first)
	defer timer.Stop()
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
		}
		next := s.refresh
		if err := s.load(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = nextBackoff(backoff, s.refresh)
			next = jitter(backoff)
			if s.current() == nil {
				s.log.Warn("jwt: cannot load the JWKS; requests fail with 401 until it loads",
					"provider", s.provider, "jwks", s.where(), "retry_in", next, "err", err)
			} else {
				s.log.Warn("jwt: cannot refresh the JWKS; keeping the last good keys",
					"provider", s.provider, "jwks", s.where(), "retry_in", next, "err", err)
			}
		} else {
			backoff = 0
		}
		timer.Reset(next)
	}
}

// nextBackoff doubles the retry delay from min(1s, refresh) up to
// min(1m, refresh).
func nextBackoff(prev, refresh time.Duration) time.Duration {
	lo, hi := min(time.Second, refresh), min(time.Minute, refresh)
	return max(lo, min(2*prev, hi))
}

// jitter adds up to 10% to d so that many agents do not retry in step.
func jitter(d time.Duration) time.Duration { return d + rand.N(d/10+1) }

// load reads and parses the JWKS and stores it if it has a usable key.
// A set equal to the one in use is not stored: keyGen, bumped only for a
// set that differs, keeps the tokens validated with it in the cache.
func (s *keySource) load(ctx context.Context) error {
	data, etag, err := s.read(ctx)
	if err != nil {
		return err
	}
	if data == nil { // not modified
		return nil
	}
	set, skipped, err := parseKeySet(data, s.algs)
	if err != nil {
		return err
	}
	if cur := s.current(); cur == nil || !cur.equal(set) {
		// Stored before the bump: a check that reads the bumped
		// generation then finds this set (see Validator.checkAt).
		s.set.Store(set)
		if s.keyGen != nil {
			s.keyGen.Add(1)
		}
	}
	s.etag = etag
	if kids := set.kids(); kids != s.lastKids {
		s.lastKids = kids
		s.log.Info("jwt: keys loaded", "provider", s.provider, "jwks", s.where(),
			"kids", kids, "skipped", skipped)
	}
	return nil
}

// read returns the JWKS document and its ETag, or nil data when the
// server answered 304 Not Modified to the ETag of the set in use.
func (s *keySource) read(ctx context.Context) (data []byte, etag string, err error) {
	if s.file != "" {
		data, err = readFileLimited(s.file)
		return data, "", err
	}
	if s.client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultFetchTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if s.etag != "" && s.current() != nil {
		req.Header.Set("If-None-Match", s.etag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && s.current() != nil:
		return nil, "", nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", fmt.Errorf("GET %s: status %d", s.url, resp.StatusCode)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: reading the body: %w", s.url, err)
	}
	if len(data) > MaxJWKSBytes {
		return nil, "", fmt.Errorf("GET %s: the JWKS is larger than %d bytes", s.url, MaxJWKSBytes)
	}
	return data, resp.Header.Get("ETag"), nil
}

func readFileLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("%s: the JWKS is larger than %d bytes", name, MaxJWKSBytes)
	}
	return data, nil
}
