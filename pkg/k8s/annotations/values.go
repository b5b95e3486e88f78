package annotations

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
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

func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// parseTokens reads a comma list of RFC 9110 tokens (header names).
func parseTokens(v, what string) ([]string, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if !config.IsToken(it) {
			return nil, fmt.Errorf("%q is not a valid %s name", it, what)
		}
	}
	return items, nil
}

// parseCIDRs reads a comma list of IPv4/IPv6 CIDRs or single addresses, as
// the model reads them (config.ParseCIDR). A CIDR with bits set past its
// length (10.1.2.3/8) is refused as the likely typo it is.
func parseCIDRs(v string) ([]string, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		p, err := config.ParseCIDR(it)
		if err != nil || strings.Contains(it, "%") {
			return nil, fmt.Errorf("%q is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an address", it)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q: write IPv4 addresses as IPv4 (clients are matched unmapped)", it)
		}
		if pp, err := netip.ParsePrefix(it); err == nil && pp != pp.Masked() {
			return nil, fmt.Errorf("%q has bits set past the prefix length; did you mean %s?", it, pp.Masked())
		}
	}
	return items, nil
}

// checkRealm accepts printable ASCII without quotes or backslashes: the
// realm is sent inside a quoted string in WWW-Authenticate.
func checkRealm(v string) error {
	if v == "" || len(v) > 128 {
		return fmt.Errorf("a realm is 1-128 characters")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%q: a realm is printable ASCII without quotes or backslashes", v)
		}
	}
	return nil
}

// checkJWKSURL is the model's rule (https, or http to an in-cluster *.svc
// name) made stricter for annotations: a Service may not make the agent
// fetch from the node itself (loopback, localhost) or link-local addresses
// (cloud metadata), as the node's file config may.
func checkJWKSURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || hasSpaceOrCtl(v) || u.Opaque != "" || u.Host == "" || u.User != nil || u.Fragment != "" || strings.Contains(v, "#") {
		return fmt.Errorf("%q is not an absolute https URL without credentials or fragment", v)
	}
	host := u.Hostname()
	if port := u.Port(); port != "" {
		if _, err := parseInt(port, 1, 65535); err != nil {
			return fmt.Errorf("%q: port must be 1-65535", v)
		}
	}
	addr, ipErr := netip.ParseAddr(host)
	switch {
	case ipErr == nil && (addr.IsLoopback() || addr.IsUnspecified() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsMulticast() || addr.Zone() != ""):
		return fmt.Errorf("%q: a JWKS URL may not point at a loopback, link-local, multicast or unspecified address", v)
	case ipErr != nil && config.CheckHostname(host) != nil:
		return fmt.Errorf("%q: the host must be a lower-case hostname or an IP address", v)
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return fmt.Errorf("%q: a JWKS URL may not point at the node itself", v)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ipErr != nil && (strings.HasSuffix(host, ".svc") || strings.HasSuffix(host, ".svc.cluster.local")) {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only to in-cluster hosts (<service>.<namespace>.svc); use https", v)
	}
	return fmt.Errorf("%q: the scheme must be https", v)
}

// parseJWTAlgorithms reads a comma list of the algorithms the model allows
// (asymmetric only: never none, never HMAC).
func parseJWTAlgorithms(v string) ([]string, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if !slices.Contains(config.JWTAlgorithms, it) {
			return nil, fmt.Errorf("%q is not one of %s (none and HMAC are never allowed)", it, strings.Join(config.JWTAlgorithms, ", "))
		}
	}
	return items, nil
}

// parseClaimHeaders reads a comma list of claim=Header-Name pairs.
func parseClaimHeaders(v string) ([]config.ClaimHeader, error) {
	items, err := parseList(v)
	if err != nil {
		return nil, err
	}
	out := make([]config.ClaimHeader, 0, len(items))
	headers := map[string]bool{}
	for _, it := range items {
		claim, header, ok := strings.Cut(it, "=")
		claim, header = strings.TrimSpace(claim), strings.TrimSpace(header)
		if !ok || claim == "" || header == "" {
			return nil, fmt.Errorf("%q: want claim=Header-Name", it)
		}
		if len(claim) > 256 || hasSpaceOrCtl(claim) || strings.Contains(claim, "=") {
			return nil, fmt.Errorf("claim %q: want a claim name without spaces, control characters or '='", claim)
		}
		if err := config.CheckHeaderName(header); err != nil {
			return nil, err
		}
		if lh := strings.ToLower(header); headers[lh] {
			return nil, fmt.Errorf("header %s is listed twice", header)
		} else {
			headers[lh] = true
		}
		out = append(out, config.ClaimHeader{Claim: claim, Header: header})
	}
	return out, nil
}

// sizeSyntax is a positive decimal with an optional binary suffix.
var sizeSyntax = regexp.MustCompile(`^([1-9][0-9]{0,12})(Ki|Mi|Gi|Ti)?$`)

// parseByteSize takes a size in bytes: a plain integer (1048576) or one
// with a binary suffix (Ki, Mi, Gi, Ti), from 1 byte to max.
func parseByteSize(v string, max int64) (int64, error) {
	m := sizeSyntax.FindStringSubmatch(v)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: want bytes (1048576) or an integer with a binary suffix Ki, Mi, Gi or Ti (512Ki, 10Mi)", v)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	shift := map[string]uint{"": 0, "Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}[m[2]]
	if err != nil || n > max>>shift {
		return 0, fmt.Errorf("%s is out of range: at most %s", v, fmtSize(max))
	}
	return n << shift, nil
}

func fmtSize(n int64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "Ti"}, {30, "Gi"}, {20, "Mi"}, {10, "Ki"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseOrigins reads a comma list of CORS origins: "*", exact origins
// (scheme://host[:port]) or every subdomain of a domain
// (scheme://*.example.com[:port]). Origins are lower-cased, as browsers
// send them.
func parseOrigins(v string) ([]string, error) {
	items, err := parseList(strings.ToLower(v))
	if err != nil {
		return nil, err
	}
	for _, o := range items {
		if o == "*" {
			continue
		}
		if !isOrigin(o) {
			return nil, fmt.Errorf("%q is not an origin: want http(s)://host[:port], http(s)://*.domain[:port] or *, without a path", o)
		}
	}
	return items, nil
}

func isOrigin(o string) bool {
	scheme, hostport, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || hostport == "" || strings.ContainsAny(hostport, "/?#@\\ %") || hasCtl(hostport) {
		return false
	}
	host := hostport
	if strings.Contains(hostport, ":") {
		h, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return false
		}
		if _, err := parseInt(port, 1, 65535); err != nil {
			return false
		}
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Zone() == ""
		}
		host = h
	}
	return config.CheckHostPattern(host) == nil
}
