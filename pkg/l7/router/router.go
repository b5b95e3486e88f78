// Package router compiles routes into a lookup table and finds the route for
// a request. Precedence, highest first:
//
//  1. the most specific host: an exact name, then the longest matching
//     "*." wildcard, then routes that name no host;
//  2. the longest path: exact and segment-prefix paths by their length
//     (exact wins a tie), regex paths by the length of the pattern;
//  3. the most matchers (methods, each header, query and cookie matcher);
//  4. declaration order.
//
// Lookups cost a few map probes per path segment, independent of the number
// of routes, except regex paths which are tried one by one.
package router

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// Entry is one route to compile; Value is returned when it matches.
type Entry[T any] struct {
	Hosts []string
	Match config.Match
	Value T
}

// Table is an immutable, compiled set of routes.
type Table[T any] struct {
	exact    map[string]*bucket[T]
	wildcard map[string]*bucket[T] // keyed by the suffix after "*."
	any      *bucket[T]
}

type bucket[T any] struct {
	exact  map[string][]*route[T]
	prefix map[string][]*route[T]
	regex  []*route[T]
}

type route[T any] struct {
	value    T
	pathLen  int
	kind     int // 2 exact, 1 prefix, 0 regex
	matchers int
	order    int
	pathRe   *regexp.Regexp
	methods  []string
	headers  []valueMatcher
	query    []valueMatcher
	cookies  []valueMatcher
}

// better reports whether a ranks above b within one host bucket.
func (a *route[T]) better(b *route[T]) bool {
	if a.pathLen != b.pathLen {
		return a.pathLen > b.pathLen
	}
	if a.kind != b.kind {
		return a.kind > b.kind
	}
	if a.matchers != b.matchers {
		return a.matchers > b.matchers
	}
	return a.order < b.order
}

// New compiles entries. Entries must already be validated; regexes are
// compiled again here under the same limits.
func New[T any](entries []Entry[T]) (*Table[T], error) {
	t := &Table[T]{exact: map[string]*bucket[T]{}, wildcard: map[string]*bucket[T]{}}
	for i := range entries {
		e := &entries[i]
		if g := e.Match.GRPC; g != nil {
			// A gRPC match is its path plus a gRPC content type.
			m := e.Match
			m.Path = g.PathMatch()
			m.Headers = append(append([]config.ValueMatch(nil), m.Headers...), config.ValueMatch{Name: "content-type", Prefix: "application/grpc"})
			ne := *e
			ne.Match = m
			e = &ne
		}
		r, err := compile(e, i)
		if err != nil {
			return nil, fmt.Errorf("route %d: %w", i, err)
		}
		if len(e.Hosts) == 0 {
			t.any = addTo(t.any, r, e.Match.Path)
		}
		for _, h := range e.Hosts {
			h = strings.ToLower(h)
			if suffix, ok := strings.CutPrefix(h, "*."); ok {
				t.wildcard[suffix] = addTo(t.wildcard[suffix], r, e.Match.Path)
			} else {
				t.exact[h] = addTo(t.exact[h], r, e.Match.Path)
			}
		}
	}
	sortBucket(t.any)
	for _, b := range t.exact {
		sortBucket(b)
	}
	for _, b := range t.wildcard {
		sortBucket(b)
	}
	return t, nil
}

func compile[T any](e *Entry[T], order int) (*route[T], error) {
	r := &route[T]{value: e.Value, order: order, methods: e.Match.Methods}
	switch p := e.Match.Path; {
	case p == nil:
		r.kind, r.pathLen = 1, 1 // same as prefix "/"
	case p.Exact != "":
		r.kind, r.pathLen = 2, len(p.Exact)
	case p.Prefix != "":
		r.kind, r.pathLen = 1, len(normPrefix(p.Prefix))
	default:
		re, err := config.CompileMatchRegex(p.Regex)
		if err != nil {
			return nil, fmt.Errorf("path regex: %w", err)
		}
		r.kind, r.pathLen, r.pathRe = 0, len(p.Regex), re
	}
	var err error
	if r.headers, err = compileValues(e.Match.Headers); err != nil {
		return nil, fmt.Errorf("header match: %w", err)
	}
	if r.query, err = compileValues(e.Match.Query); err != nil {
		return nil, fmt.Errorf("query match: %w", err)
	}
	if r.cookies, err = compileValues(e.Match.Cookies); err != nil {
		return nil, fmt.Errorf("cookie match: %w", err)
	}
	r.matchers = len(r.headers) + len(r.query) + len(r.cookies)
	if len(r.methods) > 0 {
		r.matchers++
	}
	return r, nil
}

// normPrefix drops a trailing slash so "/api/" and "/api" mean the same.
func normPrefix(p string) string {
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	return p
}

func addTo[T any](b *bucket[T], r *route[T], p *config.PathMatch) *bucket[T] {
	if b == nil {
		b = &bucket[T]{exact: map[string][]*route[T]{}, prefix: map[string][]*route[T]{}}
	}
	switch {
	case p == nil:
		b.prefix["/"] = append(b.prefix["/"], r)
	case p.Exact != "":
		b.exact[p.Exact] = append(b.exact[p.Exact], r)
	case p.Prefix != "":
		k := normPrefix(p.Prefix)
		b.prefix[k] = append(b.prefix[k], r)
	default:
		b.regex = append(b.regex, r)
	}
	return b
}

func sortBucket[T any](b *bucket[T]) {
	if b == nil {
		return
	}
	sortRoutes := func(rs []*route[T]) {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].better(rs[j]) })
	}
	for _, rs := range b.exact {
		sortRoutes(rs)
	}
	for _, rs := range b.prefix {
		sortRoutes(rs)
	}
	sortRoutes(b.regex)
}

// Lookup returns the best route for req.
func (t *Table[T]) Lookup(req *message.Request) (T, bool) {
	var hostBuf [256]byte
	host := normHost(req.Host, hostBuf[:0])
	if b := t.exact[string(host)]; b != nil {
		if r := b.lookup(req); r != nil {
			return r.value, true
		}
	}
	if len(t.wildcard) > 0 {
		// Most specific wildcard first: "*.b.example.com" before "*.example.com".
		for i := 0; i < len(host); i++ {
			if host[i] != '.' {
				continue
			}
			if b := t.wildcard[string(host[i+1:])]; b != nil {
				if r := b.lookup(req); r != nil {
					return r.value, true
				}
			}
		}
	}
	if t.any != nil {
		if r := t.any.lookup(req); r != nil {
			return r.value, true
		}
	}
	var zero T
	return zero, false
}

func (b *bucket[T]) lookup(req *message.Request) *route[T] {
	path := req.Path()
	var best *route[T]
	if rs := b.exact[string(path)]; rs != nil {
		best = firstMatch(rs, req)
	}
	if best == nil && len(b.prefix) > 0 {
		p := path
		if len(p) > 1 && p[len(p)-1] == '/' {
			p = p[:len(p)-1]
		}
		for len(p) > 0 {
			if rs := b.prefix[string(p)]; rs != nil {
				if r := firstMatch(rs, req); r != nil {
					best = r
					break
				}
			}
			i := lastSlash(p)
			if i < 0 {
				break
			}
			if i == 0 {
				if len(p) == 1 {
					break
				}
				p = p[:1] // "/"
				continue
			}
			p = p[:i]
		}
	}
	for _, r := range b.regex {
		if best != nil && !r.better(best) {
			continue
		}
		if r.pathRe.Match(path) && r.matchRest(req) {
			best = r
		}
	}
	return best
}

func lastSlash(p []byte) int {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return i
		}
	}
	return -1
}

func firstMatch[T any](rs []*route[T], req *message.Request) *route[T] {
	for _, r := range rs {
		if r.matchRest(req) {
			return r
		}
	}
	return nil
}

func (r *route[T]) matchRest(req *message.Request) bool {
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if string(req.Method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		if !matchHeader(&r.headers[i], req) {
			return false
		}
	}
	if len(r.query) > 0 {
		q := req.Query()
		for i := range r.query {
			if !matchQuery(&r.query[i], q) {
				return false
			}
		}
	}
	for i := range r.cookies {
		if !matchCookie(&r.cookies[i], req.Headers) {
			return false
		}
	}
	return true
}

// normHost lower-cases host and strips a port and a trailing dot.
func normHost(h, dst []byte) []byte {
	if len(h) > 0 && h[0] == '[' { // IPv6 literal
		if i := indexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := indexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	for _, c := range h {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}
