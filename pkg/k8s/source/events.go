package source

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/edge-agent/edge-agent/pkg/k8s/translate"
)

// LeaseName is the Lease agents compete for; its holder writes the Events,
// so N nodes do not write N copies of each.
const LeaseName = "edge-agent-events"

// Event reason for a Service whose problems are gone.
const ReasonServing = "Serving"

// eventWriter turns status changes into Events on the Services: a Warning
// per new problem, a Normal when a Service that had problems has none. It
// writes only while this agent holds the lease (or always, without one).
type eventWriter struct {
	recorder    record.EventRecorder
	broadcaster record.EventBroadcaster
	cancel      context.CancelFunc
	done        chan struct{}

	mu     sync.Mutex
	leader bool
	// reported is what was last reported per Service; a Service is
	// reported again only when its problems change.
	reported map[types.UID]string
	last     map[types.UID]report
}

type report struct {
	svc    *corev1.Service
	status translate.ServiceStatus
}

func newEventWriter(ctx context.Context, o Options) *eventWriter {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: o.Client.CoreV1().Events("")})
	ctx, cancel := context.WithCancel(ctx)
	w := &eventWriter{
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "edge-agent", Host: o.Identity}),
		broadcaster: b,
		cancel:      cancel,
		done:        make(chan struct{}),
		reported:    map[types.UID]string{},
		last:        map[types.UID]report{},
	}
	if o.LeaseNamespace == "" {
		w.leader = true
		close(w.done)
		return w
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaseNamespace, Name: LeaseName},
		Client:     o.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	go func() {
		defer close(w.done)
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			ReleaseOnCancel: true,
			Name:            LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					o.Log.Info("writing Events for Services (holding the lease)", "lease", o.LeaseNamespace+"/"+LeaseName)
					w.setLeader(true)
				},
				OnStoppedLeading: func() { w.setLeader(false) },
			},
		})
	}()
	return w
}

func (w *eventWriter) stop() {
	w.cancel()
	<-w.done
	w.broadcaster.Shutdown()
}

func (w *eventWriter) setLeader(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leader = on
	if on {
		// A new leader does not know what the old one wrote: report the
		// current problems once.
		w.reported = map[types.UID]string{}
		for uid, r := range w.last {
			w.emit(uid, r)
		}
	}
}

// report records the latest status and writes Events for what changed.
func (w *eventWriter) report(in *translate.Input, statuses []translate.ServiceStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[types.UID]bool{}
	for _, st := range statuses {
		svc := in.Services[translate.NamespacedName{Namespace: st.Namespace, Name: st.Name}]
		if svc == nil {
			continue
		}
		seen[svc.UID] = true
		r := report{svc: svc, status: st}
		w.last[svc.UID] = r
		if w.leader {
			w.emit(svc.UID, r)
		}
	}
	for uid := range w.last {
		if !seen[uid] {
			delete(w.last, uid)
			delete(w.reported, uid)
		}
	}
}

func (w *eventWriter) emit(uid types.UID, r report) {
	key := problemsKey(r.status.Problems)
	prev, known := w.reported[uid]
	if known && prev == key {
		return
	}
	w.reported[uid] = key
	if key == "" {
		if known && prev != "" {
			w.recorder.Eventf(r.svc, corev1.EventTypeNormal, ReasonServing, "all edge-agent.io annotations are valid; serving %d route(s)", len(r.status.Routes))
		}
		return
	}
	old := map[string]bool{}
	for _, line := range strings.Split(prev, "\n") {
		old[line] = true
	}
	for _, p := range r.status.Problems {
		if !old[p.Reason+": "+p.Message] {
			w.recorder.Event(r.svc, corev1.EventTypeWarning, p.Reason, eventMessage(r.status, p))
		}
	}
}

// eventMessage says what is wrong and what still serves.
func eventMessage(st translate.ServiceStatus, p translate.Problem) string {
	switch st.State {
	case translate.StateServingLastGood:
		return p.Message + " (the last valid annotations keep serving)"
	case translate.StateNotServing:
		return p.Message + " (the Service is not served by edge-agent)"
	}
	return p.Message
}

func problemsKey(ps []translate.Problem) string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Reason + ": " + p.Message
	}
	return strings.Join(lines, "\n")
}
