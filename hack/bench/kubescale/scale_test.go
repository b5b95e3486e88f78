// Package kubescale measures edge-agent in Kubernetes mode with 1,000
// annotated Services: how long until every host serves, how long one
// annotation change takes to serve, and what that costs the agent in memory
// and CPU. Everything is real: etcd + kube-apiserver (internal/kubetest),
// backends in a network namespace (internal/netnstest), and the agent
// binary as a subprocess.
//
// It is a test, not a program, only because netnstest needs a testing.TB.
// Run it with hack/bench/kube-scale.sh (root; see hack/bench/README.md).
package kubescale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edge-agent/edge-agent/internal/kubetest"
	"github.com/edge-agent/edge-agent/internal/netnstest"
)

const (
	namespace   = "scale"
	hostSuffix  = ".scale.example.com"
	hostsKey    = "edge-agent.io/hosts"
	backendPort = 8080

	numServices   = 1000
	createWorkers = 32
	pollWorkers   = 32
	// roundPause separates phase-1 poll rounds, so polling does not starve
	// the API server and the agent of the two cores.
	roundPause      = 20 * time.Millisecond
	convergeTimeout = 3 * time.Minute

	numChanges    = 100
	changeSpacing = 20 * time.Millisecond
	changePoll    = 5 * time.Millisecond
	changeTimeout = 30 * time.Second

	// Goals printed next to the numbers (never asserted).
	goalChangeP99 = time.Second
	goalPeakRSS   = 200 << 20
)

func TestKubernetesScale(t *testing.T) {
	if os.Getenv("EDGE_AGENT_SCALE") != "1" {
		t.Skip("scale benchmark: set EDGE_AGENT_SCALE=1 or run hack/bench/kube-scale.sh")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the scale benchmark needs root (network namespaces)")
	}
	outDir := os.Getenv("EDGE_AGENT_SCALE_DIR")
	if outDir == "" {
		outDir = t.TempDir()
	} else if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatalf("output dir: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// Cleanups run last-in first-out: agent, backends + netns, API server.
	start := time.Now()
	env, stop, err := kubetest.StartMain()
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(stop)
	t.Logf("kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))

	backends := startBackends(t)
	ag := startAgent(t, env.Kubeconfig, outDir)

	// The load generator must not be the bottleneck: lift client-side
	// rate limits well above what the API server can take.
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("load generator client: %v", err)
	}
	b := &bench{t: t, ctx: ctx, client: client, agent: ag, backends: backends, hc: newPollClient()}

	r := &report{}
	r.idle = ag.sample(t)
	r.phase1 = b.phase1()
	r.after1 = ag.sample(t)
	r.phase2 = b.phase2()
	r.after2 = ag.sample(t)
	r.check = b.finalCheck()

	summary := r.String()
	fmt.Print(summary)
	if err := os.WriteFile(filepath.Join(outDir, "summary.txt"), []byte(summary), 0o644); err != nil {
		t.Errorf("write summary: %v", err)
	}
	if r.check.unchangedServing != numServices-numChanges || r.check.oldServing != 0 {
		t.Errorf("routing wrong after phase 2: %d/%d unchanged hosts serve, %d/%d old hosts still serve",
			r.check.unchangedServing, numServices-numChanges, r.check.oldServing, numChanges)
	}
}

// bench holds what the phases share.
type bench struct {
	t        *testing.T
	ctx      context.Context
	client   kubernetes.Interface
	agent    *agentProc
	backends []netip.Addr
	hc       *http.Client
	// svcs are the created Services, so phase 2 updates without a Get.
	svcs []*corev1.Service
	// created[i] is when Service i's EndpointSlice Create returned,
	// measured from the start of phase 1.
	created []time.Duration
	start   time.Time
}

// startBackends serves HTTP on :8080 at three addresses of one network
// namespace, answering 200 with the request's Host as the body.
func startBackends(t *testing.T) []netip.Addr {
	t.Helper()
	h := netnstest.New(t, 3)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host)
	})
	for _, a := range h.Addrs {
		ln := h.Listen(t, net.JoinHostPort(a.String(), fmt.Sprint(backendPort)))
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	t.Logf("backends on %v port %d (netns %s)", h.Addrs, backendPort, h.Name)
	return h.Addrs
}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }
func oldHost(i int) string     { return fmt.Sprintf("svc-%04d%s", i, hostSuffix) }
func newHost(i int) string     { return fmt.Sprintf("new-%04d%s", i, hostSuffix) }

type phase1Result struct {
	createsDone time.Duration // every Create call returned
	hostP50     time.Duration // half of the hosts serve
	allServing  time.Duration // the last host serves
	firstHost   time.Duration
	// lagP50, lagP99 and lagMax: per Service, from its EndpointSlice
	// Create returning to its host serving (resolution: one poll round).
	lagP50, lagP99, lagMax time.Duration
	rounds                 int
	cpu                    time.Duration
}

// phase1 creates the namespace, then the Services and their EndpointSlices
// concurrently, and polls every host through the agent until all serve.
func (b *bench) phase1() phase1Result {
	t := b.t
	if _, err := b.client.CoreV1().Namespaces().Create(b.ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", namespace, err)
	}
	b.svcs = make([]*corev1.Service, numServices)
	b.created = make([]time.Duration, numServices)
	var res phase1Result
	cpu0 := b.agent.cpu(t)
	start := time.Now()
	b.start = start

	created := make(chan error, 1)
	var createsDone time.Duration // written before the send on created
	go func() {
		err := b.createAll()
		createsDone = time.Since(start)
		created <- err
	}()
	createsReturned := false
	createErr := func(err error) {
		if err != nil {
			t.Fatalf("phase 1 creates: %v", err)
		}
		res.createsDone, createsReturned = createsDone, true
		t.Logf("phase 1: %d Services + EndpointSlices created in %v", numServices, res.createsDone.Round(time.Millisecond))
	}

	hosts := make([]string, numServices)
	for i := range hosts {
		hosts[i] = oldHost(i)
	}
	servedAt := make([]time.Duration, numServices)
	pending := make([]int, numServices)
	for i := range pending {
		pending[i] = i
	}
	lastLog := start
	var lastErr []error
	for len(pending) > 0 {
		select {
		case err := <-created:
			createErr(err)
		default:
		}
		if time.Since(start) > convergeTimeout {
			t.Fatalf("phase 1: %d/%d hosts not serving after %v; e.g. %s: %v\n%s",
				len(pending), numServices, convergeTimeout, hosts[pending[0]], lastErr[0], b.agent.logTail())
		}
		lastErr = b.pollRound(hosts, pending)
		now := time.Since(start)
		res.rounds++
		next := pending[:0]
		var nextErr []error
		for k, i := range pending {
			if lastErr[k] == nil {
				servedAt[i] = now
			} else {
				next = append(next, i)
				nextErr = append(nextErr, lastErr[k])
			}
		}
		pending, lastErr = next, nextErr
		if time.Since(lastLog) > 2*time.Second {
			t.Logf("phase 1: %v: %d/%d hosts serving", now.Round(time.Millisecond), numServices-len(pending), numServices)
			lastLog = time.Now()
		}
		if len(pending) > 0 {
			time.Sleep(roundPause)
		}
	}
	res.allServing = time.Since(start)
	res.cpu = b.agent.cpu(t) - cpu0
	if !createsReturned {
		createErr(<-created)
	}
	sorted := append([]time.Duration(nil), servedAt...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	res.firstHost, res.hostP50 = sorted[0], percentile(sorted, 0.5)
	lag := make([]time.Duration, numServices)
	for i := range lag {
		// A watch event can beat the Create response: clamp at 0.
		lag[i] = max(0, servedAt[i]-b.created[i])
	}
	sort.Slice(lag, func(i, j int) bool { return lag[i] < lag[j] })
	res.lagP50, res.lagP99, res.lagMax = percentile(lag, 0.5), percentile(lag, 0.99), lag[len(lag)-1]
	t.Logf("phase 1: all %d hosts serving after %v (%d poll rounds)", numServices, res.allServing.Round(time.Millisecond), res.rounds)
	return res
}

// createAll creates Service i and then its EndpointSlice, for every i, on
// createWorkers goroutines.
func (b *bench) createAll() error {
	next := atomic.Int64{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= numServices {
					return
				}
				if err := b.createOne(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *bench) createOne(i int) error {
	name := serviceName(i)
	svc, err := b.client.CoreV1().Services(namespace).Create(b.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{hostsKey: oldHost(i)}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", name, err)
	}
	b.svcs[i] = svc
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr("http"), Port: ptr(int32(backendPort)), Protocol: ptr(corev1.ProtocolTCP),
		}},
	}
	for _, a := range b.backends {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	if _, err := b.client.DiscoveryV1().EndpointSlices(namespace).Create(b.ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create endpointslice %s: %w", name, err)
	}
	b.created[i] = time.Since(b.start)
	return nil
}

type phase2Result struct {
	latencies []time.Duration // sorted
	took      time.Duration   // first Update to the last change serving
	cpu       time.Duration
}

// phase2 moves Service i (i < numChanges) to a new host, one update every
// changeSpacing, and times each from just before its Update call to the
// first 200 on the new host.
func (b *bench) phase2() phase2Result {
	t := b.t
	lat := make([]time.Duration, numChanges)
	errs := make([]error, numChanges)
	cpu0 := b.agent.cpu(t)
	start := time.Now()
	tick := time.NewTicker(changeSpacing)
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := range numChanges {
		if i > 0 {
			<-tick.C
		}
		wg.Go(func() { lat[i], errs[i] = b.change(i) })
	}
	wg.Wait()
	res := phase2Result{took: time.Since(start), cpu: b.agent.cpu(t) - cpu0}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("phase 2: %v\n%s", err, b.agent.logTail())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.latencies = lat
	t.Logf("phase 2: %d changes serving; max %v", numChanges, lat[len(lat)-1].Round(time.Millisecond))
	return res
}

func (b *bench) change(i int) (time.Duration, error) {
	svc := b.svcs[i].DeepCopy()
	svc.Annotations[hostsKey] = newHost(i)
	start := time.Now()
	if _, err := b.client.CoreV1().Services(namespace).Update(b.ctx, svc, metav1.UpdateOptions{}); err != nil {
		return 0, fmt.Errorf("update service %s: %w", svc.Name, err)
	}
	tick := time.NewTicker(changePoll)
	defer tick.Stop()
	var err error
	for {
		if err = b.get(newHost(i)); err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > changeTimeout {
			return 0, fmt.Errorf("%s not serving %v after its update: %w", newHost(i), changeTimeout, err)
		}
		<-tick.C
	}
}

type checkResult struct {
	unchangedServing int // of numServices-numChanges, should all serve
	oldServing       int // old hosts of changed Services, should be 0
}

// finalCheck polls every original host once: the unchanged ones must still
// serve and the moved ones must not.
func (b *bench) finalCheck() checkResult {
	hosts := make([]string, numServices)
	idx := make([]int, numServices)
	for i := range hosts {
		hosts[i], idx[i] = oldHost(i), i
	}
	errs := b.pollRound(hosts, idx)
	var r checkResult
	for i, err := range errs {
		switch {
		case err == nil && i < numChanges:
			r.oldServing++
		case err == nil:
			r.unchangedServing++
		}
	}
	return r
}

// pollRound GETs hosts[i] for each i in idx on pollWorkers goroutines and
// returns one error per idx entry (nil: 200 with the right body).
func (b *bench) pollRound(hosts []string, idx []int) []error {
	errs := make([]error, len(idx))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(pollWorkers, len(idx)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(idx) {
					return
				}
				errs[k] = b.get(hosts[idx[k]])
			}
		})
	}
	wg.Wait()
	return errs
}

// get asks the agent for http://host/ and wants 200 with host as the body
// (the backend echoes the Host header).
func (b *bench) get(host string) error {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, "http://"+b.agent.listen+"/", nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := b.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s (%s)", resp.Status, resp.Header.Get("Edge-Agent-Reason"))
	}
	if string(body) != host {
		return fmt.Errorf("200 from the wrong backend route: body %q", body)
	}
	return nil
}

func newPollClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        4 * numChanges,
			MaxIdleConnsPerHost: 4 * numChanges,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 2 * time.Second,
	}
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(float64(len(sorted))*p-1e-9)) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func ptr[T any](v T) *T { return &v }
