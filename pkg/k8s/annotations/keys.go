package annotations

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
		p, err := parseEnum(v, string(config.LBRoundRobin), string(config.LBLeastRequest), string(config.LBRandom), string(config.LBMaglev))
		s.LBPolicy = config.LBPolicy(p)
		return err
	},
	"hash-header": func(s *Service, v string) error {
		if !config.IsToken(v) {
			return fmt.Errorf("%q is not a valid header name", v)
		}
		hash(s).Header = v
		return nil
	},
	"hash-cookie": func(s *Service, v string) error {
		if !config.IsToken(v) {
			return fmt.Errorf("%q is not a valid cookie name", v)
		}
		hash(s).Cookie = v
		return nil
	},
	"hash-source-ip": func(s *Service, v string) error {
		b, err := parseBool(v)
		if b {
			hash(s).SourceIP = true
		}
		return err
	},
	"slow-start": func(s *Service, v string) (err error) {
		s.SlowStart, err = parseDuration(v, 0, config.MaxSlowStartWindow)
		return err
	},
	// 0 means "no limit" in the model; an annotation saying 0 would read as
	// "none allowed", so the limits start at 1 (omit the key for no limit).
	"max-connections": func(s *Service, v string) (err error) {
		breaker(s).MaxConnections, err = parseInt(v, 1, config.MaxPolicyLimit)
		return err
	},
	"max-pending-requests": func(s *Service, v string) (err error) {
		breaker(s).MaxPendingRequests, err = parseInt(v, 0, config.MaxPolicyLimit)
		return err
	},
	"max-requests": func(s *Service, v string) (err error) {
		breaker(s).MaxRequests, err = parseInt(v, 1, config.MaxPolicyLimit)
		return err
	},
	"max-retries": func(s *Service, v string) (err error) {
		breaker(s).MaxRetries, err = parseInt(v, 1, config.MaxPolicyLimit)
		return err
	},
	"outlier-consecutive-5xx": func(s *Service, v string) error {
		n, err := parseInt(v, 0, 1000)
		outlier(s).Consecutive5xx = &n
		return err
	},
	"outlier-consecutive-gateway-errors": func(s *Service, v string) (err error) {
		outlier(s).ConsecutiveGatewayErrors, err = parseInt(v, 0, 1000)
		return err
	},
	"outlier-consecutive-connect-failures": func(s *Service, v string) error {
		n, err := parseInt(v, 0, 1000)
		outlier(s).ConsecutiveConnectFailures = &n
		return err
	},
	"outlier-base-ejection-time": func(s *Service, v string) (err error) {
		outlier(s).BaseEjectionTime, err = parseDuration(v, 100*time.Millisecond, config.MaxOutlierEjectionTime)
		return err
	},
	"outlier-max-ejection-time": func(s *Service, v string) (err error) {
		outlier(s).MaxEjectionTime, err = parseDuration(v, 100*time.Millisecond, config.MaxOutlierEjectionTime)
		return err
	},
	"outlier-max-ejection-percent": func(s *Service, v string) (err error) {
		outlier(s).MaxEjectionPercent, err = parseInt(v, 1, 100)
		return err
	},
	"health-check-type": func(s *Service, v string) error {
		t, err := parseEnum(v, string(config.HealthCheckHTTP), string(config.HealthCheckGRPC), string(config.HealthCheckTCP))
		healthCheck(s).Type = config.HealthCheckType(t)
		return err
	},
	"health-check-path": func(s *Service, v string) error {
		if err := config.CheckPath(v); err != nil {
			return err
		}
		healthCheck(s).Path = v
		return nil
	},
	"health-check-interval": func(s *Service, v string) (err error) {
		healthCheck(s).Interval, err = parseDuration(v, config.MinHealthCheckInterval, config.MaxHealthCheckInterval)
		return err
	},
	"health-check-timeout": func(s *Service, v string) (err error) {
		healthCheck(s).Timeout, err = parseDuration(v, 0, config.MaxHealthCheckInterval)
		return err
	},
	"health-check-healthy-threshold": func(s *Service, v string) (err error) {
		healthCheck(s).HealthyThreshold, err = parseInt(v, 1, 100)
		return err
	},
	"health-check-unhealthy-threshold": func(s *Service, v string) (err error) {
		healthCheck(s).UnhealthyThreshold, err = parseInt(v, 1, 100)
		return err
	},
	"health-check-expected-statuses": func(s *Service, v string) (err error) {
		healthCheck(s).ExpectedStatuses, err = parseIntList(v, 100, 599)
		return err
	},
	"health-check-grpc-service": func(s *Service, v string) error {
		if !isGRPCServiceName(v) {
			return fmt.Errorf("%q is not a fully qualified gRPC service name (such as shop.v1.Cart)", v)
		}
		healthCheck(s).Service = v
		return nil
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

func hash(s *Service) *config.HashPolicy {
	if s.Hash == nil {
		s.Hash = &config.HashPolicy{}
	}
	return s.Hash
}

func breaker(s *Service) *config.CircuitBreaker {
	if s.CircuitBreaker == nil {
		s.CircuitBreaker = &config.CircuitBreaker{}
	}
	return s.CircuitBreaker
}

func outlier(s *Service) *config.OutlierDetection {
	if s.OutlierDetection == nil {
		s.OutlierDetection = &config.OutlierDetection{}
	}
	return s.OutlierDetection
}

func healthCheck(s *Service) *config.HealthCheck {
	if s.HealthCheck == nil {
		s.HealthCheck = &config.HealthCheck{}
	}
	return s.HealthCheck
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
	"streaming": func(r *Route, v string) (err error) {
		r.Streaming, err = parseBool(v)
		return err
	},
	"idle-timeout": func(r *Route, v string) (err error) {
		r.IdleTimeout, err = parseDuration(v, config.MinStreamIdleTimeout, config.MaxStreamIdleTimeout)
		return err
	},
	"retry-attempts": func(r *Route, v string) (err error) {
		retry(r).Attempts, err = parseInt(v, 1, config.MaxRetryAttempts)
		return err
	},
	"retry-on": func(r *Route, v string) (err error) {
		retry(r).On, err = parseRetryOn(v)
		return err
	},
	"retry-status-codes": func(r *Route, v string) (err error) {
		retry(r).StatusCodes, err = parseIntList(v, 400, 599)
		return err
	},
	"retry-per-try-timeout": func(r *Route, v string) (err error) {
		retry(r).PerTryTimeout, err = parsePositiveDuration(v)
		return err
	},
	"retry-backoff-base": func(r *Route, v string) (err error) {
		retry(r).BackoffBase, err = parseDuration(v, 0, time.Minute)
		return err
	},
	"retry-backoff-max": func(r *Route, v string) (err error) {
		retry(r).BackoffMax, err = parseDuration(v, 0, 5*time.Minute)
		return err
	},
	"retry-non-idempotent": func(r *Route, v string) (err error) {
		retry(r).NonIdempotent, err = parseBool(v)
		return err
	},
	"retry-buffer-limit": func(r *Route, v string) (err error) {
		retry(r).BufferLimit, err = parseInt(v, 1, config.MaxRetryBufferLimit)
		return err
	},
	"retry-budget-percent": func(r *Route, v string) (err error) {
		retry(r).Budget.Percent, err = parseInt(v, 1, 100)
		return err
	},
	"retry-budget-min-per-second": func(r *Route, v string) error {
		n, err := parseInt(v, 0, 10000)
		retry(r).Budget.MinPerSecond = &n
		return err
	},
	"rate-limit-requests": func(r *Route, v string) (err error) {
		rateLimit(r).Requests, err = parseInt(v, 1, config.MaxPolicyLimit)
		return err
	},
	"rate-limit-period": func(r *Route, v string) (err error) {
		rateLimit(r).Period, err = parseDuration(v, time.Millisecond, 24*time.Hour)
		return err
	},
	"rate-limit-burst": func(r *Route, v string) (err error) {
		rateLimit(r).Burst, err = parseInt(v, 1, config.MaxPolicyLimit)
		return err
	},
	"rate-limit-key": func(r *Route, v string) error {
		k, err := parseEnum(v, string(config.RateLimitByRoute), string(config.RateLimitByClientIP), string(config.RateLimitByHeader))
		rateLimit(r).Key = config.RateLimitKey(k)
		return err
	},
	"rate-limit-header": func(r *Route, v string) error {
		if !config.IsToken(v) {
			return fmt.Errorf("%q is not a valid header name", v)
		}
		rateLimit(r).Header = v
		return nil
	},
	"mirror-service": func(r *Route, v string) error {
		if !isDNSLabel(v) {
			return fmt.Errorf("%q is not a valid Service name", v)
		}
		mirror(r).Service = v
		return nil
	},
	"mirror-percent": func(r *Route, v string) (err error) {
		mirror(r).Percent, err = parsePercent(v)
		return err
	},
	"fault-delay": func(r *Route, v string) (err error) {
		faultDelay(r).Duration, err = parseDuration(v, 0, config.MaxFaultDelay)
		return err
	},
	"fault-delay-percent": func(r *Route, v string) (err error) {
		faultDelay(r).Percent, err = parsePercent(v)
		return err
	},
	"fault-abort-status": func(r *Route, v string) (err error) {
		faultAbort(r).Status, err = parseInt(v, 400, 599)
		return err
	},
	"fault-abort-percent": func(r *Route, v string) (err error) {
		faultAbort(r).Percent, err = parsePercent(v)
		return err
	},
	// Access control.
	"ip-allow": func(r *Route, v string) (err error) {
		ipRules(r).Allow, err = parseCIDRs(v)
		return err
	},
	"ip-deny": func(r *Route, v string) (err error) {
		ipRules(r).Deny, err = parseCIDRs(v)
		return err
	},
	"api-keys-secret": func(r *Route, v string) error {
		if !isDNSSubdomain(v) {
			return fmt.Errorf("%q is not a valid Secret name", v)
		}
		apiKeys(r).Secret = v
		return nil
	},
	"api-keys-header": func(r *Route, v string) error {
		// The header is removed before the request goes upstream: the
		// headers the proxy manages (Host, ...) cannot carry a key.
		if err := config.CheckHeaderName(v); err != nil {
			return err
		}
		apiKeys(r).Header = v
		return nil
	},
	"basic-auth-secret": func(r *Route, v string) error {
		if !isDNSSubdomain(v) {
			return fmt.Errorf("%q is not a valid Secret name", v)
		}
		basicAuth(r).Secret = v
		return nil
	},
	"basic-auth-realm": func(r *Route, v string) error {
		if err := checkRealm(v); err != nil {
			return err
		}
		basicAuth(r).Realm = v
		return nil
	},
	"jwt-issuer": func(r *Route, v string) error {
		if v == "" || hasCtl(v) || strings.TrimSpace(v) != v {
			return fmt.Errorf("%q is not an issuer: want the tokens' iss, without control characters or surrounding spaces", v)
		}
		jwtProvider(r).Issuer = v
		return nil
	},
	"jwt-jwks-url": func(r *Route, v string) error {
		if err := checkJWKSURL(v); err != nil {
			return err
		}
		jwtProvider(r).JWKSURL = v
		return nil
	},
	"jwt-algorithms": func(r *Route, v string) (err error) {
		jwtProvider(r).Algorithms, err = parseJWTAlgorithms(v)
		return err
	},
	"jwt-audiences": func(r *Route, v string) error {
		auds, err := parseList(v)
		if err != nil {
			return err
		}
		for _, a := range auds {
			if hasCtl(a) {
				return fmt.Errorf("audience %q contains control characters", a)
			}
		}
		jwtProvider(r).Audiences = auds
		return nil
	},
	"jwt-from-header": func(r *Route, v string) error {
		if !config.IsToken(v) {
			return fmt.Errorf("%q is not a valid header name", v)
		}
		jwtProvider(r).FromHeader = v
		return nil
	},
	"jwt-from-cookie": func(r *Route, v string) error {
		if !config.IsToken(v) {
			return fmt.Errorf("%q is not a valid cookie name", v)
		}
		jwtProvider(r).FromCookie = v
		return nil
	},
	"jwt-claims-to-headers": func(r *Route, v string) (err error) {
		jwtProvider(r).ClaimsToHeaders, err = parseClaimHeaders(v)
		return err
	},
	"jwt-optional": func(r *Route, v string) error {
		b, err := parseBool(v)
		jwtProvider(r) // the group is on either way
		r.JWT.Optional = b
		return err
	},
	"jwt-clock-skew": func(r *Route, v string) (err error) {
		jwtProvider(r).ClockSkew, err = parseDuration(v, 0, MaxJWTClockSkew)
		return err
	},
	"ext-auth-bypass": func(r *Route, v string) (err error) {
		r.ExtAuthBypass, err = parseBool(v)
		return err
	},
	"waf": func(r *Route, v string) error {
		m, err := parseEnum(v, string(config.WAFDetect), string(config.WAFBlock))
		waf(r).Mode = config.WAFMode(m)
		return err
	},
	"waf-paranoia-level": func(r *Route, v string) (err error) {
		waf(r).ParanoiaLevel, err = parseInt(v, 1, 4)
		return err
	},
	"waf-exclude-rules": func(r *Route, v string) (err error) {
		waf(r).ExcludeRules, err = parseIntList(v, 1, 999999)
		return err
	},
	"max-body-bytes": func(r *Route, v string) (err error) {
		r.MaxBodyBytes, err = parseByteSize(v, MaxBodyBytes)
		return err
	},
	"cors-allow-origins": func(r *Route, v string) (err error) {
		cors(r).AllowOrigins, err = parseOrigins(v)
		return err
	},
	"cors-allow-methods": func(r *Route, v string) (err error) {
		cors(r).AllowMethods, err = parseMethods(v)
		return err
	},
	"cors-allow-headers": func(r *Route, v string) (err error) {
		cors(r).AllowHeaders, err = parseTokens(v, "header")
		return err
	},
	"cors-expose-headers": func(r *Route, v string) (err error) {
		cors(r).ExposeHeaders, err = parseTokens(v, "header")
		return err
	},
	"cors-allow-credentials": func(r *Route, v string) (err error) {
		cors(r).AllowCredentials, err = parseBool(v)
		return err
	},
	"cors-max-age": func(r *Route, v string) (err error) {
		cors(r).MaxAge, err = parseDuration(v, 0, MaxCORSMaxAge)
		return err
	},
}

// Bounds the model applies to security durations.
const (
	MaxJWTClockSkew = 5 * time.Minute
	MaxCORSMaxAge   = 24 * time.Hour
)

func ipRules(r *Route) *config.IPRules {
	if r.IPRules == nil {
		r.IPRules = &config.IPRules{}
	}
	return r.IPRules
}

func apiKeys(r *Route) *APIKeys {
	if r.APIKeys == nil {
		r.APIKeys = &APIKeys{}
	}
	return r.APIKeys
}

func basicAuth(r *Route) *BasicAuth {
	if r.BasicAuth == nil {
		r.BasicAuth = &BasicAuth{}
	}
	return r.BasicAuth
}

// jwtProvider is the route's one JWT provider.
func jwtProvider(r *Route) *config.JWTProvider {
	if r.JWT == nil {
		r.JWT = &config.JWTAuth{Providers: []config.JWTProvider{{Name: JWTProviderName}}}
	}
	return &r.JWT.Providers[0]
}

func waf(r *Route) *config.WAF {
	if r.WAF == nil {
		r.WAF = &config.WAF{}
	}
	return r.WAF
}

func cors(r *Route) *config.CORS {
	if r.CORS == nil {
		r.CORS = &config.CORS{}
	}
	return r.CORS
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

func retry(r *Route) *config.RetryPolicy {
	if r.Retry == nil {
		r.Retry = &config.RetryPolicy{}
	}
	return r.Retry
}

func rateLimit(r *Route) *config.RateLimit {
	if r.RateLimit == nil {
		r.RateLimit = &config.RateLimit{}
	}
	return r.RateLimit
}

func mirror(r *Route) *Mirror {
	if r.Mirror == nil {
		r.Mirror = &Mirror{}
	}
	return r.Mirror
}

func faultDelay(r *Route) *config.FaultDelay {
	if r.Fault == nil {
		r.Fault = &config.Fault{}
	}
	if r.Fault.Delay == nil {
		r.Fault.Delay = &config.FaultDelay{}
	}
	return r.Fault.Delay
}

func faultAbort(r *Route) *config.FaultAbort {
	if r.Fault == nil {
		r.Fault = &config.Fault{}
	}
	if r.Fault.Abort == nil {
		r.Fault.Abort = &config.FaultAbort{}
	}
	return r.Fault.Abort
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
