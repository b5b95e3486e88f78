package annotations

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

func TestParseFullService(t *testing.T) {
	svc, err := Parse(map[string]string{
		"edge-agent.io/hosts":                   "Shop.example.com, *.shop.example.com",
		"edge-agent.io/lb-policy":               "least_request",
		"edge-agent.io/connect-timeout":         "2s",
		"edge-agent.io/timeout":                 "30s",
		"edge-agent.io/path-prefix":             "/",
		"edge-agent.io/request-headers-set":     "X-Team: shop\nCache-Control: no-cache, no-store\n",
		"edge-agent.io/response-headers-remove": "Server, X-Powered-By",
		"edge-agent.io/canary-service":          "shop-v2",
		"edge-agent.io/canary-weight":           "10",
		"edge-agent.io/canary-header":           "X-Beta: always",
		"edge-agent.io/canary-cookie":           "beta",
		"edge-agent.io/api.path-prefix":         "/api",
		"edge-agent.io/api.rewrite-prefix":      "/",
		"edge-agent.io/api.port":                "grpc",
		"edge-agent.io/api.methods":             "GET,POST",
		"edge-agent.io/api.match-headers":       "X-Version: 2\nX-Debug",
		"edge-agent.io/api.match-query":         "lang: en",
		"edge-agent.io/old.path-exact":          "/old",
		"edge-agent.io/old.redirect-path":       "/new",
		"edge-agent.io/old.redirect-code":       "301",
		"other.io/ignored":                      "whatever",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(svc.Hosts, ","); got != "shop.example.com,*.shop.example.com" {
		t.Errorf("hosts = %s", got)
	}
	if svc.LBPolicy != config.LBLeastRequest || svc.ConnectTimeout.D() != 2*time.Second {
		t.Errorf("service settings = %+v", svc)
	}
	if c := svc.Canary; c == nil || c.Service != "shop-v2" || c.Weight != 10 || c.Header.Name != "X-Beta" || c.Header.Exact != "always" || c.Cookie.Name != "beta" || c.Cookie.Exact != "" {
		t.Errorf("canary = %+v", svc.Canary)
	}
	if len(svc.Routes) != 3 || svc.Routes[0].Name != DefaultRouteName || svc.Routes[1].Name != "api" || svc.Routes[2].Name != "old" {
		t.Fatalf("routes = %+v", svc.Routes)
	}
	def, api, old := svc.Routes[0], svc.Routes[1], svc.Routes[2]
	if def.Timeout.D() != 30*time.Second || def.Match.Path.Prefix != "/" {
		t.Errorf("default route = %+v", def)
	}
	if hs := def.RequestHeaders.Set; len(hs) != 2 || hs[1].Name != "Cache-Control" || hs[1].Value != "no-cache, no-store" {
		t.Errorf("request-headers-set = %+v", hs)
	}
	if rm := def.ResponseHeaders.Remove; len(rm) != 2 || rm[0] != "Server" || rm[1] != "X-Powered-By" {
		t.Errorf("response-headers-remove = %+v", rm)
	}
	if api.Port != "grpc" || api.Match.Path.Prefix != "/api" || api.Rewrite.Prefix != "/" || strings.Join(api.Match.Methods, ",") != "GET,POST" {
		t.Errorf("api route = %+v", api)
	}
	if h := api.Match.Headers; len(h) != 2 || h[0] != (config.ValueMatch{Name: "X-Version", Exact: "2"}) || h[1] != (config.ValueMatch{Name: "X-Debug"}) {
		t.Errorf("api headers = %+v", h)
	}
	if q := api.Match.Query; len(q) != 1 || q[0] != (config.ValueMatch{Name: "lang", Exact: "en"}) {
		t.Errorf("api query = %+v", q)
	}
	if old.Match.Path.Exact != "/old" || old.Redirect.Path != "/new" || old.Redirect.Code != 301 {
		t.Errorf("old route = %+v / %+v", old.Match.Path, old.Redirect)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name   string
		annots map[string]string
		key    string
		reason string
	}{
		{"unknown key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timout": "1s"}, "edge-agent.io/timout", "unknown annotation"},
		{"planned key", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/retries": "3"}, "edge-agent.io/retries", "not supported by this version"},
		{"bare number duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "30"}, "edge-agent.io/timeout", "invalid duration"},
		{"negative duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "-1s"}, "edge-agent.io/timeout", "must not be negative"},
		{"zero duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "0s"}, "edge-agent.io/timeout", "more than 0s"},
		{"huge duration", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "2h"}, "edge-agent.io/timeout", "at most 1h"},
		{"bad host", map[string]string{"edge-agent.io/hosts": "a.example.com,bad_host"}, "edge-agent.io/hosts", "not a valid hostname"},
		{"empty host item", map[string]string{"edge-agent.io/hosts": "a.example.com,,b.example.com"}, "edge-agent.io/hosts", "empty item"},
		{"duplicate host", map[string]string{"edge-agent.io/hosts": "a.example.com,A.example.com"}, "edge-agent.io/hosts", "listed twice"},
		{"missing hosts", map[string]string{"edge-agent.io/timeout": "1s"}, "edge-agent.io/hosts", "required"},
		{"enum", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/lb-policy": "fastest"}, "edge-agent.io/lb-policy", `"fastest" is not one of round_robin, least_request, random`},
		{"weight range", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-service": "b", "edge-agent.io/canary-weight": "101"}, "edge-agent.io/canary-weight", "out of range 0-100"},
		{"weight not int", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-service": "b", "edge-agent.io/canary-weight": "10%"}, "edge-agent.io/canary-weight", "not an integer"},
		{"canary without service", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/canary-weight": "10"}, "edge-agent.io/canary-service", "required"},
		{"two path kinds", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-prefix": "/a", "edge-agent.io/path-exact": "/b"}, "edge-agent.io/path-prefix", "only one of"},
		{"relative path", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-prefix": "api"}, "edge-agent.io/path-prefix", "must start with /"},
		{"regex too complex", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/path-regex": "(a{1000}){1000}"}, "edge-agent.io/path-regex", "regex"},
		{"reserved header", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-set": "Host: evil.example.com"}, "edge-agent.io/request-headers-set", "managed by the proxy"},
		{"header injection", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/response-headers-add": "X-A: b\x01c"}, "edge-agent.io/response-headers-add", "control characters"},
		{"header without value", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-add": "X-A"}, "edge-agent.io/request-headers-add", `want "Name: value"`},
		{"lower-case method", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/methods": "get"}, "edge-agent.io/methods", "upper-case"},
		{"bad route name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/Api.timeout": "1s"}, "edge-agent.io/Api.timeout", "DNS label"},
		{"reserved route name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/default.timeout": "1s"}, "edge-agent.io/default.timeout", "reserved"},
		{"service key on a route", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/api.lb-policy": "random"}, "edge-agent.io/api.lb-policy", "whole Service"},
		{"l4 mode with hosts", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/mode": "l4"}, "edge-agent.io/hosts", "does not apply to mode l4"},
		{"l4 mode with a route key", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/api.path-prefix": "/x"}, "edge-agent.io/api.path-prefix", "no HTTP routes"},
		{"preserve source without l4", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/l4-preserve-source": "true"}, "edge-agent.io/l4-preserve-source", "only to mode l4"},
		{"preserve source not a bool", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/l4-preserve-source": "yes"}, "edge-agent.io/l4-preserve-source", "not one of true, false"},
		{"redirect code", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/redirect-code": "304"}, "edge-agent.io/redirect-code", "not one of"},
		{"redirect and rewrite", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/redirect-host": "b.example.com", "edge-agent.io/rewrite-host": "c.example.com"}, "edge-agent.io/redirect-code", "not both"},
		{"port", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/port": "70000"}, "edge-agent.io/port", "neither a port number nor a port name"},
		{"tls secret name", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/tls-secret": "../etc"}, "edge-agent.io/tls-secret", "not a valid Secret name"},
		{"huge value", map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/request-headers-set": "X-A: " + strings.Repeat("a", MaxValueLen)}, "edge-agent.io/request-headers-set", "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc, err := Parse(tc.annots)
			if err == nil {
				t.Fatalf("Parse accepted %v: %+v", tc.annots, svc)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			for _, e := range es {
				if e.Key == tc.key && strings.Contains(e.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("no error on %s containing %q; got %v", tc.key, tc.reason, err)
		})
	}
}

func TestParseReportsEveryProblemSorted(t *testing.T) {
	_, err := Parse(map[string]string{
		"edge-agent.io/hosts":   "a.example.com",
		"edge-agent.io/zzz":     "1",
		"edge-agent.io/timeout": "soon",
		"edge-agent.io/aaa":     "1",
	})
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	if es[0].Key != "edge-agent.io/aaa" || es[1].Key != "edge-agent.io/timeout" || es[2].Key != "edge-agent.io/zzz" {
		t.Fatalf("not sorted by key: %v", es)
	}
}

func TestParseL4Mode(t *testing.T) {
	svc, err := Parse(map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/l4-preserve-source": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Mode != ModeL4 || !svc.L4PreserveSource || len(svc.Routes) != 0 {
		t.Fatalf("service = %+v", svc)
	}
}

func TestHas(t *testing.T) {
	if Has(map[string]string{"other.io/x": "1"}) || Has(nil) {
		t.Error("Has without our prefix")
	}
	if !Has(map[string]string{"edge-agent.io/hosts": "a.example.com"}) {
		t.Error("Has with our prefix")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hosts", "a.example.com", "api.match-headers", "X-A: 1\nX-B")
	f.Add("path-regex", "/a(b|c)*", "request-headers-set", "X-A: b")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		svc, err := Parse(map[string]string{Prefix + k1: v1, Prefix + k2: v2})
		if err == nil && svc == nil {
			t.Fatal("nil service without error")
		}
	})
}
