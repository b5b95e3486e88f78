package annotations

import (
	"fmt"
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

// parsePositiveDuration takes Go duration strings; bare numbers are
// ambiguous and rejected. One hour is far beyond any sane proxy timeout.
func parsePositiveDuration(v string) (config.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d.D() <= 0 || d.D() > time.Hour {
		return 0, fmt.Errorf("%q must be more than 0s and at most 1h", v)
	}
	return d, nil
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
