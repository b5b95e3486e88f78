package translate

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edge-agent/edge-agent/pkg/config"
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
