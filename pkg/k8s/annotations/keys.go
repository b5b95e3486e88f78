package annotations

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// serviceKeys are the settings of the Service as a whole (no route prefix).
// Read-only tables: each entry parses one key's value into its typed field.
var serviceKeys = map[string]func(*Service, string) error{
	"mode": func(s *Service, v string) error {
		m, err := parseEnum(v, string(ModeL7), string(ModeL4))
		s.Mode = Mode(m)
		return err
	},
	"hosts": func(s *Service, v string) (err error) {
		s.Hosts, err = parseHosts(v)
		return err
	},
	"l4-preserve-source": func(s *Service, v string) error {
		b, err := parseEnum(v, "true", "false")
		s.L4PreserveSource = b == "true"
		return err
	},
	"tls-secret": func(s *Service, v string) error {
		if !isDNSSubdomain(v) {
			return fmt.Errorf("%q is not a valid Secret name", v)
		}
		s.TLSSecret = v
		return nil
	},
	"lb-policy": func(s *Service, v string) error {
		p, err := parseEnum(v, string(config.LBRoundRobin), string(config.LBLeastRequest), string(config.LBRandom))
		s.LBPolicy = config.LBPolicy(p)
		return err
	},
	"connect-timeout": func(s *Service, v string) (err error) {
		s.ConnectTimeout, err = parsePositiveDuration(v)
		return err
	},
	"backend-server-name": func(s *Service, v string) error {
		if err := config.CheckHostname(v); err != nil {
			return err
		}
		s.BackendServerName = v
		return nil
	},
	"backend-ca-secret": func(s *Service, v string) error {
		if !isDNSSubdomain(v) {
			return fmt.Errorf("%q is not a valid Secret name", v)
		}
		s.BackendCASecret = v
		return nil
	},
	"canary-service": func(s *Service, v string) error {
		if !isDNSLabel(v) {
			return fmt.Errorf("%q is not a valid Service name", v)
		}
		canary(s).Service = v
		return nil
	},
	"canary-weight": func(s *Service, v string) (err error) {
		canary(s).Weight, err = parseInt(v, 0, 100)
		return err
	},
	"canary-header": func(s *Service, v string) (err error) {
		canary(s).Header, err = parseOneMatch(v, config.IsToken)
		return err
	},
	"canary-cookie": func(s *Service, v string) (err error) {
		canary(s).Cookie, err = parseOneMatch(v, config.IsToken)
		return err
	},
}

func canary(s *Service) *Canary {
	if s.Canary == nil {
		s.Canary = &Canary{}
	}
	return s.Canary
}

// routeKeys are the settings of one route; unprefixed they configure the
// default route, "<route>.<setting>" configures a named one.
var routeKeys = map[string]func(*Route, string) error{
	"hosts": func(r *Route, v string) (err error) {
		r.Hosts, err = parseHosts(v)
		return err
	},
	"port": func(r *Route, v string) error {
		if strings.Trim(v, "0123456789") == "" { // a number
			if _, err := parseInt(v, 1, 65535); err != nil {
				return fmt.Errorf("%q is neither a port number nor a port name", v)
			}
		} else if !isDNSLabel(v) {
			return fmt.Errorf("%q is neither a port number nor a port name", v)
		}
		r.Port = v
		return nil
	},
	"path-prefix": func(r *Route, v string) error { return setPath(r, &config.PathMatch{Prefix: v}, v) },
	"path-exact":  func(r *Route, v string) error { return setPath(r, &config.PathMatch{Exact: v}, v) },
	"path-regex": func(r *Route, v string) error {
		if err := setPath(r, &config.PathMatch{Regex: v}, ""); err != nil {
			return err
		}
		_, err := config.CompileMatchRegex(v)
		return err
	},
	"methods": func(r *Route, v string) (err error) {
		r.Match.Methods, err = parseMethods(v)
		return err
	},
	"match-headers": func(r *Route, v string) (err error) {
		r.Match.Headers, err = parseMatches(v, config.IsToken)
		return err
	},
	"match-query": func(r *Route, v string) (err error) {
		r.Match.Query, err = parseMatches(v, func(s string) bool { return s != "" && !hasSpaceOrCtl(s) })
		return err
	},
	"match-cookies": func(r *Route, v string) (err error) {
		r.Match.Cookies, err = parseMatches(v, config.IsToken)
		return err
	},
	"rewrite-prefix": func(r *Route, v string) error {
		if err := config.CheckPath(v); err != nil {
			return err
		}
		rewrite(r).Prefix = v
		return nil
	},
	"rewrite-host": func(r *Route, v string) error {
		if err := config.CheckHostname(v); err != nil {
			return err
		}
		rewrite(r).Host = v
		return nil
	},
	"redirect-scheme": func(r *Route, v string) (err error) {
		redirect(r).Scheme, err = parseEnum(v, "http", "https")
		return err
	},
	"redirect-host": func(r *Route, v string) error {
		if err := config.CheckHostname(v); err != nil {
			return err
		}
		redirect(r).Host = v
		return nil
	},
	"redirect-port": func(r *Route, v string) (err error) {
		redirect(r).Port, err = parseInt(v, 1, 65535)
		return err
	},
	"redirect-path": func(r *Route, v string) error {
		if err := config.CheckPath(v); err != nil {
			return err
		}
		redirect(r).Path = v
		return nil
	},
	"redirect-prefix": func(r *Route, v string) error {
		if err := config.CheckPath(v); err != nil {
			return err
		}
		redirect(r).Prefix = v
		return nil
	},
	"redirect-code": func(r *Route, v string) (err error) {
		var s string
		s, err = parseEnum(v, "301", "302", "303", "307", "308")
		if err == nil {
			redirect(r).Code, _ = parseInt(s, 301, 308)
		}
		return err
	},
	"request-headers-set":     headerList(func(r *Route) *[]config.Header { return &reqHeaders(r).Set }),
	"request-headers-add":     headerList(func(r *Route) *[]config.Header { return &reqHeaders(r).Add }),
	"request-headers-remove":  headerNames(func(r *Route) *[]string { return &reqHeaders(r).Remove }),
	"response-headers-set":    headerList(func(r *Route) *[]config.Header { return &respHeaders(r).Set }),
	"response-headers-add":    headerList(func(r *Route) *[]config.Header { return &respHeaders(r).Add }),
	"response-headers-remove": headerNames(func(r *Route) *[]string { return &respHeaders(r).Remove }),
	"timeout": func(r *Route, v string) (err error) {
		r.Timeout, err = parsePositiveDuration(v)
		return err
	},
}

func setPath(r *Route, pm *config.PathMatch, path string) error {
	if r.Match.Path != nil {
		return errors.New("set only one of path-prefix, path-exact, path-regex")
	}
	if path != "" {
		if err := config.CheckPath(path); err != nil {
			return err
		}
	}
	r.Match.Path = pm
	return nil
}

func rewrite(r *Route) *config.Rewrite {
	if r.Rewrite == nil {
		r.Rewrite = &config.Rewrite{}
	}
	return r.Rewrite
}

func redirect(r *Route) *config.Redirect {
	if r.Redirect == nil {
		r.Redirect = &config.Redirect{}
	}
	return r.Redirect
}

func reqHeaders(r *Route) *config.HeaderMutations {
	if r.RequestHeaders == nil {
		r.RequestHeaders = &config.HeaderMutations{}
	}
	return r.RequestHeaders
}

func respHeaders(r *Route) *config.HeaderMutations {
	if r.ResponseHeaders == nil {
		r.ResponseHeaders = &config.HeaderMutations{}
	}
	return r.ResponseHeaders
}

func headerList(field func(*Route) *[]config.Header) func(*Route, string) error {
	return func(r *Route, v string) error {
		hs, err := parseHeaders(v)
		if err != nil {
			return err
		}
		*field(r) = hs
		return nil
	}
}

func headerNames(field func(*Route) *[]string) func(*Route, string) error {
	return func(r *Route, v string) error {
		names, err := parseList(v)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := config.CheckHeaderName(n); err != nil {
				return err
			}
		}
		*field(r) = names
		return nil
	}
}
