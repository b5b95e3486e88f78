package translate

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/annotations"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type world struct{ in *Input }

func newWorld() *world {
	return &world{in: &Input{
		Services: map[NamespacedName]*corev1.Service{},
		Slices:   map[NamespacedName][]*discoveryv1.EndpointSlice{},
		Secrets:  map[NamespacedName]*corev1.Secret{},
	}}
}

// service adds a Service created age minutes after epoch, with one port 80
// named "http" unless ports are given.
func (w *world) service(ns, name string, age int, annots map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "/" + name),
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute)), Annotations: annots},
		Spec: corev1.ServiceSpec{Ports: ports},
	}
	w.in.Services[NamespacedName{ns, name}] = s
	return s
}

type ep struct {
	addr        string
	ready, term bool
}

func (w *world) slice(ns, svc, port string, num int32, eps ...ep) {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &port, Port: &num}},
	}
	for _, e := range eps {
		ready, term := e.ready, e.term
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: &term}})
	}
	w.in.Slices[NamespacedName{ns, svc}] = append(w.in.Slices[NamespacedName{ns, svc}], s)
}

func status(t *testing.T, r *Result, ns, name string) ServiceStatus {
	t.Helper()
	for _, s := range r.Status {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s/%s in %+v", ns, name, r.Status)
	return ServiceStatus{}
}

func route(r *Result, name string) *config.Route {
	for i := range r.Routes {
		if r.Routes[i].Name == name {
			return &r.Routes[i]
		}
	}
	return nil
}

func cluster(r *Result, name string) *config.Cluster {
	for i := range r.Clusters {
		if r.Clusters[i].Name == name {
			return &r.Clusters[i]
		}
	}
	return nil
}

func TestTranslateServiceRoutesAndEndpoints(t *testing.T) {
	w := newWorld()
	w.service("shop", "web", 0, map[string]string{
		"edge-agent.io/hosts":           "shop.example.com",
		"edge-agent.io/api.path-prefix": "/api",
		"edge-agent.io/api.port":        "grpc",
		"edge-agent.io/port":            "http",
	}, corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "grpc", Port: 9000, AppProtocol: strp("kubernetes.io/h2c")})
	w.service("shop", "plain", 0, nil) // no annotations: not exposed
	w.slice("shop", "web", "http", 8080, ep{"10.0.0.1", true, false}, ep{"10.0.0.2", false, false}, ep{"10.0.0.3", true, true})
	w.slice("shop", "web", "grpc", 9090, ep{"10.0.0.1", true, false})

	res := New(config.Kubernetes{}).Translate(w.in)
	if len(res.Status) != 1 {
		t.Fatalf("want only the annotated Service, got %+v", res.Status)
	}
	if st := status(t, res, "shop", "web"); st.State != StateServing || len(st.Problems) != 0 {
		t.Fatalf("status = %+v", st)
	}
	def := route(res, "k8s:shop/web/default")
	api := route(res, "k8s:shop/web/api")
	if def == nil || api == nil {
		t.Fatalf("routes = %+v", res.Routes)
	}
	if def.Backends[0].Cluster != "k8s:shop/web:http" || api.Backends[0].Cluster != "k8s:shop/web:grpc" {
		t.Errorf("backends: %+v %+v", def.Backends, api.Backends)
	}
	http := cluster(res, "k8s:shop/web:http")
	// Not ready and terminating endpoints take no new requests.
	if http == nil || len(http.Endpoints) != 1 || http.Endpoints[0].Address != "10.0.0.1:8080" || http.Protocol != config.UpstreamHTTP1 {
		t.Errorf("http cluster = %+v", http)
	}
	if g := cluster(res, "k8s:shop/web:grpc"); g == nil || g.Protocol != config.UpstreamH2C || g.Endpoints[0].Address != "10.0.0.1:9090" {
		t.Errorf("grpc cluster = %+v", g)
	}
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
	if err := config.Finalize(base); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(base, res); err != nil {
		t.Fatalf("merge: %v", err)
	}
}

func TestInvalidServiceKeepsLastGoodAndOthersServe(t *testing.T) {
	w := newWorld()
	a := w.service("team-a", "a", 0, map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "5s"})
	w.service("team-b", "b", 1, map[string]string{"edge-agent.io/hosts": "b.example.com"})
	tr := New(config.Kubernetes{})
	if res := tr.Translate(w.in); len(res.Routes) != 2 {
		t.Fatalf("routes = %+v", res.Routes)
	}
	a.Annotations = map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "5 seconds"}
	res := tr.Translate(w.in)
	st := status(t, res, "team-a", "a")
	if st.State != StateServingLastGood || len(st.Problems) != 1 || st.Problems[0].Reason != ReasonInvalidAnnotation || !strings.HasPrefix(st.Problems[0].Message, "edge-agent.io/timeout: ") {
		t.Fatalf("status = %+v", st)
	}
	if r := route(res, "k8s:team-a/a/default"); r == nil || r.Timeout.D() != 5*time.Second {
		t.Fatalf("last good route = %+v", r)
	}
	if status(t, res, "team-b", "b").State != StateServing || route(res, "k8s:team-b/b/default") == nil {
		t.Fatal("team b affected")
	}
	// A Service that was never valid serves nothing.
	w.service("team-c", "c", 2, map[string]string{"edge-agent.io/hosts": "c.example.com", "edge-agent.io/nope": "1"})
	res = tr.Translate(w.in)
	if st := status(t, res, "team-c", "c"); st.State != StateNotServing || route(res, "k8s:team-c/c/default") != nil {
		t.Fatalf("status = %+v", st)
	}
	// Endpoint changes still reach a Service serving its last good config.
	w.slice("team-a", "a", "http", 8080, ep{"10.1.0.1", true, false})
	res = tr.Translate(w.in)
	if c := cluster(res, "k8s:team-a/a:http"); c == nil || len(c.Endpoints) != 1 {
		t.Fatalf("cluster = %+v", c)
	}
}

func TestConflictOldestWins(t *testing.T) {
	w := newWorld()
	w.service("ns2", "young", 5, map[string]string{"edge-agent.io/hosts": "shared.example.com,young.example.com"})
	w.service("ns1", "old", 1, map[string]string{"edge-agent.io/hosts": "shared.example.com"})
	w.service("ns1", "other-path", 9, map[string]string{"edge-agent.io/hosts": "shared.example.com", "edge-agent.io/path-prefix": "/other"})
	res := New(config.Kubernetes{}).Translate(w.in)
	if r := route(res, "k8s:ns1/old/default"); r == nil || strings.Join(r.Hosts, ",") != "shared.example.com" {
		t.Fatalf("winner route = %+v", r)
	}
	if r := route(res, "k8s:ns2/young/default"); r == nil || strings.Join(r.Hosts, ",") != "young.example.com" {
		t.Fatalf("loser keeps only its own host: %+v", r)
	}
	st := status(t, res, "ns2", "young")
	if len(st.Problems) != 1 || st.Problems[0].Reason != ReasonRouteConflict || !strings.Contains(st.Problems[0].Message, "ns1/old") {
		t.Fatalf("loser status = %+v", st)
	}
	if st := status(t, res, "ns1", "other-path"); len(st.Problems) != 0 {
		t.Fatalf("a different path is no conflict: %+v", st)
	}
	// Same creation time: namespace/name decides, on every node.
	w2 := newWorld()
	w2.service("b", "x", 0, map[string]string{"edge-agent.io/hosts": "t.example.com"})
	w2.service("a", "x", 0, map[string]string{"edge-agent.io/hosts": "t.example.com"})
	res = New(config.Kubernetes{}).Translate(w2.in)
	if route(res, "k8s:a/x/default") == nil || route(res, "k8s:b/x/default") != nil {
		t.Fatalf("routes = %+v", res.Routes)
	}
	if st := status(t, res, "b", "x"); st.State != StateNotServing {
		t.Fatalf("status = %+v", st)
	}
}

func TestHostnamePolicy(t *testing.T) {
	w := newWorld()
	w.service("shop", "web", 0, map[string]string{"edge-agent.io/hosts": "shop.example.com,*.shop.example.com"})
	w.service("blog", "web", 0, map[string]string{"edge-agent.io/hosts": "shop.example.com,blog.example.com"})
	res := New(config.Kubernetes{Hostnames: []config.HostnameRule{
		{Hosts: []string{"shop.example.com", "*.shop.example.com"}, Namespaces: []string{"shop"}},
		{Hosts: []string{"blog.example.com"}, Namespaces: []string{"blog"}},
	}}).Translate(w.in)
	if r := route(res, "k8s:shop/web/default"); r == nil || len(r.Hosts) != 2 {
		t.Fatalf("shop = %+v", r)
	}
	if r := route(res, "k8s:blog/web/default"); r == nil || strings.Join(r.Hosts, ",") != "blog.example.com" {
		t.Fatalf("blog = %+v", r)
	}
	st := status(t, res, "blog", "web")
	if len(st.Problems) != 1 || st.Problems[0].Reason != ReasonHostnameNotAllowed {
		t.Fatalf("blog status = %+v", st)
	}
	for _, tc := range []struct {
		host, pattern string
		want          bool
	}{
		{"a.example.com", "*.example.com", true}, {"*.a.example.com", "*.example.com", true},
		{"*.example.com", "*.example.com", true}, {"example.com", "*.example.com", false},
		{"*.com", "*.example.com", false}, {"a.example.com", "a.example.com", true}, {"xa.example.com", "a.example.com", false},
	} {
		if got := hostCovered(tc.host, tc.pattern); got != tc.want {
			t.Errorf("hostCovered(%s, %s) = %v", tc.host, tc.pattern, got)
		}
	}
}

func TestCanary(t *testing.T) {
	w := newWorld()
	w.service("shop", "web", 0, map[string]string{
		"edge-agent.io/hosts":          "shop.example.com",
		"edge-agent.io/canary-service": "web-v2",
		"edge-agent.io/canary-weight":  "10",
		"edge-agent.io/canary-header":  "X-Beta: yes",
		"edge-agent.io/canary-cookie":  "beta: 1",
	})
	w.service("shop", "web-v2", 1, nil)
	res := New(config.Kubernetes{}).Translate(w.in)
	main := route(res, "k8s:shop/web/default")
	if main == nil || len(main.Backends) != 2 || *main.Backends[0].Weight != 90 || *main.Backends[1].Weight != 10 || main.Backends[1].Cluster != "k8s:shop/web-v2:http" {
		t.Fatalf("main = %+v", main)
	}
	hdr := route(res, "k8s:shop/web/default/canary-header")
	if hdr == nil || len(hdr.Backends) != 1 || hdr.Backends[0].Cluster != "k8s:shop/web-v2:http" || hdr.Match.Headers[0] != (config.ValueMatch{Name: "X-Beta", Exact: "yes"}) {
		t.Fatalf("header route = %+v", hdr)
	}
	if ck := route(res, "k8s:shop/web/default/canary-cookie"); ck == nil || ck.Match.Cookies[0] != (config.ValueMatch{Name: "beta", Exact: "1"}) {
		t.Fatalf("cookie route = %+v", ck)
	}
	if st := status(t, res, "shop", "web"); len(st.Problems) != 0 {
		t.Fatalf("status = %+v", st)
	}
	// A canary in another namespace (or missing) is an error on the key.
	w.service("shop", "web", 0, map[string]string{"edge-agent.io/hosts": "shop.example.com", "edge-agent.io/canary-service": "gone", "edge-agent.io/canary-weight": "10"})
	res = New(config.Kubernetes{}).Translate(w.in)
	if st := status(t, res, "shop", "web"); st.State != StateNotServing || !strings.HasPrefix(st.Problems[0].Message, "edge-agent.io/canary-service: ") {
		t.Fatalf("status = %+v", st)
	}
}

func TestServiceLevelErrors(t *testing.T) {
	w := newWorld()
	w.service("a", "two-ports", 0, map[string]string{"edge-agent.io/hosts": "a.example.com"},
		corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "admin", Port: 81})
	w.service("a", "tls-upstream", 0, map[string]string{"edge-agent.io/hosts": "b.example.com", "edge-agent.io/backend-ca-secret": "missing"},
		corev1.ServicePort{Name: "https", Port: 443, AppProtocol: strp("https")})
	w.service("a", "odd-protocol", 0, map[string]string{"edge-agent.io/hosts": "e.example.com"},
		corev1.ServicePort{Name: "x", Port: 443, AppProtocol: strp("example.com/quic")})
	w.service("a", "tls-system-roots", 0, map[string]string{"edge-agent.io/hosts": "f.example.com"},
		corev1.ServicePort{Name: "https", Port: 443, AppProtocol: strp("kubernetes.io/wss")})
	w.service("a", "rewrite", 0, map[string]string{"edge-agent.io/hosts": "c.example.com", "edge-agent.io/rewrite-prefix": "/x", "edge-agent.io/path-exact": "/y"})
	w.service("a", "no-secret", 0, map[string]string{"edge-agent.io/hosts": "d.example.com", "edge-agent.io/tls-secret": "missing"})
	res := New(config.Kubernetes{}).Translate(w.in)
	for _, tc := range []struct{ name, reason, msg string }{
		{"two-ports", ReasonInvalidAnnotation, "edge-agent.io/port: the Service has 2 ports"},
		{"tls-upstream", ReasonInvalidTLSSecret, "edge-agent.io/backend-ca-secret: secret a/missing not found"},
		{"odd-protocol", ReasonUnsupportedProtocol, `appProtocol "example.com/quic" is not one edge-agent speaks`},
		{"rewrite", ReasonInvalidAnnotation, "edge-agent.io/rewrite-prefix: needs a match.path.prefix"},
		{"no-secret", ReasonInvalidTLSSecret, "edge-agent.io/tls-secret: Secret a/missing not found"},
	} {
		st := status(t, res, "a", tc.name)
		if len(st.Problems) == 0 || st.Problems[0].Reason != tc.reason || !strings.Contains(st.Problems[0].Message, tc.msg) {
			t.Errorf("%s: status = %+v", tc.name, st)
		}
	}
	if c := cluster(res, "k8s:a/tls-system-roots:https"); c == nil || c.TLS == nil || c.TLS.ServerName != "tls-system-roots.a.svc" || c.Protocol != config.UpstreamHTTP1 {
		t.Errorf("wss cluster = %+v", c)
	}
	// A missing Secret still serves plaintext routes.
	if st := status(t, res, "a", "no-secret"); st.State != StateServing {
		t.Errorf("no-secret state = %s", st.State)
	}
}

func TestMergeRejectsReservedFileNames(t *testing.T) {
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}},
		Clusters: []config.Cluster{{Name: "k8s:x"}}}
	if _, err := Merge(base, &Result{}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("err = %v", err)
	}
}

func strp(s string) *string { return &s }

func TestL4Mode(t *testing.T) {
	w := newWorld()
	dns := w.service("kube", "dns", 0, map[string]string{"edge-agent.io/mode": "l4"},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP})
	dns.Spec.ClusterIP = "10.96.0.10"
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	name, tname, port := "dns", "dns-tcp", int32(5353)
	ready := true
	w.in.Slices[NamespacedName{"kube", "dns"}] = []*discoveryv1.EndpointSlice{{
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &udp}, {Name: &tname, Port: &port, Protocol: &tcp}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}}
	headless := w.service("kube", "headless", 1, map[string]string{"edge-agent.io/mode": "l4"})
	headless.Spec.ClusterIP = "None"
	res := New(config.Kubernetes{}).Translate(w.in)
	if st := status(t, res, "kube", "dns"); st.State != StateServing || len(st.Problems) != 0 {
		t.Fatalf("dns status %+v", st)
	}
	if len(res.L4) != 2 || len(res.Routes) != 0 {
		t.Fatalf("l4 = %+v routes = %+v", res.L4, res.Routes)
	}
	u := res.L4[0]
	if u.Address != "10.96.0.10:53" || u.Protocol != config.L4UDP || len(u.Backends) != 1 || u.Backends[0].Address != "10.2.0.5:5353" || u.PreserveSource {
		t.Fatalf("udp service %+v", u)
	}
	if st := status(t, res, "kube", "headless"); st.State != StateNotServing || !strings.Contains(st.Problems[0].Message, "needs an IPv4 ClusterIP") {
		t.Fatalf("headless status %+v", st)
	}
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
	if err := config.Finalize(base); err != nil {
		t.Fatal(err)
	}
	cfg, err := Merge(base, res)
	if err != nil || len(cfg.L4.Services) != 2 {
		t.Fatalf("merge: %v", err)
	}
}

func TestTrafficPolicy(t *testing.T) {
	w := newWorld()
	w.service("shop", "web", 0, map[string]string{
		"edge-agent.io/hosts":                          "shop.example.com",
		"edge-agent.io/timeout":                        "20s",
		"edge-agent.io/idle-timeout":                   "1m",
		"edge-agent.io/retry-attempts":                 "2",
		"edge-agent.io/retry-on":                       "gateway-error,retriable-status-codes",
		"edge-agent.io/retry-status-codes":             "429",
		"edge-agent.io/retry-per-try-timeout":          "5s",
		"edge-agent.io/retry-non-idempotent":           "true",
		"edge-agent.io/rate-limit-requests":            "100",
		"edge-agent.io/rate-limit-key":                 "clientIP",
		"edge-agent.io/mirror-service":                 "web-shadow",
		"edge-agent.io/mirror-percent":                 "0.5",
		"edge-agent.io/fault-abort-status":             "503",
		"edge-agent.io/fault-abort-percent":            "0.1",
		"edge-agent.io/canary-service":                 "web-v2",
		"edge-agent.io/canary-weight":                  "10",
		"edge-agent.io/canary-header":                  "X-Beta: yes",
		"edge-agent.io/events.path-prefix":             "/events",
		"edge-agent.io/events.streaming":               "true",
		"edge-agent.io/lb-policy":                      "maglev",
		"edge-agent.io/hash-header":                    "X-User",
		"edge-agent.io/slow-start":                     "1m",
		"edge-agent.io/max-connections":                "100",
		"edge-agent.io/max-pending-requests":           "10",
		"edge-agent.io/max-requests":                   "500",
		"edge-agent.io/max-retries":                    "5",
		"edge-agent.io/outlier-consecutive-5xx":        "7",
		"edge-agent.io/outlier-base-ejection-time":     "10s",
		"edge-agent.io/health-check-type":              "http",
		"edge-agent.io/health-check-path":              "/ready",
		"edge-agent.io/health-check-expected-statuses": "200,204",
	})
	w.service("shop", "web-shadow", 1, nil)
	w.service("shop", "web-v2", 2, nil)
	w.slice("shop", "web-shadow", "http", 8080, ep{"10.0.9.1", true, false})
	res := New(config.Kubernetes{}).Translate(w.in)
	if st := status(t, res, "shop", "web"); st.State != StateServing || len(st.Problems) != 0 {
		t.Fatalf("status = %+v", st)
	}
	def := route(res, "k8s:shop/web/default")
	if def == nil {
		t.Fatalf("routes = %+v", res.Routes)
	}
	if def.Streaming || def.IdleTimeout.D() != time.Minute || def.Timeout.D() != 20*time.Second {
		t.Errorf("timeouts = %+v", def)
	}
	rp := def.Retry
	if rp == nil || rp.Attempts != 2 || rp.PerTryTimeout.D() != 5*time.Second || !rp.NonIdempotent ||
		len(rp.On) != 2 || rp.On[1] != config.RetryStatusCodes || len(rp.StatusCodes) != 1 || rp.StatusCodes[0] != 429 {
		t.Fatalf("retry = %+v", rp)
	}
	// Config defaults fill what the annotations left out.
	if rp.BackoffBase.D() != config.DefaultRetryBackoffBase || rp.BufferLimit != config.DefaultRetryBufferLimit || rp.Budget.Percent != config.DefaultRetryBudgetPercent {
		t.Errorf("retry defaults = %+v", rp)
	}
	if rl := def.RateLimit; rl == nil || rl.Requests != 100 || rl.Burst != 100 || rl.Key != config.RateLimitByClientIP || rl.Period.D() != time.Second {
		t.Errorf("rate limit = %+v", def.RateLimit)
	}
	// The mirror is the other Service's cluster, like the canary.
	if m := def.Mirror; m == nil || *m != (config.Mirror{Cluster: "k8s:shop/web-shadow:http", Percent: 0.5}) {
		t.Errorf("mirror = %+v", def.Mirror)
	}
	if f := def.Fault; f == nil || f.Delay != nil || f.Abort == nil || *f.Abort != (config.FaultAbort{Status: 503, Percent: 0.1}) {
		t.Errorf("fault = %+v", def.Fault)
	}
	if beta := route(res, "k8s:shop/web/default/canary-header"); beta == nil || beta.Mirror == nil || beta.Retry == nil || beta.Backends[0].Cluster != "k8s:shop/web-v2:http" {
		t.Errorf("canary beta route = %+v", beta)
	}
	// Policies belong to the route that set them.
	if ev := route(res, "k8s:shop/web/events"); ev == nil || !ev.Streaming || ev.Retry != nil || ev.RateLimit != nil || ev.Mirror != nil || ev.Fault != nil || ev.IdleTimeout.D() != config.DefaultStreamIdleTimeout {
		t.Errorf("events route = %+v", ev)
	}
	// Every cluster of the Service (its own, the canary's, the mirror's)
	// gets the Service's cluster policies.
	for _, name := range []string{"k8s:shop/web:http", "k8s:shop/web-v2:http", "k8s:shop/web-shadow:http"} {
		c := cluster(res, name)
		if c == nil {
			t.Fatalf("no cluster %s in %+v", name, res.Clusters)
		}
		if c.LBPolicy != config.LBMaglev || c.Hash == nil || *c.Hash != (config.HashPolicy{Header: "X-User"}) || c.SlowStart.D() != time.Minute {
			t.Errorf("%s: lb = %s %+v %s", name, c.LBPolicy, c.Hash, c.SlowStart.D())
		}
		if b := c.CircuitBreaker; b == nil || *b != (config.CircuitBreaker{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 500, MaxRetries: 5}) {
			t.Errorf("%s: circuit breaker = %+v", name, c.CircuitBreaker)
		}
		o := c.OutlierDetection
		if o == nil || *o.Consecutive5xx != 7 || *o.ConsecutiveConnectFailures != config.DefaultOutlierConsecutiveConn || o.BaseEjectionTime.D() != 10*time.Second || o.MaxEjectionTime.D() != config.DefaultOutlierMaxEjectionTime {
			t.Errorf("%s: outlier detection = %+v", name, o)
		}
		h := c.HealthCheck
		if h == nil || h.Type != config.HealthCheckHTTP || h.Path != "/ready" || len(h.ExpectedStatuses) != 2 || h.Interval.D() != config.DefaultHealthCheckInterval {
			t.Errorf("%s: health check = %+v", name, h)
		}
	}
	// Each cluster owns its policies.
	if a, b := cluster(res, "k8s:shop/web:http"), cluster(res, "k8s:shop/web-shadow:http"); a.HealthCheck == b.HealthCheck || a.CircuitBreaker == b.CircuitBreaker {
		t.Error("clusters share policy structs")
	}
	if c := cluster(res, "k8s:shop/web-shadow:http"); len(c.Endpoints) != 1 || c.Endpoints[0].Address != "10.0.9.1:8080" {
		t.Errorf("shadow endpoints = %+v", c.Endpoints)
	}
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
	if err := config.Finalize(base); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(base, res); err != nil {
		t.Fatalf("merge: %v", err)
	}
}

func TestInvalidPolicyDropsOnlyThatService(t *testing.T) {
	w := newWorld()
	grpcPort := corev1.ServicePort{Name: "grpc", Port: 9000, AppProtocol: strp("grpc")}
	w.service("shop", "good", 0, map[string]string{"edge-agent.io/hosts": "good.example.com", "edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-per-try-timeout": "5s"})
	w.service("shop", "per-try", 1, map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/timeout": "10s",
		"edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-per-try-timeout": "20s"})
	w.service("shop", "per-try-default", 1, map[string]string{"edge-agent.io/hosts": "b.example.com",
		"edge-agent.io/api.path-prefix": "/api", "edge-agent.io/api.retry-attempts": "2", "edge-agent.io/api.retry-per-try-timeout": "30s"})
	w.service("shop", "sticky", 1, map[string]string{"edge-agent.io/hosts": "c.example.com", "edge-agent.io/lb-policy": "maglev"})
	w.service("shop", "grpc-check", 1, map[string]string{"edge-agent.io/hosts": "d.example.com", "edge-agent.io/health-check-type": "grpc"})
	w.service("shop", "h2-breaker", 1, map[string]string{"edge-agent.io/hosts": "e.example.com", "edge-agent.io/max-connections": "10"}, grpcPort)
	w.service("shop", "grpc-mirror", 1, map[string]string{"edge-agent.io/hosts": "f.example.com", "edge-agent.io/health-check-type": "grpc",
		"edge-agent.io/mirror-service": "plain-shadow"}, grpcPort)
	w.service("shop", "plain-shadow", 1, nil, corev1.ServicePort{Name: "grpc", Port: 9000})
	w.service("shop", "mirror-gone", 1, map[string]string{"edge-agent.io/hosts": "g.example.com", "edge-agent.io/mirror-service": "gone"})
	w.service("shop", "mirror-self", 1, map[string]string{"edge-agent.io/hosts": "h.example.com", "edge-agent.io/mirror-service": "mirror-self"})
	w.service("shop", "bad-value", 1, map[string]string{"edge-agent.io/hosts": "i.example.com", "edge-agent.io/retry-attempts": "2", "edge-agent.io/retry-on": "5xx,always"})
	res := New(config.Kubernetes{}).Translate(w.in)
	for _, tc := range []struct{ name, msg string }{
		{"per-try", "edge-agent.io/retry-per-try-timeout: must be between 0 (the route timeout) and the route timeout 10s, got 20s"},
		{"per-try-default", "edge-agent.io/api.retry-per-try-timeout: must be between 0 (the route timeout) and the route timeout 15s, got 30s"},
		{"sticky", "edge-agent.io/lb-policy: maglev needs what to hash"},
		{"grpc-check", "edge-agent.io/health-check-type: grpc health checks need a cluster with protocol h2c (ServicePort appProtocol grpc or kubernetes.io/h2c)"},
		{"h2-breaker", "edge-agent.io/max-connections: applies to http1 clusters (h2c multiplexes one connection per endpoint); use max-requests"},
		{"grpc-mirror", "edge-agent.io/health-check-type: cluster k8s:shop/plain-shadow:grpc: grpc health checks need a cluster with protocol h2c"},
		{"mirror-gone", "edge-agent.io/mirror-service: Service shop/gone not found (the mirror must be in the same namespace)"},
		{"mirror-self", "edge-agent.io/mirror-service: a Service cannot be its own mirror"},
		{"bad-value", `edge-agent.io/retry-on: "always" is not one of`},
	} {
		st := status(t, res, "shop", tc.name)
		if st.State != StateNotServing || len(st.Problems) != 1 || st.Problems[0].Reason != ReasonInvalidAnnotation || !strings.HasPrefix(st.Problems[0].Message, tc.msg) {
			t.Errorf("%s: status = %+v", tc.name, st)
		}
		if len(st.Routes) != 0 {
			t.Errorf("%s: serves %v", tc.name, st.Routes)
		}
	}
	if st := status(t, res, "shop", "good"); st.State != StateServing || len(st.Problems) != 0 {
		t.Fatalf("good status = %+v", st)
	}
	if r := route(res, "k8s:shop/good/default"); r == nil || r.Retry == nil || r.Retry.PerTryTimeout.D() != 5*time.Second {
		t.Fatalf("good route = %+v", r)
	}
	if len(res.Routes) != 1 || len(res.Clusters) != 1 {
		t.Fatalf("only the good Service serves: routes %d clusters %d", len(res.Routes), len(res.Clusters))
	}
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
	if err := config.Finalize(base); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(base, res); err != nil {
		t.Fatalf("merge: %v", err)
	}
}

func TestInvalidPolicyKeepsLastGood(t *testing.T) {
	w := newWorld()
	a := w.service("team-a", "a", 0, map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/rate-limit-requests": "10"})
	tr := New(config.Kubernetes{})
	tr.Translate(w.in)
	a.Annotations = map[string]string{"edge-agent.io/hosts": "a.example.com", "edge-agent.io/rate-limit-requests": "10", "edge-agent.io/lb-policy": "maglev"}
	res := tr.Translate(w.in)
	st := status(t, res, "team-a", "a")
	if st.State != StateServingLastGood || len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0].Message, "edge-agent.io/lb-policy: ") {
		t.Fatalf("status = %+v", st)
	}
	if r := route(res, "k8s:team-a/a/default"); r == nil || r.RateLimit == nil || r.RateLimit.Requests != 10 {
		t.Fatalf("last good route = %+v", r)
	}
	if c := cluster(res, "k8s:team-a/a:http"); c == nil || c.LBPolicy != config.LBRoundRobin {
		t.Fatalf("last good cluster = %+v", c)
	}
}

func authSecret(w *world, ns, name string, data map[string]string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{AuthSecretLabel: AuthSecretLabelValue}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	w.in.Secrets[NamespacedName{ns, name}] = s
}

func bcryptHash(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func shaHash(pw string) string {
	d := sha1.Sum([]byte(pw))
	return "{SHA}" + base64.StdEncoding.EncodeToString(d[:])
}

func mergeOK(t *testing.T, res *Result) *config.Config {
	t.Helper()
	base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
	if err := config.Finalize(base); err != nil {
		t.Fatal(err)
	}
	cfg, err := Merge(base, res)
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	return cfg
}

func TestSecurity(t *testing.T) {
	w := newWorld()
	alice := bcryptHash(t, "alice-password", bcrypt.MinCost)
	authSecret(w, "shop", "staff", map[string]string{"users": "# staff\nalice:" + alice + "\r\n\nbob:" + shaHash("bob-password") + "\n"})
	authSecret(w, "shop", "partners", map[string]string{"keys": "key-one-0123456789\n# retired: key-zero\n  key-two-0123456789  \n"})
	w.service("shop", "web", 0, map[string]string{
		"edge-agent.io/hosts":                     "shop.example.com",
		"edge-agent.io/ip-allow":                  "10.0.0.0/8, 2001:db8::/32",
		"edge-agent.io/ip-deny":                   "10.6.6.6",
		"edge-agent.io/basic-auth-secret":         "staff",
		"edge-agent.io/waf":                       "block",
		"edge-agent.io/waf-exclude-rules":         "920350",
		"edge-agent.io/max-body-bytes":            "8Mi",
		"edge-agent.io/cors-allow-origins":        "https://*.shop.example.com",
		"edge-agent.io/cors-allow-credentials":    "true",
		"edge-agent.io/canary-service":            "web-v2",
		"edge-agent.io/canary-header":             "X-Beta: yes",
		"edge-agent.io/api.path-prefix":           "/api",
		"edge-agent.io/api.api-keys-secret":       "partners",
		"edge-agent.io/api.api-keys-header":       "X-Partner-Key",
		"edge-agent.io/api.jwt-issuer":            "https://id.example.com/",
		"edge-agent.io/api.jwt-jwks-url":          "https://id.example.com/jwks.json",
		"edge-agent.io/api.jwt-algorithms":        "RS256,EdDSA",
		"edge-agent.io/api.jwt-audiences":         "shop",
		"edge-agent.io/api.jwt-claims-to-headers": "sub=X-User",
		"edge-agent.io/api.jwt-optional":          "true",
		"edge-agent.io/api.ext-auth-bypass":       "true",
	})
	w.service("shop", "web-v2", 1, nil)
	res := New(config.Kubernetes{}).Translate(w.in)
	if st := status(t, res, "shop", "web"); st.State != StateServing || len(st.Problems) != 0 {
		t.Fatalf("status = %+v", st)
	}
	def, api := route(res, "k8s:shop/web/default"), route(res, "k8s:shop/web/api")
	if def == nil || api == nil {
		t.Fatalf("routes = %+v", res.Routes)
	}
	if ip := def.IPRules; ip == nil || strings.Join(ip.Allow, ",") != "10.0.0.0/8,2001:db8::/32" || strings.Join(ip.Deny, ",") != "10.6.6.6" {
		t.Errorf("ip rules = %+v", def.IPRules)
	}
	b := def.BasicAuth
	if b == nil || b.Realm != config.DefaultBasicAuthRealm || b.Source != "secret shop/staff" || b.UsersFile != "" ||
		len(b.Users) != 2 || b.Users[0] != "alice:"+alice || b.Users[1] != "bob:"+shaHash("bob-password") {
		t.Errorf("basic auth = %+v", def.BasicAuth)
	}
	if wf := def.WAF; wf == nil || wf.Mode != config.WAFBlock || wf.ParanoiaLevel != config.DefaultWAFParanoiaLevel || len(wf.ExcludeRules) != 1 || wf.ExcludeRules[0] != 920350 {
		t.Errorf("waf = %+v", def.WAF)
	}
	if def.MaxBodyBytes != 8<<20 || def.JWT != nil || def.APIKeys != nil || def.ExtAuth != nil {
		t.Errorf("default route = %+v", def)
	}
	if c := def.CORS; c == nil || c.AllowOrigins[0] != "https://*.shop.example.com" || !c.AllowCredentials || c.MaxAge.D() != 10*time.Minute || len(c.AllowMethods) == 0 {
		t.Errorf("cors = %+v", def.CORS)
	}
	// The canary's beta route is the same route for another backend: it
	// must check the same things.
	if beta := route(res, "k8s:shop/web/default/canary-header"); beta == nil || beta.BasicAuth == nil || beta.IPRules == nil || beta.WAF == nil || beta.MaxBodyBytes != 8<<20 || beta.CORS == nil {
		t.Errorf("canary beta route = %+v", beta)
	}
	k := api.APIKeys
	if k == nil || k.Header != "X-Partner-Key" || k.Source != "secret shop/partners" || strings.Join(k.Keys, ",") != "key-one-0123456789,key-two-0123456789" {
		t.Errorf("api keys = %+v", api.APIKeys)
	}
	j := api.JWT
	if j == nil || !j.Optional || len(j.Providers) != 1 {
		t.Fatalf("jwt = %+v", api.JWT)
	}
	p := j.Providers[0]
	if p.Name != "k8s" || p.Issuer != "https://id.example.com/" || p.JWKSURL != "https://id.example.com/jwks.json" || strings.Join(p.Algorithms, ",") != "RS256,EdDSA" ||
		strings.Join(p.Audiences, ",") != "shop" || p.FromHeader != "Authorization" || p.ClockSkew.D() != config.DefaultJWTClockSkew ||
		p.JWKSRefresh.D() != config.DefaultJWKSRefresh || len(p.ClaimsToHeaders) != 1 || p.ClaimsToHeaders[0] != (config.ClaimHeader{Claim: "sub", Header: "X-User"}) {
		t.Errorf("jwt provider = %+v", p)
	}
	if a := api.ExtAuth; a == nil || !a.Bypass || a.HTTP != nil || a.GRPC != nil {
		t.Errorf("ext auth = %+v", api.ExtAuth)
	}
	if api.BasicAuth != nil || api.IPRules != nil || api.WAF != nil || api.MaxBodyBytes != 0 || api.CORS != nil {
		t.Errorf("api route has the default route's controls: %+v", api)
	}
	cfg := mergeOK(t, res)
	// What /debug/config shows: where the credentials came from, never them.
	js, err := json.Marshal(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{alice, "key-one-0123456789", "key-two", shaHash("bob-password")} {
		if strings.Contains(string(js), secret) {
			t.Errorf("the config's JSON shows %q", secret)
		}
	}
	if !strings.Contains(string(js), `"source":"secret shop/staff"`) {
		t.Errorf("the config's JSON does not name the Secret: %s", js)
	}
}

func TestSecuritySecretErrors(t *testing.T) {
	secretValues := []string{"pw-in-the-clear", "s3cr3t-key\x01", "carol", "dave"}
	w := newWorld()
	authSecret(w, "shop", "no-users-key", map[string]string{"keys": "k-0123456789"})
	authSecret(w, "shop", "plain", map[string]string{"users": "carol:pw-in-the-clear"})
	authSecret(w, "shop", "not-htpasswd", map[string]string{"users": "pw-in-the-clear"})
	// Cost 13 (only the header says so: computing one takes a while).
	costly := strings.Replace(bcryptHash(t, "x", bcrypt.MinCost), "$04$", "$13$", 1)
	authSecret(w, "shop", "costly", map[string]string{"users": "dave:" + costly})
	authSecret(w, "shop", "bad-bcrypt", map[string]string{"users": "carol:$2y$10$pw-in-the-clear"})
	authSecret(w, "shop", "twice", map[string]string{"users": "carol:" + shaHash("a") + "\ncarol:" + shaHash("b")})
	authSecret(w, "shop", "ctl-key", map[string]string{"keys": "ok-key-0123456789\ns3cr3t-key\x01"})
	authSecret(w, "shop", "empty", map[string]string{"keys": "# nothing yet\n\n"})
	authSecret(w, "other", "elsewhere", map[string]string{"keys": "k-0123456789"})
	w.service("shop", "good", 0, map[string]string{"edge-agent.io/hosts": "good.example.com"})
	for i, tc := range []struct{ name, key, secret string }{
		{"missing", "basic-auth-secret", "gone"},
		{"no-data-key", "basic-auth-secret", "no-users-key"},
		{"plain", "basic-auth-secret", "plain"},
		{"not-htpasswd", "basic-auth-secret", "not-htpasswd"},
		{"costly", "basic-auth-secret", "costly"},
		{"bad-bcrypt", "basic-auth-secret", "bad-bcrypt"},
		{"twice", "basic-auth-secret", "twice"},
		{"ctl-key", "api-keys-secret", "ctl-key"},
		{"empty", "api-keys-secret", "empty"},
		{"other-namespace", "api-keys-secret", "elsewhere"},
		{"named-route", "api.api-keys-secret", "gone"},
	} {
		annots := map[string]string{"edge-agent.io/hosts": tc.name + ".example.com", "edge-agent.io/" + tc.key: tc.secret}
		if strings.HasPrefix(tc.key, "api.") {
			annots["edge-agent.io/api.path-prefix"] = "/api"
		}
		w.service("shop", tc.name, i+1, annots)
	}
	res := New(config.Kubernetes{}).Translate(w.in)
	for _, tc := range []struct{ name, msg string }{
		{"missing", "edge-agent.io/basic-auth-secret: secret shop/gone not found (it must be in the Service's namespace and labeled edge-agent.io/auth-secret=true)"},
		{"no-data-key", `edge-agent.io/basic-auth-secret: secret shop/no-users-key has no data key "users"`},
		{"plain", `edge-agent.io/basic-auth-secret: secret shop/plain data key "users": line 1: unsupported hash: use bcrypt (htpasswd -B) or {SHA} (htpasswd -s); plain text is refused`},
		{"not-htpasswd", `edge-agent.io/basic-auth-secret: secret shop/not-htpasswd data key "users": line 1: want user:hash`},
		{"costly", `edge-agent.io/basic-auth-secret: secret shop/costly data key "users": line 1: bcrypt cost 13 is more than 12`},
		{"bad-bcrypt", `edge-agent.io/basic-auth-secret: secret shop/bad-bcrypt data key "users": line 1: not a valid bcrypt hash`},
		{"twice", `edge-agent.io/basic-auth-secret: secret shop/twice data key "users": line 2: the user of line 1 again`},
		{"ctl-key", `edge-agent.io/api-keys-secret: secret shop/ctl-key data key "keys": line 2: a key may not contain control characters`},
		{"empty", `edge-agent.io/api-keys-secret: secret shop/empty data key "keys" holds no entries`},
		{"other-namespace", "edge-agent.io/api-keys-secret: secret shop/elsewhere not found"},
		{"named-route", "edge-agent.io/api.api-keys-secret: secret shop/gone not found"},
	} {
		st := status(t, res, "shop", tc.name)
		if st.State != StateNotServing || len(st.Routes) != 0 || len(st.Problems) != 1 || st.Problems[0].Reason != ReasonInvalidSecret || !strings.HasPrefix(st.Problems[0].Message, tc.msg) {
			t.Errorf("%s: status = %+v", tc.name, st)
		}
		for _, p := range st.Problems {
			for _, v := range secretValues {
				if strings.Contains(p.Message, v) {
					t.Errorf("%s: the problem shows a Secret value %q: %s", tc.name, v, p.Message)
				}
			}
		}
	}
	// Only the broken Services are dropped.
	if st := status(t, res, "shop", "good"); st.State != StateServing || route(res, "k8s:shop/good/default") == nil {
		t.Fatalf("good status = %+v", st)
	}
	if len(res.Routes) != 1 {
		t.Fatalf("routes = %+v", res.Routes)
	}
	mergeOK(t, res)
}

func TestSecuritySecretRemovedFailsClosed(t *testing.T) {
	w := newWorld()
	authSecret(w, "shop", "staff", map[string]string{"users": "alice:" + shaHash("pw")})
	w.service("shop", "web", 0, map[string]string{"edge-agent.io/hosts": "shop.example.com", "edge-agent.io/basic-auth-secret": "staff"})
	tr := New(config.Kubernetes{})
	if r := route(tr.Translate(w.in), "k8s:shop/web/default"); r == nil || r.BasicAuth == nil {
		t.Fatalf("route = %+v", r)
	}
	// Rotation: the new content is served.
	authSecret(w, "shop", "staff", map[string]string{"users": "alice:" + shaHash("pw2") + "\nbob:" + shaHash("pw3")})
	if r := route(tr.Translate(w.in), "k8s:shop/web/default"); r == nil || len(r.BasicAuth.Users) != 2 {
		t.Fatalf("route after rotation = %+v", r)
	}
	// The last good annotations need the same Secret: the route is not
	// served without its check.
	delete(w.in.Secrets, NamespacedName{"shop", "staff"})
	res := tr.Translate(w.in)
	st := status(t, res, "shop", "web")
	if st.State != StateNotServing || route(res, "k8s:shop/web/default") != nil || st.Problems[0].Reason != ReasonInvalidSecret {
		t.Fatalf("status = %+v routes = %+v", st, res.Routes)
	}
}

func TestSecurityModelErrorsNameTheKey(t *testing.T) {
	// Values the parser refuses never reach the model; these go straight
	// to the checks the translator runs on each fragment, as a model rule
	// the parser does not know yet would.
	routes := []config.Route{{
		Name: "k8s:shop/web/api", Hosts: []string{"a.example.com"}, Match: config.Match{Path: &config.PathMatch{Prefix: "/"}},
		Backends:     []config.Backend{{Cluster: "k8s:shop/web:http"}},
		WAF:          &config.WAF{Mode: config.WAFBlock, ParanoiaLevel: 5},
		MaxBodyBytes: 2 << 40,
		IPRules:      &config.IPRules{Allow: []string{"10.0.0.0/33"}},
		JWT:          &config.JWTAuth{Providers: []config.JWTProvider{{Name: "k8s", Issuer: "i", JWKSURL: "https://i.example.com/k", Algorithms: []string{"HS256"}}}},
	}}
	clusters := []config.Cluster{{Name: "k8s:shop/web:http", Endpoints: []config.Endpoint{{Address: "10.0.0.1:80"}}}}
	if err := config.FinalizeFragment(routes, clusters, nil); err != nil {
		t.Fatalf("FinalizeFragment checks these now: %v", err)
	}
	err := checkSecurity(routes, clusters)
	if err == nil {
		t.Fatal("checkSecurity accepted the route")
	}
	var msgs []string
	for _, se := range fieldErrors(err, []string{"api"}, clusters) {
		msgs = append(msgs, se.Error())
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{
		"edge-agent.io/api.waf-paranoia-level: must be between 1 and 4",
		"edge-agent.io/api.max-body-bytes: must be 0 (the node default) or up to 1TiB",
		`edge-agent.io/api.ip-allow: "10.0.0.0/33" is not a CIDR`,
		`edge-agent.io/api.jwt-algorithms: must be one of`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	// A fragment without security controls is not checked twice.
	if err := checkSecurity([]config.Route{{Name: "x"}}, nil); err != nil {
		t.Errorf("checkSecurity without controls: %v", err)
	}
}

// FuzzSecurityParserWithinModel: whatever security value the annotation
// parser accepts, the model accepts too (else one Service could only be
// refused at the merge of all of them).
func FuzzSecurityParserWithinModel(f *testing.F) {
	for _, s := range [][2]string{
		{"ip-allow", "10.0.0.0/8, 2001:db8::/32, 192.0.2.1"},
		{"cors-allow-origins", "https://*.a.example.com:8443, http://[::1]:3000, *"},
		{"jwt-jwks-url", "http://keys.auth.svc:8080/jwks"},
		{"jwt-claims-to-headers", "sub=X-User"},
		{"jwt-audiences", "a,b"},
		{"jwt-issuer", "https://id.example.com/"},
		{"basic-auth-realm", "Shop staff"},
		{"api-keys-header", "X-Key"},
		{"max-body-bytes", "1Ti"},
		{"waf-exclude-rules", "1,999999"},
		{"cors-max-age", "24h"},
		{"jwt-clock-skew", "5m"},
	} {
		f.Add(s[0], s[1])
	}
	keys := []string{"ip-allow", "ip-deny", "api-keys-header", "basic-auth-realm", "jwt-issuer", "jwt-jwks-url", "jwt-algorithms",
		"jwt-audiences", "jwt-from-header", "jwt-from-cookie", "jwt-claims-to-headers", "jwt-optional", "jwt-clock-skew",
		"ext-auth-bypass", "waf", "waf-paranoia-level", "waf-exclude-rules", "max-body-bytes", "cors-allow-origins",
		"cors-allow-methods", "cors-allow-headers", "cors-expose-headers", "cors-allow-credentials", "cors-max-age"}
	f.Fuzz(func(t *testing.T, key, value string) {
		if !slices.Contains(keys, key) {
			key = keys[len(key)%len(keys)]
		}
		annots := map[string]string{
			"edge-agent.io/hosts":              "a.example.com",
			"edge-agent.io/jwt-issuer":         "i",
			"edge-agent.io/jwt-jwks-url":       "https://i.example.com/k",
			"edge-agent.io/jwt-algorithms":     "RS256",
			"edge-agent.io/api-keys-secret":    "keys",
			"edge-agent.io/basic-auth-secret":  "users",
			"edge-agent.io/waf":                "detect",
			"edge-agent.io/cors-allow-origins": "https://a.example.com",
		}
		annots["edge-agent.io/"+key] = value
		w := newWorld()
		authSecret(w, "ns", "keys", map[string]string{"keys": "k"})
		authSecret(w, "ns", "users", map[string]string{"users": "u:" + shaHash("p")})
		w.service("ns", "s", 0, annots)
		res := New(config.Kubernetes{}).Translate(w.in)
		st := res.Status[0]
		for _, p := range st.Problems {
			// The parser's own errors are "<key>: <reason>" from
			// annotations.Parse; the model's come after it passed.
			if p.Reason == ReasonInvalidAnnotation && st.State == StateNotServing && !strings.Contains(p.Message, "unknown annotation") {
				if _, err := annotations.Parse(annots); err == nil {
					t.Fatalf("the parser accepted %s=%q but translation failed: %s", key, value, p.Message)
				}
			}
		}
		if st.State == StateServing {
			base := &config.Config{Listeners: []config.Listener{{Name: "http", Address: "127.0.0.1:8080"}}}
			if err := config.Finalize(base); err != nil {
				t.Fatal(err)
			}
			if _, err := Merge(base, res); err != nil {
				t.Fatalf("%s=%q: merge: %v", key, value, err)
			}
		}
	})
}
