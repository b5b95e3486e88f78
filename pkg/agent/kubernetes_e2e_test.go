package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/edge-agent/edge-agent/internal/kubetest"
	"github.com/edge-agent/edge-agent/internal/netnstest"
	"github.com/edge-agent/edge-agent/pkg/agent"
)

// One API server serves every Kubernetes test in this package: it takes
// seconds to start, and each test works in namespaces of its own.
var (
	kubeOnce sync.Once
	kubeEnv  *kubetest.Env
	kubeStop func()
	kubeErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kubeStop != nil {
		kubeStop()
	}
	os.Exit(code)
}

func sharedKube(t *testing.T) *kubetest.Env {
	t.Helper()
	kubeOnce.Do(func() { kubeEnv, kubeStop, kubeErr = kubetest.StartMain() })
	if kubeErr != nil {
		t.Fatalf("kube-apiserver: %v", kubeErr)
	}
	return kubeEnv
}

// kubeTest is one test's Kubernetes world: its namespace, backends in a
// network namespace (the API server refuses loopback endpoint addresses),
// and an agent in Kubernetes mode that watches only that namespace.
type kubeTest struct {
	t      *testing.T
	ctx    context.Context
	client kubernetes.Interface
	env    *kubetest.Env
	ns     string
	host   *netnstest.Host
	agent  *harness
	// backends by address ("10.a.b.c:8080").
	backends map[string]*nsBackend
}

// nsBackend answers with its own address in X-Backend; /slow waits for
// release (or 10s) so a test can hold a request in flight.
type nsBackend struct {
	addr    string
	hits    atomic.Int64
	release chan struct{}
}

// newKubeTest starts the test's world; extraConfig is appended under
// `kubernetes:` with {{NS}} replaced by the test's namespace.
func newKubeTest(t *testing.T, extraConfig string) *kubeTest {
	t.Helper()
	env := sharedKube(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kt := &kubeTest{t: t, ctx: ctx, client: env.Client, ns: "t-" + rand.String(8), backends: map[string]*nsBackend{}}
	if _, err := kt.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kt.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = kt.client.CoreV1().Namespaces().Delete(context.Background(), kt.ns, metav1.DeleteOptions{})
	})
	kt.host = netnstest.New(t, 3)
	for _, a := range kt.host.Addrs {
		addr := net.JoinHostPort(a.String(), "8080")
		b := &nsBackend{addr: addr, release: make(chan struct{})}
		kt.backends[addr] = b
		ln := kt.host.Listen(t, addr)
		srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
	}
	kt.env = env
	kt.agent = kt.startAgent(extraConfig, agent.KubernetesOptions{Identity: "test-node"})
	return kt
}

// startAgent starts an agent in Kubernetes mode on this test's namespace,
// with an http and an https listener (no file certificates).
func (kt *kubeTest) startAgent(extraConfig string, ko agent.KubernetesOptions) *harness {
	kt.t.Helper()
	cfg := fmt.Sprintf(`
admin:
  address: 127.0.0.1:%d
listeners:
  - name: http
    address: 127.0.0.1:%d
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls: {certificates: []}
server:
  accessLog: false
  drainTimeout: 2s
kubernetes:
  namespaces: [%s]
  debounce: 20ms
%s`, freePort(kt.t), freePort(kt.t), freePort(kt.t), kt.ns, strings.ReplaceAll(extraConfig, "{{NS}}", kt.ns))
	if ko.Client == nil {
		ko.Client = kt.env.Client
	}
	// No test attaches eBPF to this machine's interfaces: the pin directory
	// is not a BPF filesystem, so the L4 data path reports itself
	// unavailable while the config still shows what it would serve.
	return startAgent(kt.t, cfg, startOpts{kube: &ko, bpfPinDir: filepath.Join(kt.t.TempDir(), "bpf", "edge-agent")})
}

func (b *nsBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	w.Header().Set("X-Backend", b.addr)
	if r.URL.Path == "/slow" {
		select {
		case <-b.release:
		case <-time.After(10 * time.Second):
		}
	}
	fmt.Fprintf(w, "host=%s path=%s", r.Host, r.URL.Path)
}

// addr returns the i-th backend address.
func (kt *kubeTest) addr(i int) string {
	return net.JoinHostPort(kt.host.Addrs[i].String(), "8080")
}

func (kt *kubeTest) createService(name string, annots map[string]string) *corev1.Service {
	kt.t.Helper()
	return kt.createServiceLabelled(name, nil, annots)
}

// annotate replaces the Service's annotations.
func (kt *kubeTest) annotate(name string, annots map[string]string) {
	kt.t.Helper()
	svc, err := kt.client.CoreV1().Services(kt.ns).Get(kt.ctx, name, metav1.GetOptions{})
	if err != nil {
		kt.t.Fatal(err)
	}
	svc.Annotations = annots
	if _, err := kt.client.CoreV1().Services(kt.ns).Update(kt.ctx, svc, metav1.UpdateOptions{}); err != nil {
		kt.t.Fatalf("update Service %s: %v", name, err)
	}
}

type endpointState struct {
	addr        string // backend address index
	ready, term bool
}

// putSlice creates or replaces the Service's one EndpointSlice.
func (kt *kubeTest) putSlice(svc string, eps ...endpointState) {
	kt.t.Helper()
	kt.putSliceOn(svc, "http", 8080, eps...)
}

// putSliceOn creates or replaces the Service's one EndpointSlice, for the
// port named name at port number num.
func (kt *kubeTest) putSliceOn(svc, name string, num int32, eps ...endpointState) {
	kt.t.Helper()
	port, proto := num, corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-1", Namespace: kt.ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, e := range eps {
		host, _, _ := net.SplitHostPort(e.addr)
		ready, serving, term := e.ready, e.ready || e.term, e.term
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{host},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &term}})
	}
	api := kt.client.DiscoveryV1().EndpointSlices(kt.ns)
	cur, err := api.Get(kt.ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(kt.ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(kt.ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		kt.t.Fatalf("EndpointSlice for %s: %v", svc, err)
	}
}

// request sends GET path with Host host through the agent.
func (kt *kubeTest) request(host, path string) (status int, backend, body string, err error) {
	req, err := http.NewRequest("GET", kt.agent.proxyURL(path), nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	resp, err := newClient(false).Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Backend"), string(b), err
}

// eventually polls until check returns nil, failing with its last error
// after timeout; it returns how long convergence took.
func (kt *kubeTest) eventually(what string, timeout time.Duration, check func() error) time.Duration {
	kt.t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		if last = check(); last == nil {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	kt.t.Fatalf("%s: not within %v: %v", what, timeout, last)
	return 0
}

// routesTo checks that host+path answers 200 from one of want.
func (kt *kubeTest) routesTo(host, path string, want ...string) func() error {
	return func() error {
		code, backend, body, err := kt.request(host, path)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%s%s: status %d: %s", host, path, code, body)
		}
		for _, w := range want {
			if backend == w {
				return nil
			}
		}
		return fmt.Errorf("%s%s: served by %q, want one of %v", host, path, backend, want)
	}
}

// event waits for an Event with reason on the Service and returns its message.
func (kt *kubeTest) event(svc, reason string) string {
	kt.t.Helper()
	var msg string
	kt.eventually("Event "+reason+" on "+svc, 10*time.Second, func() error {
		evs, err := kt.client.CoreV1().Events(kt.ns).List(kt.ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + svc + ",reason=" + reason})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return errors.New("no such Event yet")
		}
		msg = evs.Items[0].Message
		return nil
	})
	return msg
}

const convergence = 5 * time.Second

func TestKubernetesRoutesFollowAnnotations(t *testing.T) {
	kt := newKubeTest(t, "")
	kt.createService("web", map[string]string{
		"edge-agent.io/hosts":              "web.example.com",
		"edge-agent.io/api.path-prefix":    "/api",
		"edge-agent.io/api.rewrite-prefix": "/v2",
	})
	kt.putSlice("web", endpointState{kt.addr(0), true, false}, endpointState{kt.addr(1), true, false})
	kt.eventually("web routes", convergence, kt.routesTo("web.example.com", "/", kt.addr(0), kt.addr(1)))

	// Both endpoints take traffic (round robin).
	seen := map[string]bool{}
	for range 10 {
		_, backend, _, err := kt.request("web.example.com", "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[backend] = true
	}
	if !seen[kt.addr(0)] || !seen[kt.addr(1)] {
		t.Fatalf("round robin reached %v", seen)
	}
	// The named route rewrites its prefix.
	if code, _, body, err := kt.request("web.example.com", "/api/items"); err != nil || code != 200 || !strings.Contains(body, "path=/v2/items") {
		t.Fatalf("api route: %d %q %v", code, body, err)
	}
	// Unknown hosts get the proxy's 404.
	if code, _, _, err := kt.request("other.example.com", "/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("unknown host: %d %v", code, err)
	}

	// Change the annotation: traffic follows.
	kt.annotate("web", map[string]string{"edge-agent.io/hosts": "www.example.com"})
	took := kt.eventually("new host", convergence, kt.routesTo("www.example.com", "/", kt.addr(0), kt.addr(1)))
	t.Logf("annotation change served after %v", took)
	kt.eventually("old host gone", convergence, func() error {
		if code, _, _, err := kt.request("web.example.com", "/"); err != nil || code != http.StatusNotFound {
			return fmt.Errorf("old host: %d %v", code, err)
		}
		return nil
	})

	// Endpoint changes follow too.
	kt.putSlice("web", endpointState{kt.addr(2), true, false})
	kt.eventually("new endpoint", convergence, kt.routesTo("www.example.com", "/", kt.addr(2)))

	// Deleting the Service removes its routes.
	if err := kt.client.CoreV1().Services(kt.ns).Delete(kt.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kt.eventually("routes removed", convergence, func() error {
		if code, _, _, err := kt.request("www.example.com", "/"); err != nil || code != http.StatusNotFound {
			return fmt.Errorf("deleted Service: %d %v", code, err)
		}
		return nil
	})
}

func TestKubernetesInvalidAnnotationIsIsolated(t *testing.T) {
	kt := newKubeTest(t, "")
	kt.createService("alpha", map[string]string{"edge-agent.io/hosts": "alpha.example.com", "edge-agent.io/timeout": "5s"})
	kt.createService("beta", map[string]string{"edge-agent.io/hosts": "beta.example.com"})
	kt.putSlice("alpha", endpointState{kt.addr(0), true, false})
	kt.putSlice("beta", endpointState{kt.addr(1), true, false})
	kt.eventually("alpha routes", convergence, kt.routesTo("alpha.example.com", "/", kt.addr(0)))
	kt.eventually("beta routes", convergence, kt.routesTo("beta.example.com", "/", kt.addr(1)))

	// Break alpha: a bad duration and an unknown key.
	kt.annotate("alpha", map[string]string{"edge-agent.io/hosts": "alpha.example.com", "edge-agent.io/timeout": "five seconds", "edge-agent.io/retrys": "3"})
	msg := kt.event("alpha", "InvalidAnnotation")
	if !strings.Contains(msg, "edge-agent.io/") || !strings.Contains(msg, "last valid annotations keep serving") {
		t.Errorf("Event message = %q", msg)
	}
	kt.eventually("both keys reported", 5*time.Second, func() error {
		evs, err := kt.client.CoreV1().Events(kt.ns).List(kt.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=alpha,reason=InvalidAnnotation"})
		if err != nil {
			return err
		}
		keys := map[string]bool{}
		for _, e := range evs.Items {
			keys[strings.SplitN(e.Message, ":", 2)[0]] = true
		}
		if !keys["edge-agent.io/timeout"] || !keys["edge-agent.io/retrys"] {
			return fmt.Errorf("Events name keys %v", keys)
		}
		return nil
	})
	// The last good routes still serve alpha, and beta never noticed.
	for range 5 {
		if err := kt.routesTo("alpha.example.com", "/", kt.addr(0))(); err != nil {
			t.Fatalf("alpha's last good config: %v", err)
		}
		if err := kt.routesTo("beta.example.com", "/", kt.addr(1))(); err != nil {
			t.Fatalf("beta: %v", err)
		}
	}
	// The admin page and the metrics say so.
	dc := kt.agent.debugConfigRaw()
	if !strings.Contains(dc, `"serving-last-good"`) || !strings.Contains(dc, "edge-agent.io/retrys") {
		t.Errorf("/debug/config does not report alpha's state:\n%s", dc)
	}
	if v := mustFind(t, kt.agent.scrape(), "edge_agent_config_errors", map[string]string{"namespace": kt.ns, "service": "alpha", "reason": "InvalidAnnotation"}); v != 2 {
		t.Errorf("edge_agent_config_errors = %v, want 2", v)
	}
	// A new Service that is broken from the start serves nothing and says why.
	kt.createService("gamma", map[string]string{"edge-agent.io/hosts": "gamma.example.com", "edge-agent.io/lb-policy": "fastest"})
	if msg := kt.event("gamma", "InvalidAnnotation"); !strings.Contains(msg, "edge-agent.io/lb-policy") || !strings.Contains(msg, "not served") {
		t.Errorf("gamma Event = %q", msg)
	}
	// Fixing alpha brings the new annotations and a Normal Event.
	kt.annotate("alpha", map[string]string{"edge-agent.io/hosts": "alpha.example.com,alpha2.example.com"})
	kt.eventually("fixed alpha", convergence, kt.routesTo("alpha2.example.com", "/", kt.addr(0)))
	kt.event("alpha", "Serving")
}

func TestKubernetesHostConflictOldestWins(t *testing.T) {
	kt := newKubeTest(t, "")
	kt.createService("first", map[string]string{"edge-agent.io/hosts": "shared.example.com"})
	kt.putSlice("first", endpointState{kt.addr(0), true, false})
	kt.eventually("first routes", convergence, kt.routesTo("shared.example.com", "/", kt.addr(0)))
	// Creation timestamps have one-second resolution: make sure "second" is
	// strictly younger so the test does not depend on the name tie-break.
	time.Sleep(1100 * time.Millisecond)
	kt.createService("second", map[string]string{"edge-agent.io/hosts": "shared.example.com,own.example.com"})
	kt.putSlice("second", endpointState{kt.addr(1), true, false})
	kt.eventually("second's own host", convergence, kt.routesTo("own.example.com", "/", kt.addr(1)))
	msg := kt.event("second", "RouteConflict")
	if !strings.Contains(msg, "shared.example.com") || !strings.Contains(msg, kt.ns+"/first") {
		t.Errorf("RouteConflict message = %q", msg)
	}
	for range 5 {
		if err := kt.routesTo("shared.example.com", "/", kt.addr(0))(); err != nil {
			t.Fatalf("the older Service must keep the host: %v", err)
		}
	}
	// When the winner goes away, the next claimant takes over.
	if err := kt.client.CoreV1().Services(kt.ns).Delete(kt.ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kt.eventually("second takes over", convergence, kt.routesTo("shared.example.com", "/", kt.addr(1)))
}

func TestKubernetesHostnamePolicy(t *testing.T) {
	// The rules name this test's namespace only for *.allowed.example.com.
	kt := newKubeTest(t, `
  hostnames:
    - hosts: ["*.allowed.example.com"]
      namespaces: [{{NS}}]
`)
	kt.createService("web", map[string]string{"edge-agent.io/hosts": "app.allowed.example.com,app.denied.example.com"})
	kt.putSlice("web", endpointState{kt.addr(0), true, false})
	kt.eventually("allowed host", convergence, kt.routesTo("app.allowed.example.com", "/", kt.addr(0)))
	if msg := kt.event("web", "HostnameNotAllowed"); !strings.Contains(msg, "app.denied.example.com") {
		t.Errorf("HostnameNotAllowed message = %q", msg)
	}
	if code, _, _, err := kt.request("app.denied.example.com", "/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("denied host: %d %v", code, err)
	}
}

func TestKubernetesTerminatingEndpointGetsNoNewRequests(t *testing.T) {
	kt := newKubeTest(t, "")
	kt.createService("web", map[string]string{"edge-agent.io/hosts": "web.example.com"})
	kt.putSlice("web", endpointState{kt.addr(1), true, false})
	kt.eventually("web routes", convergence, kt.routesTo("web.example.com", "/", kt.addr(1)))

	// A slow request in flight on the endpoint that is about to terminate.
	type result struct {
		code    int
		backend string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		code, backend, _, err := kt.request("web.example.com", "/slow")
		done <- result{code, backend, err}
	}()
	kt.eventually("slow request in flight", 5*time.Second, func() error {
		if kt.backends[kt.addr(1)].hits.Load() < 2 {
			return errors.New("not yet at the backend")
		}
		return nil
	})
	kt.putSlice("web", endpointState{kt.addr(0), true, false}, endpointState{kt.addr(1), false, true})
	kt.eventually("terminating endpoint out of rotation", convergence, kt.routesTo("web.example.com", "/", kt.addr(0)))
	before := kt.backends[kt.addr(1)].hits.Load()
	for range 20 {
		if err := kt.routesTo("web.example.com", "/", kt.addr(0))(); err != nil {
			t.Fatalf("new request: %v", err)
		}
	}
	if after := kt.backends[kt.addr(1)].hits.Load(); after != before {
		t.Fatalf("terminating endpoint got %d new requests", after-before)
	}
	// The request that was already there finishes normally.
	close(kt.backends[kt.addr(1)].release)
	r := <-done
	if r.err != nil || r.code != http.StatusOK || r.backend != kt.addr(1) {
		t.Fatalf("in-flight request: %d from %q: %v", r.code, r.backend, r.err)
	}
}

func TestKubernetesTLSSecretServedBySNI(t *testing.T) {
	kt := newKubeTest(t, "")
	certPEM, keyPEM := selfSigned(t, "secure.example.com")
	_, err := kt.client.CoreV1().Secrets(kt.ns).Create(kt.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "secure-tls", Namespace: kt.ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kt.createService("secure", map[string]string{"edge-agent.io/hosts": "secure.example.com", "edge-agent.io/tls-secret": "secure-tls"})
	kt.putSlice("secure", endpointState{kt.addr(0), true, false})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "secure.example.com"},
		ForceAttemptHTTP2: true,
	}}
	url := "https://" + kt.agent.a.Proxy().Addr("https").String() + "/"
	kt.eventually("https with the Secret's certificate", convergence, func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "secure.example.com"
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != kt.addr(0) || resp.ProtoMajor != 2 {
			return fmt.Errorf("status %d from %q over %s", resp.StatusCode, resp.Header.Get("X-Backend"), resp.Proto)
		}
		return nil
	})
	// The Secret's certificate is not anyone's default: other names get no
	// certificate at all.
	conn, err := tls.Dial("tcp", kt.agent.a.Proxy().Addr("https").String(), &tls.Config{ServerName: "other.example.com", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("a Service's certificate answered for a name it does not cover")
	}
	// A Secret that does not parse is reported on the Service.
	kt.createService("broken", map[string]string{"edge-agent.io/hosts": "broken.example.com", "edge-agent.io/tls-secret": "nope"})
	if msg := kt.event("broken", "InvalidTLSSecret"); !strings.Contains(msg, "not found") {
		t.Errorf("InvalidTLSSecret message = %q", msg)
	}
}

func TestKubernetesOneEventWriterAcrossNodes(t *testing.T) {
	kt := newKubeTest(t, "")
	// Two more agents ("nodes") that elect one Event writer through a Lease.
	nodes := []*harness{
		kt.startAgent("", agent.KubernetesOptions{Identity: "node-a", LeaseNamespace: kt.ns}),
		kt.startAgent("", agent.KubernetesOptions{Identity: "node-b", LeaseNamespace: kt.ns}),
	}
	kt.eventually("a leader", 20*time.Second, func() error {
		l, err := kt.client.CoordinationV1().Leases(kt.ns).Get(kt.ctx, "edge-agent-events", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || (*l.Spec.HolderIdentity != "node-a" && *l.Spec.HolderIdentity != "node-b") {
			return fmt.Errorf("holder %v", l.Spec.HolderIdentity)
		}
		return nil
	})
	kt.createService("bad", map[string]string{"edge-agent.io/hosts": "bad.example.com", "edge-agent.io/colour": "blue"})
	kt.event("bad", "InvalidAnnotation")
	time.Sleep(time.Second) // give a second writer time to show up
	evs, err := kt.client.CoreV1().Events(kt.ns).List(kt.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=bad,reason=InvalidAnnotation"})
	if err != nil {
		t.Fatal(err)
	}
	// The test's own agent (no lease) writes one; the two nodes write one
	// between them.
	hosts := map[string]int{}
	for _, e := range evs.Items {
		hosts[e.Source.Host] += int(e.Count)
	}
	if hosts["node-a"]+hosts["node-b"] != 1 || hosts["test-node"] != 1 {
		t.Fatalf("Events by writer = %v, want one from test-node and one from node-a or node-b", hosts)
	}
	// Every node still knows the Service's state; only the writing differs.
	for _, n := range nodes {
		if dc := n.debugConfigRaw(); !strings.Contains(dc, "edge-agent.io/colour") {
			t.Errorf("a node does not report the problem on /debug/config")
		}
	}
}

func TestKubernetesNoReadyEndpointsIs503(t *testing.T) {
	kt := newKubeTest(t, "")
	kt.createService("empty", map[string]string{"edge-agent.io/hosts": "empty.example.com"})
	kt.putSlice("empty", endpointState{kt.addr(0), false, true})
	kt.eventually("503 without ready endpoints", convergence, func() error {
		req, _ := http.NewRequest("GET", kt.agent.proxyURL("/"), nil)
		req.Host = "empty.example.com"
		resp, err := newClient(false).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Edge-Agent-Reason") != "no_healthy_upstream" {
			return fmt.Errorf("status %d reason %q", resp.StatusCode, resp.Header.Get("Edge-Agent-Reason"))
		}
		return nil
	})
}

// selfSigned makes a certificate and key for name.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestKubernetesNamespaceAndLabelSelectors(t *testing.T) {
	kt := newKubeTest(t, "  labelSelector: edge=public\n")
	labelled := kt.createServiceLabelled("public", map[string]string{"edge": "public"}, map[string]string{"edge-agent.io/hosts": "public.example.com"})
	kt.createService("private", map[string]string{"edge-agent.io/hosts": "private.example.com"})
	kt.putSlice("public", endpointState{kt.addr(0), true, false})
	kt.putSlice("private", endpointState{kt.addr(1), true, false})
	kt.eventually("labelled Service", convergence, kt.routesTo("public.example.com", "/", kt.addr(0)))
	if code, _, _, err := kt.request("private.example.com", "/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("unlabelled Service served: %d %v", code, err)
	}
	// A Service in a namespace the agent does not watch is not served.
	other := "t-" + rand.String(8)
	if _, err := kt.client.CoreV1().Namespaces().Create(kt.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := labelled.DeepCopy()
	svc.Namespace, svc.ResourceVersion, svc.UID, svc.Spec.ClusterIP, svc.Spec.ClusterIPs = other, "", "", "", nil
	svc.Annotations = map[string]string{"edge-agent.io/hosts": "elsewhere.example.com"}
	if _, err := kt.client.CoreV1().Services(other).Create(kt.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A later change the agent does see has been applied, so the other
	// namespace's Service had its chance to show up.
	kt.annotate("public", map[string]string{"edge-agent.io/hosts": "public2.example.com"})
	kt.eventually("labelled Service changed", convergence, kt.routesTo("public2.example.com", "/", kt.addr(0)))
	if code, _, _, err := kt.request("elsewhere.example.com", "/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("Service in an unwatched namespace served: %d %v", code, err)
	}
}

func (kt *kubeTest) createServiceLabelled(name string, labels, annots map[string]string) *corev1.Service {
	kt.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kt.ns, Labels: labels, Annotations: annots},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	out, err := kt.client.CoreV1().Services(kt.ns).Create(kt.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		kt.t.Fatalf("create Service %s: %v", name, err)
	}
	return out
}

func TestKubernetesTLSBackendFromAppProtocol(t *testing.T) {
	kt := newKubeTest(t, "")
	serverName := "secure-backend." + kt.ns + ".svc"
	certPEM, keyPEM := selfSigned(t, serverName)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(kt.host.Addrs[2].String(), "8443")
	ln := tls.NewListener(kt.host.Listen(t, addr), &tls.Config{Certificates: []tls.Certificate{cert}})
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", addr)
		fmt.Fprintf(w, "tls=%v", r.TLS != nil)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	if _, err := kt.client.CoreV1().Secrets(kt.ns).Create(kt.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "backend-ca", Namespace: kt.ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": certPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	https := "https"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "secure-backend", Namespace: kt.ns, Annotations: map[string]string{
			"edge-agent.io/hosts": "sb.example.com", "edge-agent.io/backend-ca-secret": "backend-ca"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, AppProtocol: &https}}},
	}
	if _, err := kt.client.CoreV1().Services(kt.ns).Create(kt.ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kt.putSliceOn("secure-backend", "https", 8443, endpointState{addr, true, false})
	kt.eventually("TLS backend", convergence, func() error {
		code, backend, body, err := kt.request("sb.example.com", "/")
		if err != nil || code != 200 || backend != addr || body != "tls=true" {
			return fmt.Errorf("%d from %q: %q %v", code, backend, body, err)
		}
		return nil
	})
	// Verification is real: a server name the certificate does not cover fails.
	kt.annotate("secure-backend", map[string]string{"edge-agent.io/hosts": "sb.example.com",
		"edge-agent.io/backend-ca-secret": "backend-ca", "edge-agent.io/backend-server-name": "someone-else.example.com"})
	kt.eventually("wrong server name refused", convergence, func() error {
		code, _, _, err := kt.request("sb.example.com", "/")
		if err != nil || code != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d %v", code, err)
		}
		return nil
	})
}

func TestKubernetesL4ModeMapsToL4Services(t *testing.T) {
	kt := newKubeTest(t, "")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: kt.ns, Annotations: map[string]string{"edge-agent.io/mode": "l4"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
		}},
	}
	created, err := kt.client.CoreV1().Services(kt.ns).Create(kt.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kt.putSliceOn("dns", "dns-tcp", 5353, endpointState{kt.addr(0), true, false})
	want := `"address": "` + created.Spec.ClusterIP + `:53"`
	kt.eventually("L4 service in the config", convergence, func() error {
		dc := kt.agent.debugConfigRaw()
		if !strings.Contains(dc, want) || !strings.Contains(dc, kt.addr(0)[:strings.LastIndex(kt.addr(0), ":")]+":5353") {
			return fmt.Errorf("no L4 service at %s with the endpoint", created.Spec.ClusterIP)
		}
		if !strings.Contains(dc, `"available": false`) {
			return errors.New("the L4 status does not say it is unavailable")
		}
		return nil
	})
	// An L7 key on an L4 Service is refused on the Service.
	kt.annotate("dns", map[string]string{"edge-agent.io/mode": "l4", "edge-agent.io/path-prefix": "/"})
	if msg := kt.event("dns", "InvalidAnnotation"); !strings.Contains(msg, "edge-agent.io/path-prefix") {
		t.Errorf("Event = %q", msg)
	}
}
