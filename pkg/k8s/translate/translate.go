// Package translate turns annotated Kubernetes Services, their
// EndpointSlices and Secrets (TLS, and the auth Secrets routes name) into
// edge-agent's config model.
//
// Each Service translates on its own: an invalid one keeps serving its last
// valid translation (or nothing) and gets a status naming the key and the
// reason; every other Service is untouched. Host + path claims are settled
// deterministically, so every node picks the same winner: the oldest Service
// (creation time, then namespace/name).
package translate

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/annotations"
)

// Event reasons written on Services.
const (
	ReasonInvalidAnnotation   = "InvalidAnnotation"
	ReasonUnsupportedProtocol = "UnsupportedProtocol"
	ReasonInvalidTLSSecret    = "InvalidTLSSecret"
	ReasonInvalidSecret       = "InvalidSecret" // api-keys-secret, basic-auth-secret
	ReasonRouteConflict       = "RouteConflict"
	ReasonHostnameNotAllowed  = "HostnameNotAllowed"
)

// NamespacedName identifies an object.
type NamespacedName struct{ Namespace, Name string }

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

// Input is the cluster state the translator reads: Services, their
// EndpointSlices (by Service) and Secrets (kubernetes.io/tls ones and
// those labeled AuthSecretLabel).
type Input struct {
	Services map[NamespacedName]*corev1.Service
	Slices   map[NamespacedName][]*discoveryv1.EndpointSlice
	Secrets  map[NamespacedName]*corev1.Secret
}

// Result is the Kubernetes part of the config plus a status per Service.
type Result struct {
	Routes   []config.Route
	Clusters []config.Cluster
	// Certificates go to every https listener Service routes attach to.
	Certificates []config.Certificate
	// L4 are the Services in mode l4, for the in-kernel balancer.
	L4     []config.L4Service
	Status []ServiceStatus
}

// ServiceStatus reports how one annotated Service was translated.
type ServiceStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// State is "serving", "serving-last-good" (the current annotations are
	// invalid; the last valid ones still serve) or "not-serving".
	State    string    `json:"state"`
	Routes   []string  `json:"routes,omitempty"`
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with a Service, as its Event will say.
type Problem struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Service states.
const (
	StateServing         = "serving"
	StateServingLastGood = "serving-last-good"
	StateNotServing      = "not-serving"
)

// Translator remembers each Service's last valid annotations between runs.
// It is not safe for concurrent use; the source calls it from one goroutine.
type Translator struct {
	settings config.Kubernetes
	lastGood map[types.UID]lastGood
}

type lastGood struct {
	annotations map[string]string
	cert        *config.Certificate
}

// New returns a translator for the platform's settings.
func New(settings config.Kubernetes) *Translator {
	return &Translator{settings: settings, lastGood: map[types.UID]lastGood{}}
}

// candidate is one Service's translation before claims are settled.
type candidate struct {
	svc      *corev1.Service
	frag     *fragment
	status   ServiceStatus
	problems []Problem
}

// Translate builds the config for every annotated Service in in.
func (t *Translator) Translate(in *Input) *Result {
	svcs := make([]*corev1.Service, 0, len(in.Services))
	for _, s := range in.Services {
		if annotations.Has(s.Annotations) {
			svcs = append(svcs, s)
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return older(svcs[i], svcs[j]) })

	live := map[types.UID]bool{}
	cands := make([]*candidate, 0, len(svcs))
	for _, svc := range svcs {
		live[svc.UID] = true
		cands = append(cands, t.translateOne(in, svc))
	}
	for uid := range t.lastGood {
		if !live[uid] {
			delete(t.lastGood, uid)
		}
	}

	res := &Result{}
	claims := map[claimKey]NamespacedName{}
	clusterSeen := map[string]bool{}
	for _, c := range cands {
		if c.frag != nil {
			t.settle(c, claims)
			won := map[string]bool{}
			for _, r := range c.frag.routes {
				res.Routes = append(res.Routes, r)
				c.status.Routes = append(c.status.Routes, r.Name)
				for _, h := range r.Hosts {
					won[h] = true
				}
			}
			if len(c.frag.routes) > 0 {
				for _, cl := range c.frag.clusters {
					if !clusterSeen[cl.Name] { // a canary may also be its own Service
						clusterSeen[cl.Name] = true
						res.Clusters = append(res.Clusters, cl)
					}
				}
			}
			res.L4 = append(res.L4, c.frag.l4...)
			for _, l := range c.frag.l4 {
				c.status.Routes = append(c.status.Routes, l.Name)
			}
			if cert := c.frag.cert; cert != nil && len(won) > 0 {
				cert.ServerNames = sortedKeys(won)
				res.Certificates = append(res.Certificates, *cert)
			}
		}
		if c.frag == nil || (len(c.frag.routes) == 0 && len(c.frag.l4) == 0) {
			c.status.State = StateNotServing
		}
		c.status.Problems = c.problems
		res.Status = append(res.Status, c.status)
	}
	return res
}

// translateOne translates a Service, falling back to its last valid
// annotations when the current ones are invalid.
func (t *Translator) translateOne(in *Input, svc *corev1.Service) *candidate {
	c := &candidate{svc: svc, status: ServiceStatus{Namespace: svc.Namespace, Name: svc.Name, State: StateServing}}
	frag, probs := t.fromAnnotations(in, svc, svc.Annotations)
	if frag != nil {
		lg := lastGood{annotations: ourAnnotations(svc.Annotations)}
		if frag.cert == nil && len(probs) > 0 {
			// The Secret is broken: keep serving the certificate that last worked.
			lg.cert = t.lastGood[svc.UID].cert
			frag.cert = lg.cert
		} else {
			lg.cert = frag.cert
		}
		t.lastGood[svc.UID] = lg
		c.frag, c.problems = frag, probs
		return c
	}
	c.problems = probs
	if lg, ok := t.lastGood[svc.UID]; ok {
		if old, _ := t.fromAnnotations(in, svc, lg.annotations); old != nil {
			if old.cert == nil {
				old.cert = lg.cert
			}
			c.frag = old
			c.status.State = StateServingLastGood
		}
	}
	return c
}

// fromAnnotations translates svc as if it carried annots. It returns the
// fragment (nil when the Service cannot serve) and the problems found; a
// broken TLS Secret is a problem that still returns a fragment.
func (t *Translator) fromAnnotations(in *Input, svc *corev1.Service, annots map[string]string) (*fragment, []Problem) {
	spec, err := annotations.Parse(annots)
	if err != nil {
		var probs []Problem
		if es, ok := err.(annotations.Errors); ok {
			for _, e := range es {
				probs = append(probs, Problem{Reason: ReasonInvalidAnnotation, Message: e.Error()})
			}
		} else {
			probs = append(probs, Problem{Reason: ReasonInvalidAnnotation, Message: err.Error()})
		}
		return nil, probs
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, []Problem{{Reason: ReasonUnsupportedProtocol, Message: "ExternalName Services have no endpoints to route to"}}
	}
	translateFn := t.translateService
	if spec.Mode == annotations.ModeL4 {
		translateFn = func(in *Input, svc *corev1.Service, spec *annotations.Service) (*fragment, []*serviceError) {
			return translateL4(in, svc, spec)
		}
	}
	frag, errs := translateFn(in, svc, spec)
	if len(errs) > 0 {
		probs := make([]Problem, 0, len(errs))
		for _, e := range errs {
			probs = append(probs, Problem{Reason: e.Reason, Message: e.Error()})
		}
		return nil, probs
	}
	var probs []Problem
	cert, cerr := tlsCertificate(in, svc, spec)
	if cerr != nil {
		probs = append(probs, Problem{Reason: cerr.Reason, Message: cerr.Error()})
	}
	frag.cert = cert
	return frag, probs
}

// claimKey is what two Services may not both serve: a host and a path.
type claimKey struct{ host, path string }

func pathKey(m *config.PathMatch) string {
	switch {
	case m == nil:
		return "prefix /"
	case m.Exact != "":
		return "exact " + m.Exact
	case m.Regex != "":
		return "regex " + m.Regex
	default:
		return "prefix " + m.Prefix
	}
}

// settle drops the hosts a Service may not claim (hostname policy) or that
// an older Service already claimed, and routes left with no host.
func (t *Translator) settle(c *candidate, claims map[claimKey]NamespacedName) {
	me := NamespacedName{c.svc.Namespace, c.svc.Name}
	kept := c.frag.routes[:0]
	reported := map[string]bool{}
	report := func(p Problem) {
		if !reported[p.Message] {
			reported[p.Message] = true
			c.problems = append(c.problems, p)
		}
	}
	for _, r := range c.frag.routes {
		hosts := make([]string, 0, len(r.Hosts))
		for _, h := range r.Hosts {
			if !t.hostAllowed(h, c.svc.Namespace) {
				report(Problem{Reason: ReasonHostnameNotAllowed, Message: fmt.Sprintf("namespace %s may not claim host %s (platform hostname policy)", c.svc.Namespace, h)})
				continue
			}
			k := claimKey{h, pathKey(r.Match.Path)}
			if owner, taken := claims[k]; taken && owner != me {
				report(Problem{Reason: ReasonRouteConflict, Message: fmt.Sprintf("host %s path %s is already served by Service %s, which is older", h, k.path, owner)})
				continue
			}
			claims[k] = me
			hosts = append(hosts, h)
		}
		if len(hosts) == 0 {
			continue
		}
		r.Hosts = hosts
		kept = append(kept, r)
	}
	c.frag.routes = kept
}

// hostAllowed applies the platform's hostname rules: with none, any
// namespace may claim any host.
func (t *Translator) hostAllowed(host, ns string) bool {
	rules := t.settings.Hostnames
	if len(rules) == 0 {
		return true
	}
	for _, r := range rules {
		for _, pat := range r.Hosts {
			if hostCovered(host, pat) {
				for _, n := range r.Namespaces {
					if n == ns {
						return true
					}
				}
			}
		}
	}
	return false
}

// hostCovered reports whether the claim host (maybe a wildcard) falls under
// pattern: an exact name, or "*.suffix" covering every name below suffix.
func hostCovered(host, pattern string) bool {
	if host == pattern {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(strings.TrimPrefix(host, "*"), suffix)
}

// older orders Services by creation time, then namespace/name: the same
// order on every node.
func older(a, b *corev1.Service) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func ourAnnotations(a map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		if strings.HasPrefix(k, annotations.Prefix) {
			out[k] = v
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
