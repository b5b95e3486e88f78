package annotations

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// Value grammar: lists of simple items (hosts, methods, header names) are
// comma-separated; lists of name/value pairs (headers, matchers) hold one
// "Name: value" pair per line, because header values may contain commas.

// parseList splits a comma-separated list, trimming spaces; empty items and
// more than MaxListItems are errors.
func parseList(v string) ([]string, error) {
	parts := strings.Split(v, ",")
	if len(parts) > MaxListItems {
		return nil, fmt.Errorf("at most %d items, got %d", MaxListItems, len(parts))
	}
	out := make([]string, 0, len(parts))
	seen := map[string]bool{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty item in list %q", v)
		}
		if seen[p] {
			return nil, fmt.Errorf("%q is listed twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

func parseHosts(v string) ([]string, error) {
	hosts, err := parseList(strings.ToLower(v))
	if err != nil {
		return nil, err
	}
	if len(hosts) > MaxHosts {
		return nil, fmt.Errorf("at most %d hosts", MaxHosts)
	}
	for _, h := range hosts {
		if err := config.CheckHostPattern(h); err != nil {
			return nil, err
		}
	}
	return hosts, nil
}

func parseMethods(v string) ([]string, error) {
	ms, err := parseList(v)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if !config.IsToken(m) || strings.ToUpper(m) != m {
			return nil, fmt.Errorf("%q is not an upper-case HTTP method", m)
		}
	}
	return ms, nil
}

// pairs splits "Name: value" lines; a line without a colon yields an empty
// value and ok=false.
type pair struct {
	name, value string
	hasValue    bool
}

func parsePairs(v string) ([]pair, error) {
	var out []pair
	for _, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, value, hasValue := strings.Cut(line, ":")
		out = append(out, pair{strings.TrimSpace(name), strings.TrimSpace(value), hasValue})
		if len(out) > MaxListItems {
			return nil, fmt.Errorf("at most %d lines", MaxListItems)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty value: want one \"Name: value\" per line")
	}
	return out, nil
}

func parseHeaders(v string) ([]config.Header, error) {
	ps, err := parsePairs(v)
	if err != nil {
		return nil, err
	}
	hs := make([]config.Header, 0, len(ps))
	for _, p := range ps {
		if !p.hasValue {
			return nil, fmt.Errorf("line %q: want \"Name: value\"", p.name)
		}
		if err := config.CheckHeaderName(p.name); err != nil {
			return nil, err
		}
		if err := config.CheckHeaderValue(p.value); err != nil {
			return nil, fmt.Errorf("header %s: %v", p.name, err)
		}
		hs = append(hs, config.Header{Name: p.name, Value: p.value})
	}
	return hs, nil
}

// parseMatches reads "name: value" (exact match) or "name" (present) lines.
func parseMatches(v string, validName func(string) bool) ([]config.ValueMatch, error) {
	ps, err := parsePairs(v)
	if err != nil {
		return nil, err
	}
	ms := make([]config.ValueMatch, 0, len(ps))
	seen := map[string]bool{}
	for _, p := range ps {
		m, err := toMatch(p, validName)
		if err != nil {
			return nil, err
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		ms = append(ms, *m)
	}
	return ms, nil
}

func parseOneMatch(v string, validName func(string) bool) (*config.ValueMatch, error) {
	ms, err := parseMatches(v, validName)
	if err != nil {
		return nil, err
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("want one \"name: value\", got %d", len(ms))
	}
	return &ms[0], nil
}

func toMatch(p pair, validName func(string) bool) (*config.ValueMatch, error) {
	if !validName(p.name) {
		return nil, fmt.Errorf("%q is not a valid name", p.name)
	}
	if p.hasValue && p.value == "" {
		return nil, fmt.Errorf("%s: empty value (write just %q to match presence)", p.name, p.name)
	}
	if err := config.CheckHeaderValue(p.value); err != nil {
		return nil, fmt.Errorf("%s: %v", p.name, err)
	}
	return &config.ValueMatch{Name: p.name, Exact: p.value}, nil
}

func parseEnum(v string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

func parseInt(v string, min, max int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || strconv.Itoa(n) != v {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, min, max)
	}
	return n, nil
}

// parseBool takes exactly "true" or "false".
func parseBool(v string) (bool, error) {
	b, err := parseEnum(v, "true", "false")
	return b == "true", err
}

// parsePositiveDuration takes Go duration strings; bare numbers are
// ambiguous and rejected. One hour is far beyond any sane proxy timeout.
func parsePositiveDuration(v string) (config.Duration, error) {
	return parseDuration(v, 0, time.Hour)
}

// parseDuration takes a Go duration string from lo to hi; lo 0 means more
// than 0s.
func parseDuration(v string, lo, hi time.Duration) (config.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if lo <= 0 && (d.D() <= 0 || d.D() > hi) {
		return 0, fmt.Errorf("%q must be more than 0s and at most %s", v, fmtDuration(hi))
	}
	if d.D() < lo || d.D() > hi {
		return 0, fmt.Errorf("%q must be between %s and %s", v, fmtDuration(lo), fmtDuration(hi))
	}
	return d, nil
}

// fmtDuration writes round durations as people do: 1h, 5m, not 1h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// percentSyntax is a plain decimal: no sign, exponent, leading dot or
// leading zeros ("0.5", "12.5", "100").
var percentSyntax = regexp.MustCompile(`^(0|[1-9][0-9]{0,2})(\.[0-9]{1,6})?$`)

// parsePercent takes a share of requests: more than 0, at most 100, with up
// to 6 decimals.
func parsePercent(v string) (float64, error) {
	if !percentSyntax.MatchString(v) {
		return 0, fmt.Errorf("%q is not a percentage: want a plain decimal such as 10 or 0.5", v)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 100 {
		return 0, fmt.Errorf("%s is out of range: more than 0 and at most 100", v)
	}
	return f, nil
}

// parseIntList reads a comma list of distinct integers from min to max.
func parseIntList(v string, min, max int) ([]int, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(items))
	for _, it := range items {
		n, err := parseInt(it, min, max)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// parseRetryOn reads a comma list of the retry conditions the model knows.
func parseRetryOn(v string) ([]config.RetryOn, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	allowed := make([]string, len(config.RetryOnValues))
	for i, on := range config.RetryOnValues {
		allowed[i] = string(on)
	}
	out := make([]config.RetryOn, 0, len(items))
	for _, it := range items {
		if _, err := parseEnum(it, allowed...); err != nil {
			return nil, err
		}
		out = append(out, config.RetryOn(it))
	}
	return out, nil
}

// isGRPCServiceName accepts a fully qualified protobuf service name
// ("grpc.health.v1.Health", "shop.v1.Cart").
func isGRPCServiceName(s string) bool {
	if s == "" || len(s) > config.MaxNameLen {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}

func isDNSLabel(s string) bool {
	return len(s) > 0 && len(s) <= 63 && !strings.Contains(s, ".") && config.CheckHostname(s) == nil
}

func isDNSSubdomain(s string) bool { return config.CheckHostname(s) == nil }

func hasSpaceOrCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
