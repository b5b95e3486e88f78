// Package source watches Services, EndpointSlices and Secrets (TLS ones,
// and the auth Secrets labeled translate.AuthSecretLabel) with shared
// informers and publishes a fresh translation after each burst of
// changes. It also reports each Service's problems as Events on the Service.
package source

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/translate"
)

// Options configure the Kubernetes source.
type Options struct {
	Client   kubernetes.Interface
	Settings config.Kubernetes
	Log      *slog.Logger
	// Identity names this agent (the node name in a DaemonSet) for events
	// and leader election.
	Identity string
	// LeaseNamespace holds the Lease that elects the one agent that writes
	// Events; empty makes every agent write them (single-agent setups, tests).
	LeaseNamespace string
	// Publish receives every new translation, from a single goroutine.
	Publish func(*translate.Result)
}

// Run watches until ctx ends. It publishes the first translation once every
// informer has synced, then one per burst of changes (Settings.Debounce).
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	sel, err := labels.Parse(o.Settings.LabelSelector)
	if err != nil {
		return fmt.Errorf("kubernetes.labelSelector: %w", err)
	}
	namespaces := o.Settings.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	var watches []watched
	for _, ns := range namespaces {
		w, err := watch(ctx, o.Client, ns, sel.String(), handler)
		if err != nil {
			return err
		}
		watches = append(watches, w)
	}
	for _, w := range watches {
		if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
			return fmt.Errorf("kubernetes caches did not sync: %w", context.Cause(ctx))
		}
	}
	o.Log.Info("kubernetes caches synced", "namespaces", namespaces)

	ev := newEventWriter(ctx, o)
	defer ev.stop()
	tr := translate.New(o.Settings)
	debounce := o.Settings.Debounce.D()
	notify() // the first translation
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		// Coalesce the burst: changes that land while we wait are in the
		// same snapshot.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(debounce):
		}
		select {
		case <-changed:
		default:
		}
		in, err := gather(watches)
		if err != nil {
			o.Log.Error("reading the informer caches failed", "err", err)
			continue
		}
		start := time.Now()
		res := tr.Translate(in)
		o.Log.Debug("translated Services", "services", len(res.Status), "routes", len(res.Routes), "took", time.Since(start))
		o.Publish(res)
		ev.report(in, res.Status)
	}
}

// watched is one namespace's informers.
type watched struct {
	synced   []cache.InformerSynced
	sliceIdx cache.Indexer
	// secretIdxs are the TLS Secrets and the labeled auth Secrets.
	secretIdxs []cache.Indexer
	svcIdx     cache.Indexer
}

func watch(ctx context.Context, client kubernetes.Interface, ns, labelSelector string, h cache.ResourceEventHandler) (watched, error) {
	svcFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelSelector }))
	// Only Secrets of type kubernetes.io/tls, and Secrets a team labeled
	// for edge-agent (API keys, htpasswd users), are cached: the agent never
	// holds other credentials in memory.
	secretFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
		}))
	authSecretFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{translate.AuthSecretLabel: translate.AuthSecretLabelValue}).String()
		}))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName }))

	svcInf := svcFactory.Core().V1().Services().Informer()
	sliceInf := sliceFactory.Discovery().V1().EndpointSlices().Informer()
	secretInf := secretFactory.Core().V1().Secrets().Informer()
	authSecretInf := authSecretFactory.Core().V1().Secrets().Informer()
	if err := sliceInf.AddIndexers(cache.Indexers{byService: indexByService}); err != nil {
		return watched{}, fmt.Errorf("endpointslice index: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf, sliceInf, secretInf, authSecretInf} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return watched{}, fmt.Errorf("informer handler: %w", err)
		}
	}
	svcFactory.Start(ctx.Done())
	sliceFactory.Start(ctx.Done())
	secretFactory.Start(ctx.Done())
	authSecretFactory.Start(ctx.Done())
	return watched{
		synced:     []cache.InformerSynced{svcInf.HasSynced, sliceInf.HasSynced, secretInf.HasSynced, authSecretInf.HasSynced},
		svcIdx:     svcInf.GetIndexer(),
		sliceIdx:   sliceInf.GetIndexer(),
		secretIdxs: []cache.Indexer{secretInf.GetIndexer(), authSecretInf.GetIndexer()},
	}, nil
}

const byService = "service"

func indexByService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// gather copies the caches into the translator's input. The objects are
// shared with the informers and must not be modified.
func gather(ws []watched) (*translate.Input, error) {
	in := &translate.Input{
		Services: map[translate.NamespacedName]*corev1.Service{},
		Slices:   map[translate.NamespacedName][]*discoveryv1.EndpointSlice{},
		Secrets:  map[translate.NamespacedName]*corev1.Secret{},
	}
	for _, w := range ws {
		for _, o := range w.svcIdx.List() {
			s, ok := o.(*corev1.Service)
			if !ok {
				continue
			}
			key := translate.NamespacedName{Namespace: s.Namespace, Name: s.Name}
			in.Services[key] = s
			objs, err := w.sliceIdx.ByIndex(byService, key.String())
			if err != nil {
				return nil, fmt.Errorf("endpointslices of %s: %w", key, err)
			}
			for _, so := range objs {
				if es, ok := so.(*discoveryv1.EndpointSlice); ok {
					in.Slices[key] = append(in.Slices[key], es)
				}
			}
		}
		for _, idx := range w.secretIdxs {
			for _, o := range idx.List() {
				if s, ok := o.(*corev1.Secret); ok {
					in.Secrets[translate.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
				}
			}
		}
	}
	return in, nil
}
