package translate

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/annotations"
)

// AuthSecretLabel marks the Secrets that api-keys-secret and
// basic-auth-secret may name. The source caches only Secrets of type
// kubernetes.io/tls and Secrets carrying this label (value
// AuthSecretLabelValue): other credentials in a namespace never enter the
// agent's memory.
const (
	AuthSecretLabel      = "edge-agent.io/auth-secret"
	AuthSecretLabelValue = "true"
)

// MaxBcryptCost bounds the bcrypt cost of basic-auth users: every check of
// a wrong password costs 2^cost rounds on every node, so one route's users
// must not make guessing cost the node seconds of CPU.
const MaxBcryptCost = 12

// routeSecurity fills the route's access control from its annotations,
// reading the Secrets they name. Errors name the annotation key, the Secret
// and its data key: never a value from the Secret.
func routeSecurity(in *Input, svc *corev1.Service, r *annotations.Route, route *config.Route) []*serviceError {
	var errs []*serviceError
	if ip := r.IPRules; ip != nil {
		route.IPRules = &config.IPRules{Allow: slices.Clone(ip.Allow), Deny: slices.Clone(ip.Deny)}
	}
	if k := r.APIKeys; k != nil {
		keys, src, err := secretLines(in, svc, k.Secret, annotations.APIKeysDataKey, checkAPIKeys)
		if err != nil {
			errs = append(errs, &serviceError{Reason: ReasonInvalidSecret, Key: routeKey(r.Name, "api-keys-secret"), Msg: err.Error()})
		} else {
			route.APIKeys = &config.APIKeys{Header: k.Header, Keys: keys, Source: src}
		}
	}
	if b := r.BasicAuth; b != nil {
		users, src, err := secretLines(in, svc, b.Secret, annotations.BasicAuthDataKey, checkHtpasswd)
		if err != nil {
			errs = append(errs, &serviceError{Reason: ReasonInvalidSecret, Key: routeKey(r.Name, "basic-auth-secret"), Msg: err.Error()})
		} else {
			route.BasicAuth = &config.BasicAuth{Realm: b.Realm, Users: users, Source: src}
		}
	}
	if j := r.JWT; j != nil {
		c := &config.JWTAuth{Optional: j.Optional, Providers: make([]config.JWTProvider, len(j.Providers))}
		for i, p := range j.Providers {
			p.Audiences = slices.Clone(p.Audiences)
			p.Algorithms = slices.Clone(p.Algorithms)
			p.ClaimsToHeaders = slices.Clone(p.ClaimsToHeaders)
			c.Providers[i] = p
		}
		route.JWT = c
	}
	if r.ExtAuthBypass {
		route.ExtAuth = &config.ExtAuth{Bypass: true}
	}
	if w := r.WAF; w != nil {
		c := *w
		c.ExcludeRules = slices.Clone(w.ExcludeRules)
		route.WAF = &c
	}
	route.MaxBodyBytes = r.MaxBodyBytes
	if c := r.CORS; c != nil {
		cc := *c
		cc.AllowOrigins = slices.Clone(c.AllowOrigins)
		cc.AllowMethods = slices.Clone(c.AllowMethods)
		cc.AllowHeaders = slices.Clone(c.AllowHeaders)
		cc.ExposeHeaders = slices.Clone(c.ExposeHeaders)
		route.CORS = &cc
	}
	return errs
}

// secretLines reads the entries under dataKey of Secret name in the
// Service's namespace: one per line, blank lines and lines starting with #
// skipped, as the proxy reads keysFile and usersFile. check vets the
// entries; its errors say which line, never what it holds.
func secretLines(in *Input, svc *corev1.Service, name, dataKey string, check func([]string) error) ([]string, string, error) {
	ref := svc.Namespace + "/" + name
	sec := in.Secrets[NamespacedName{svc.Namespace, name}]
	if sec == nil {
		return nil, "", fmt.Errorf("secret %s not found (it must be in the Service's namespace and labeled %s=%s)", ref, AuthSecretLabel, AuthSecretLabelValue)
	}
	data, ok := sec.Data[dataKey]
	if !ok {
		return nil, "", fmt.Errorf("secret %s has no data key %q", ref, dataKey)
	}
	var lines []string
	for l := range strings.SplitSeq(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			// Keep the numbering: errors name the line.
			l = ""
		}
		lines = append(lines, l)
	}
	if err := check(lines); err != nil {
		return nil, "", fmt.Errorf("secret %s data key %q: %w", ref, dataKey, err)
	}
	out := slices.DeleteFunc(lines, func(l string) bool { return l == "" })
	if len(out) == 0 {
		return nil, "", fmt.Errorf("secret %s data key %q holds no entries", ref, dataKey)
	}
	return out, "secret " + ref, nil
}

// checkAPIKeys accepts keys that can arrive in a header value.
func checkAPIKeys(lines []string) error {
	for i, l := range lines {
		if l == "" {
			continue
		}
		if len(l) > config.MaxHeaderValueLen {
			return fmt.Errorf("line %d: a key is at most %d bytes", i+1, config.MaxHeaderValueLen)
		}
		for j := 0; j < len(l); j++ {
			if c := l[j]; c < 0x20 && c != '\t' || c == 0x7f {
				return fmt.Errorf("line %d: a key may not contain control characters", i+1)
			}
		}
	}
	return nil
}

// checkHtpasswd accepts user:hash lines with the hashes the proxy checks:
// bcrypt ($2a$, $2b$, $2y$; cost at most MaxBcryptCost) or {SHA}.
func checkHtpasswd(lines []string) error {
	seen := map[string]int{}
	for i, l := range lines {
		if l == "" {
			continue
		}
		n := i + 1
		user, hash, ok := strings.Cut(l, ":")
		if !ok || user == "" || strings.ContainsFunc(user, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			return fmt.Errorf("line %d: want user:hash (htpasswd), with a user name without spaces", n)
		}
		if first, dup := seen[user]; dup {
			return fmt.Errorf("line %d: the user of line %d again", n, first)
		}
		seen[user] = n
		switch {
		case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
			cost, err := bcrypt.Cost([]byte(hash))
			if err != nil || len(hash) != 60 {
				return fmt.Errorf("line %d: not a valid bcrypt hash", n)
			}
			if cost > MaxBcryptCost {
				return fmt.Errorf("line %d: bcrypt cost %d is more than %d (each wrong password would cost every node that much CPU); use htpasswd -B -C %d or less", n, cost, MaxBcryptCost, MaxBcryptCost)
			}
		case strings.HasPrefix(hash, "{SHA}"):
			if d, err := base64.StdEncoding.DecodeString(hash[len("{SHA}"):]); err != nil || len(d) != 20 {
				return fmt.Errorf("line %d: not a valid {SHA} hash", n)
			}
		default:
			return fmt.Errorf("line %d: unsupported hash: use bcrypt (htpasswd -B) or {SHA} (htpasswd -s); plain text is refused", n)
		}
	}
	return nil
}

// hasSecurity reports whether a route sets any control that only full
// validation checks.
func hasSecurity(r *config.Route) bool {
	return r.IPRules != nil || r.APIKeys != nil || r.BasicAuth != nil || r.JWT != nil || r.ExtAuth != nil || r.WAF != nil || r.MaxBodyBytes != 0
}

// checkSecurity runs the model's route security checks on a fragment. The
// model makes them only in config.Validate (config.FinalizeFragment does
// not), so a value the annotation parser let through but the model refuses
// would otherwise fail the merge of every Service. Field paths are the
// fragment's routes[i], as FinalizeFragment's.
func checkSecurity(routes []config.Route, clusters []config.Cluster) error {
	if !slices.ContainsFunc(routes, func(r config.Route) bool { return hasSecurity(&r) }) {
		return nil
	}
	c := config.Config{
		// A stand-in listener: the routes' own listeners were checked by
		// FinalizeFragment.
		Listeners: []config.Listener{{Name: "fragment", Address: "127.0.0.1:1", Protocol: config.ListenerHTTP}},
		Routes:    make([]config.Route, len(routes)),
		Clusters:  slices.Clone(clusters),
	}
	for i, r := range routes {
		r.Listeners = nil
		c.Routes[i] = r
	}
	var fes config.Errors
	if err := config.Finalize(&c); !errors.As(err, &fes) {
		return err
	}
	var out config.Errors
	for _, fe := range fes {
		if strings.HasPrefix(fe.Path, "routes[") {
			out = append(out, fe)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
