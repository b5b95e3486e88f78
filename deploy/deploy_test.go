// Package deploy_test checks the kustomize base in deploy/daemonset/: it
// renders with kustomize's own library, its config file is one the agent
// accepts, every object is stored by a real kube-apiserver under strict
// field validation, and the RBAC grants the agent what it needs and nothing
// more (checked by impersonating its service account).
package deploy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/edge-agent/edge-agent/internal/kubetest"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/source"
	"github.com/edge-agent/edge-agent/pkg/k8s/translate"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

const (
	baseDir    = "daemonset"
	agentNS    = "edge-agent"
	agentName  = "edge-agent"
	configMap  = "edge-agent-config"
	configKey  = "config.yaml"
	saUsername = "system:serviceaccount:" + agentNS + ":" + agentName
	appNS      = "shop" // an application team's namespace
)

// render builds the kustomization in dir as `kubectl apply -k` would.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q in the rendered base", kind, name)
	return nil
}

// typed converts u strictly: an unknown or misspelt field is an error.
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// loadConfig writes the rendered ConfigMap's config.yaml to a temp file and
// loads it as the agent does in Kubernetes mode.
func loadConfig(t *testing.T, objs []*unstructured.Unstructured) (*config.Config, string) {
	t.Helper()
	cm := typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", configMap))
	data, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s; keys: %v", configMap, configKey, slices.Collect(maps.Keys(cm.Data)))
	}
	path := filepath.Join(t.TempDir(), configKey)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadKubernetesBase(path)
	if err != nil {
		t.Fatalf("config.LoadKubernetesBase: %v", err)
	}
	return cfg, path
}

func TestRenderedObjects(t *testing.T) {
	objs := render(t, baseDir)
	want := []string{
		"ClusterRole//edge-agent",
		"ClusterRoleBinding//edge-agent",
		"ConfigMap/edge-agent/edge-agent-config",
		"DaemonSet/edge-agent/edge-agent",
		"Namespace//edge-agent",
		"Role/edge-agent/edge-agent",
		"RoleBinding/edge-agent/edge-agent",
		"ServiceAccount/edge-agent/edge-agent",
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
		// Every object must be a valid instance of its built-in type.
		gvk := o.GroupVersionKind()
		obj, err := scheme.Scheme.New(gvk)
		if err != nil {
			t.Errorf("%s: not a built-in kind: %v", gvk, err)
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, obj, true); err != nil {
			t.Errorf("%s %s: %v", gvk.Kind, o.GetName(), err)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("rendered objects:\n got %v\nwant %v", got, want)
	}
}

// TestKustomizationListsEveryFile catches a manifest added to the directory
// but forgotten in kustomization.yaml (kubectl apply -k would skip it).
func TestKustomizationListsEveryFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(baseDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	// Deprecated fields (bases, patchesStrategicMerge, ...) are not looked
	// at below; keep them out.
	if d := k.CheckDeprecatedFields(); d != nil && len(*d) > 0 {
		t.Errorf("kustomization.yaml uses deprecated fields: %v", *d)
	}
	listed := map[string]bool{}
	add := func(paths ...string) {
		for _, p := range paths {
			if p != "" {
				listed[filepath.Clean(p)] = true
			}
		}
	}
	add(k.Resources...)
	add(k.Components...)
	add(k.Crds...)
	add(k.Configurations...)
	add(k.Generators...)
	add(k.Transformers...)
	add(k.Validators...)
	for _, p := range k.Patches {
		add(p.Path)
	}
	gen := func(a kusttypes.GeneratorArgs) {
		for _, f := range a.FileSources {
			// "key=path" or "path"
			if _, p, ok := strings.Cut(f, "="); ok {
				f = p
			}
			add(f)
		}
		add(a.EnvSources...)
		add(a.EnvSource)
	}
	for _, g := range k.ConfigMapGenerator {
		gen(g.GeneratorArgs)
	}
	for _, g := range k.SecretGenerator {
		gen(g.GeneratorArgs)
	}

	entries, err := os.ReadDir(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "kustomization.yaml" {
			continue
		}
		if !listed[name] {
			t.Errorf("%s/%s is not referenced by kustomization.yaml", baseDir, name)
		}
		delete(listed, name)
	}
	for p := range listed {
		t.Errorf("kustomization.yaml references %s, which is not a file in %s", p, baseDir)
	}
}

// TestConfigMapHoldsValidConfig loads the ConfigMap's config.yaml exactly as
// the agent does with --kubernetes, and pins what `edge-agent validate`
// (standalone rules) says about it, which docs/deploy.md describes.
func TestConfigMapHoldsValidConfig(t *testing.T) {
	objs := render(t, baseDir)
	cfg, path := loadConfig(t, objs)
	if len(cfg.Kubernetes.Namespaces) != 0 || len(cfg.Kubernetes.Hostnames) != 0 || cfg.Kubernetes.LabelSelector != "" {
		t.Errorf("the base must watch every namespace with no hostname rules; got %+v", cfg.Kubernetes)
	}
	_, err := config.Load(path)
	var fe config.Errors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Path != "listeners[1].tls.certificates" {
		t.Errorf("standalone validation: want exactly listeners[1].tls.certificates (an https listener whose certificates come from Secrets), got %v", err)
	}
}

// TestDaemonSetMatchesConfig ties the DaemonSet to the config it mounts
// (checkDaemonSet, which overlays must satisfy too) and pins the base's own
// choices: steering on, the surge rollout, the hand-over flag and socket,
// the exec readiness probe, the capabilities, the volumes.
func TestDaemonSetMatchesConfig(t *testing.T) {
	objs := render(t, baseDir)
	cfg, _ := loadConfig(t, objs)
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", agentName))
	checkDaemonSet(t, ds, cfg)

	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q: want true, ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
	}
	if spec.ServiceAccountName != agentName {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v: want one {operator: Exists} tolerating every taint", spec.Tolerations)
	}

	// Steering is what the rest of the DaemonSet is built for: no ports,
	// a surge rollout, the hand-over socket.
	if !cfg.Steering.Enabled {
		t.Fatal("config.yaml: steering.enabled must be true (the DaemonSet's rollout depends on it)")
	}
	if cfg.Steering.HandoverSocket != config.DefaultHandoverSocket {
		t.Errorf("steering.handoverSocket %q: the base keeps the default %q", cfg.Steering.HandoverSocket, config.DefaultHandoverSocket)
	}
	// The listeners stay on every node address, and are steerable (IPv4
	// literals): the agent's own validation accepted them already, this
	// pins which ports they are.
	var steered []string
	for _, l := range cfg.Listeners {
		ap, err := config.SteeredAddress(l.Address)
		if err != nil {
			t.Errorf("listener %s: %v", l.Name, err)
			continue
		}
		steered = append(steered, l.Name+"="+ap.String())
	}
	if want := []string{"http=0.0.0.0:80", "https=0.0.0.0:443"}; !slices.Equal(steered, want) {
		t.Errorf("steered listeners %v, want %v", steered, want)
	}
	if sl := cfg.L4.SocketLB; !sl.Enabled || sl.Cgroup != "/host/sys/fs/cgroup" {
		t.Errorf("l4.socketLB %+v: want enabled, cgroup /host/sys/fs/cgroup (the host's cgroupfs as mounted)", sl)
	}

	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil ||
		ptr.Deref(ru.MaxSurge, intstr.IntOrString{}) != intstr.FromInt32(1) ||
		ptr.Deref(ru.MaxUnavailable, intstr.IntOrString{}) != intstr.FromInt32(0) {
		t.Errorf("updateStrategy %+v: want RollingUpdate maxSurge 1 maxUnavailable 0", ds.Spec.UpdateStrategy)
	}
	if want := []string{"edge-agent"}; !slices.Equal(c.Command, want) {
		t.Errorf("command %q, want %q", c.Command, want)
	}
	want := []string{"run", "--config", "/etc/edge-agent/config.yaml", "--kubernetes", "--after-handover", "wait"}
	if !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if want := map[string]string{"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}; !maps.Equal(env, want) {
		t.Errorf("env fieldRefs %v, want %v", env, want)
	}
	if len(c.Ports) != 0 {
		t.Errorf("ports %+v: want none", c.Ports)
	}
	if want := []string{"edge-agent", "probe", "ready", "--admin", "127.0.0.1:9901"}; c.ReadinessProbe == nil || c.ReadinessProbe.Exec == nil ||
		!slices.Equal(c.ReadinessProbe.Exec.Command, want) {
		t.Errorf("readinessProbe %+v: want exec %q", c.ReadinessProbe, want)
	}
	// The hand-over is started by the new pod; the old one needs nothing
	// before SIGTERM (daemonset.yaml says why).
	if c.Lifecycle != nil {
		t.Errorf("lifecycle %+v: the base has no hooks", c.Lifecycle)
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if ptr.Deref(sc.Privileged, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Errorf("privileged %v allowPrivilegeEscalation %v readOnlyRootFilesystem %v: want false, false, true",
			sc.Privileged, sc.AllowPrivilegeEscalation, sc.ReadOnlyRootFilesystem)
	}
	if ptr.Deref(sc.RunAsUser, -1) != 0 {
		t.Errorf("runAsUser %v: want 0 (capabilities and bpffs)", sc.RunAsUser)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop %v: want [ALL]", sc.Capabilities.Drop)
	}
	// No NET_BIND_SERVICE: with steering nothing binds a port below 1024.
	added := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if !slices.Equal(added, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
		t.Errorf("capabilities.add %v: want exactly BPF, NET_ADMIN, PERFMON", added)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	bpf := vols["bpffs"]
	if bpf.HostPath == nil || bpf.HostPath.Path != "/sys/fs/bpf" || ptr.Deref(bpf.HostPath.Type, "") != corev1.HostPathDirectoryOrCreate {
		t.Errorf("bpffs volume %+v: want hostPath /sys/fs/bpf DirectoryOrCreate", bpf)
	}
	if m := mounts["bpffs"]; m.MountPath != "/sys/fs/bpf" || ptr.Deref(m.MountPropagation, "") != corev1.MountPropagationHostToContainer || m.ReadOnly {
		t.Errorf("bpffs mount at %s propagation %s readOnly %v: want /sys/fs/bpf, HostToContainer, writable", m.MountPath, ptr.Deref(m.MountPropagation, "none"), m.ReadOnly)
	}
	cg := vols["cgroup"]
	if cg.HostPath == nil || cg.HostPath.Path != "/sys/fs/cgroup" || !mounts["cgroup"].ReadOnly || mounts["cgroup"].MountPath != "/host/sys/fs/cgroup" {
		t.Errorf("cgroup volume %+v mount %+v: want hostPath /sys/fs/cgroup at /host/sys/fs/cgroup, read-only", cg, mounts["cgroup"])
	}
	ho := vols["handover"]
	if ho.HostPath == nil || ho.HostPath.Path != "/run/edge-agent" || ptr.Deref(ho.HostPath.Type, "") != corev1.HostPathDirectoryOrCreate ||
		mounts["handover"].MountPath != "/run/edge-agent" || mounts["handover"].ReadOnly {
		t.Errorf("handover volume %+v mount %+v: want hostPath /run/edge-agent DirectoryOrCreate at /run/edge-agent, writable", ho, mounts["handover"])
	}
	tmp := vols["tmp"]
	if tmp.EmptyDir == nil || tmp.EmptyDir.SizeLimit == nil || tmp.EmptyDir.SizeLimit.String() != "64Mi" || mounts["tmp"].MountPath != "/tmp" {
		t.Errorf("tmp volume %+v mount %+v: want a 64Mi emptyDir at /tmp (the WAF needs a writable temp dir)", tmp, mounts["tmp"])
	}
	if len(spec.Volumes) != 5 {
		t.Errorf("%d volumes; want config, bpffs, cgroup, handover, tmp only", len(spec.Volumes))
	}

	r := c.Resources
	if r.Requests.Cpu().String() != "100m" || r.Requests.Memory().String() != "128Mi" || r.Limits.Memory().String() != "256Mi" {
		t.Errorf("resources %+v: want requests cpu 100m memory 128Mi, limit memory 256Mi", r)
	}
}

// checkDaemonSet checks what must agree between a DaemonSet and the config
// it mounts; overlays must keep it true too.
func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet, cfg *config.Config) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]

	// --config names config.yaml in a directory mounted whole from the
	// ConfigMap: a subPath mount would never see ConfigMap updates.
	cfgPath, ok := flagValue(c.Args, "config")
	if !ok {
		t.Fatalf("args %q have no --config", c.Args)
	}
	if filepath.Base(cfgPath) != configKey {
		t.Errorf("--config %s: want a file named %s (the ConfigMap key)", cfgPath, configKey)
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath != filepath.Dir(cfgPath) {
			continue
		}
		mounted = true
		if m.SubPath != "" {
			t.Errorf("config mount uses subPath %q: the agent would never see updates", m.SubPath)
		}
		if v := volume(spec, m.Name); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != configMap {
			t.Errorf("volume %s at %s is not the ConfigMap %s", m.Name, m.MountPath, configMap)
		}
	}
	if !mounted {
		t.Errorf("nothing is mounted at %s", filepath.Dir(cfgPath))
	}

	var listenerPorts []int32
	for _, l := range cfg.Listeners {
		listenerPorts = append(listenerPorts, port(t, l.Address))
	}
	slices.Sort(listenerPorts)
	var caps *corev1.Capabilities
	if c.SecurityContext != nil {
		caps = c.SecurityContext.Capabilities
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil {
		t.Fatalf("updateStrategy %+v: want RollingUpdate", ds.Spec.UpdateStrategy)
	}
	surge := ptr.Deref(ru.MaxSurge, intstr.FromInt32(0))
	if cfg.Steering.Enabled {
		checkSteering(t, ds, cfg)
	} else {
		// Without steering the listeners bind the node's ports: declare
		// them (hostPort = containerPort with hostNetwork) so the
		// scheduler keeps other pods wanting them off the node, and give
		// the agent NET_BIND_SERVICE for ports below 1024.
		var hostPorts []int32
		for _, p := range c.Ports {
			if p.HostPort != p.ContainerPort {
				t.Errorf("port %s: hostPort %d != containerPort %d (required with hostNetwork)", p.Name, p.HostPort, p.ContainerPort)
			}
			hostPorts = append(hostPorts, p.HostPort)
		}
		slices.Sort(hostPorts)
		if !slices.Equal(listenerPorts, hostPorts) {
			t.Errorf("steering off: DaemonSet host ports %v != listener ports %v in config.yaml", hostPorts, listenerPorts)
		}
		if len(listenerPorts) > 0 && listenerPorts[0] < 1024 && (caps == nil || !slices.Contains(caps.Add, "NET_BIND_SERVICE")) {
			t.Errorf("steering off: listener port %d < 1024 needs NET_BIND_SERVICE, capabilities.add %v", listenerPorts[0], caps)
		}
		// The old and the new agent cannot both bind the ports: a surge
		// pod would never start (Pending on the host ports) and the
		// rollout would stall on the first node.
		if surge != intstr.FromInt32(0) && surge != intstr.FromString("0%") {
			t.Errorf("steering off: maxSurge %s must be 0", surge.String())
		}
	}

	// The probes reach the admin server on the node's loopback.
	adminAddr := cfg.Admin.Address
	if a, ok := flagValue(c.Args, "admin-address"); ok {
		adminAddr = a
	}
	host, _, err := net.SplitHostPort(adminAddr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("admin address %q: want a loopback address", adminAddr)
	}
	adminPort := port(t, adminAddr)
	// Liveness: any agent answering on the node is fine (daemonset.yaml).
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil {
		t.Errorf("liveness probe %+v: want httpGet /healthz", p)
	} else if g := p.HTTPGet; g.Host != host || g.Port != intstr.FromInt32(adminPort) || g.Path != "/healthz" {
		t.Errorf("liveness probe %s:%s%s: want %s:%d/healthz", g.Host, g.Port.String(), g.Path, host, adminPort)
	}
	// Readiness: this pod's agent must answer; an httpGet would take the
	// old agent's answer for the new pod's.
	checkReadinessProbe(t, c, adminAddr)

	// The pinned objects (the SOCKMAP the agents hand over) live in the
	// host's bpffs, which both pods of a hand-over mount.
	pinDir := l4.DefaultPinDir
	if d, ok := flagValue(c.Args, "pin-dir"); ok {
		pinDir = d
	}
	if m, v := mountAt(spec, c, pinDir); m == nil || v.HostPath == nil || m.ReadOnly {
		t.Errorf("--pin-dir %s: not in a writable hostPath mount (the host's bpffs)", pinDir)
	}
	// Socket-level balancing attaches to the host's cgroup hierarchy.
	if sl := cfg.L4.SocketLB; sl.Enabled {
		if sl.Cgroup == "" {
			t.Errorf("l4.socketLB.cgroup is empty: in a pod the first cgroup2 mount is the container's own cgroup namespace")
		} else if m, v := mountAt(spec, c, sl.Cgroup); m == nil || v.HostPath == nil {
			t.Errorf("l4.socketLB.cgroup %s: not in a hostPath mount of the host's cgroupfs", sl.Cgroup)
		}
	}

	// SIGKILL must not cut the drain short.
	grace := time.Duration(ptr.Deref(spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if drain := cfg.Server.DrainTimeout.D(); grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %v must exceed server.drainTimeout %v", grace, drain)
	}
}

// checkSteering checks what a hitless rolling update needs from a
// DaemonSet whose config turns steering on.
func checkSteering(t *testing.T, ds *appsv1.DaemonSet, cfg *config.Config) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	// No ports at all: with hostNetwork the API server turns every
	// containerPort into a hostPort, which keeps the surge pod off the node.
	if len(c.Ports) != 0 {
		t.Errorf("steering on: ports %+v would keep the surge pod from being scheduled next to the old one; declare none", c.Ports)
	}
	// The new pod starts before the old one goes: that is the hand-over.
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	surge := ptr.Deref(ru.MaxSurge, intstr.FromInt32(0))
	if surge == intstr.FromInt32(0) || surge == intstr.FromString("0%") {
		t.Errorf("steering on: maxSurge is 0, so each node's old agent is stopped before the new one starts (no hand-over)")
	}
	if u := ptr.Deref(ru.MaxUnavailable, intstr.FromInt32(1)); u != intstr.FromInt32(0) && u != intstr.FromString("0%") {
		t.Errorf("steering on: maxUnavailable %s lets the controller stop old agents without a successor; want 0", u.String())
	}
	// A drained old agent must not exit: the kubelet would restart it and
	// it would take over again.
	if v, _ := flagValue(c.Args, "after-handover"); v != "wait" {
		t.Errorf("steering on: args %q need --after-handover wait", c.Args)
	}
	// Both pods of a hand-over must reach the same socket path, and the
	// agent creates the socket there (the root filesystem is read-only).
	dir := filepath.Dir(cfg.Steering.HandoverSocket)
	m, v := mountAt(spec, c, dir)
	switch {
	case m == nil:
		t.Errorf("steering.handoverSocket %s: nothing is mounted at %s (read-only root filesystem)", cfg.Steering.HandoverSocket, dir)
	case m.MountPath != dir:
		t.Errorf("steering.handoverSocket %s: mount %s is at %s; mount the socket's directory itself", cfg.Steering.HandoverSocket, m.Name, m.MountPath)
	case v.HostPath == nil:
		t.Errorf("steering.handoverSocket %s: volume %s is not a hostPath, so the old and the new pod would not share it", cfg.Steering.HandoverSocket, v.Name)
	case m.ReadOnly || m.SubPath != "":
		t.Errorf("steering.handoverSocket %s: mount %s must be writable, without subPath", cfg.Steering.HandoverSocket, m.Name)
	case ptr.Deref(v.HostPath.Type, "") != corev1.HostPathDirectoryOrCreate:
		t.Errorf("handover volume %s: type %q, want DirectoryOrCreate (/run is empty after a reboot)", v.Name, ptr.Deref(v.HostPath.Type, ""))
	}
}

// checkReadinessProbe checks that the readiness probe is `edge-agent probe
// ready` against the admin address, run with the binary the container
// runs, and identifying the pod by $POD_NAME.
func checkReadinessProbe(t *testing.T, c corev1.Container, adminAddr string) {
	t.Helper()
	p := c.ReadinessProbe
	if p == nil || p.Exec == nil {
		t.Errorf("readiness probe %+v: want exec `edge-agent probe ready`", p)
		return
	}
	cmd := p.Exec.Command
	if len(cmd) < 3 || cmd[1] != "probe" || cmd[2] != "ready" {
		t.Errorf("readiness probe %q: want BINARY probe ready ...", cmd)
		return
	}
	if len(c.Command) == 0 || cmd[0] != c.Command[0] {
		t.Errorf("readiness probe runs %q, the container %q: set the container's command, and run the same binary", cmd[0], c.Command)
	}
	addr, ok := flagValue(cmd[3:], "admin")
	if !ok {
		addr = config.DefaultAdminAddress
	}
	if addr != adminAddr {
		t.Errorf("readiness probe --admin %s: want the admin address %s", addr, adminAddr)
	}
	// The instance defaults to $POD_NAME in the probe's environment (the
	// container's); the kubelet does not expand $(POD_NAME) from a
	// fieldRef in probe commands, so no --instance.
	if _, ok := flagValue(cmd[3:], "instance"); ok {
		t.Errorf("readiness probe %q: leave --instance to its default, $POD_NAME", cmd)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("env %+v: want POD_NAME from metadata.name (the probe's instance, the /readyz header)", c.Env)
	}
	timeout := 2 * time.Second // probe ready's --timeout default
	if s, ok := flagValue(cmd[3:], "timeout"); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("readiness probe --timeout %q: %v", s, err)
		}
		timeout = d
	}
	if kubelet := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second; kubelet <= timeout {
		t.Errorf("readiness probe timeoutSeconds %v must exceed the probe's own --timeout %v", kubelet, timeout)
	}
}

// flagValue finds a Go flag's value in args (-name v, --name v, --name=v).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		f := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if f == a {
			continue
		}
		if f == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// mountAt returns the container's mount holding path (the deepest one) and
// its volume.
func mountAt(spec corev1.PodSpec, c corev1.Container, path string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		return nil, nil
	}
	v := volume(spec, best.Name)
	if v == nil {
		return nil, nil
	}
	return best, v
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i, v := range spec.Volumes {
		if v.Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return int32(n)
}

// buildDocOverlay builds the example overlay NAME from docs/deploy.md
// (every fenced block introduced by a line "`NAME/FILE`:") against a copy of
// the base laid out as the docs show, so the documented customisations keep
// working.
func buildDocOverlay(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	files := docFiles(t, filepath.Join("..", "docs", "deploy.md"), name+"/")
	if files["kustomization.yaml"] == "" {
		t.Fatalf("docs/deploy.md has no `%s/kustomization.yaml`: block", name)
	}
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "base"), os.DirFS(baseDir)); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(root, name)
	if err := os.Mkdir(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, body := range files {
		if err := os.WriteFile(filepath.Join(overlay, file), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return render(t, overlay)
}

func TestDocsOverlayProduction(t *testing.T) {
	objs := buildDocOverlay(t, "production")
	// Still named edge-agent-config (no hash suffix): agents reload the file
	// instead of every node rolling on each change.
	cfg, _ := loadConfig(t, objs)
	if len(cfg.Kubernetes.Hostnames) == 0 || cfg.Kubernetes.LabelSelector == "" {
		t.Errorf("the documented overlay config should show hostname rules and a label selector: %+v", cfg.Kubernetes)
	}
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", agentName))
	checkDaemonSet(t, ds, cfg)
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example.com/platform/edge-agent:v0.1.0" {
		t.Errorf("the overlay's images: entry did not apply: %s", c.Image)
	}
	// The example raises the drain time together with the grace period
	// (checkDaemonSet checks that the one exceeds the other).
	if d := cfg.Server.DrainTimeout.D(); d <= config.DefaultDrainTimeout {
		t.Errorf("the documented overlay should show a raised server.drainTimeout, got %v", d)
	}
	if g := ptr.Deref(ds.Spec.Template.Spec.TerminationGracePeriodSeconds, 0); g <= 40 {
		t.Errorf("the documented overlay should raise terminationGracePeriodSeconds with the drain time, got %d", g)
	}
	if slices.Contains(c.SecurityContext.Capabilities.Add, "NET_BIND_SERVICE") {
		t.Errorf("steering: NET_BIND_SERVICE should not be there, got %v", c.SecurityContext.Capabilities.Add)
	}
}

func TestDocsOverlayNarrow(t *testing.T) {
	objs := buildDocOverlay(t, "narrow")
	cfg, _ := loadConfig(t, objs)
	checkNarrow(t, objs, cfg)
	// Its config.yaml replaces the base's: it must keep steering on, or the
	// base DaemonSet (no ports, no NET_BIND_SERVICE) would not fit it.
	checkDaemonSet(t, typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", agentName)), cfg)
}

// TestDocsOverlayNoSteering builds the documented overlay for nodes without
// steering: the listeners bind the ports, so the DaemonSet gets them back
// with NET_BIND_SERVICE and rolls without a surge.
func TestDocsOverlayNoSteering(t *testing.T) {
	objs := buildDocOverlay(t, "no-steering")
	cfg, _ := loadConfig(t, objs)
	if cfg.Steering.Enabled {
		t.Fatal("the no-steering overlay's config.yaml has steering on")
	}
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", agentName))
	checkDaemonSet(t, ds, cfg)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ptr.Deref(ru.MaxUnavailable, intstr.IntOrString{}) != intstr.FromInt32(1) {
		t.Errorf("maxUnavailable %v: want 1", ru.MaxUnavailable)
	}
}

// checkNarrow checks the namespace-scoped RBAC overlay: no cluster-wide
// binding, and a RoleBinding of the ClusterRole in each watched namespace.
func checkNarrow(t *testing.T, objs []*unstructured.Unstructured, cfg *config.Config) {
	t.Helper()
	if len(cfg.Kubernetes.Namespaces) == 0 {
		t.Fatal("the narrow overlay must list kubernetes.namespaces")
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRoleBinding" {
			t.Errorf("ClusterRoleBinding %s is still there", o.GetName())
		}
	}
	for _, ns := range cfg.Kubernetes.Namespaces {
		var bound bool
		for _, o := range objs {
			if o.GetKind() != "RoleBinding" || o.GetNamespace() != ns {
				continue
			}
			rb := typed[rbacv1.RoleBinding](t, o)
			bound = rb.RoleRef.Kind == "ClusterRole" && rb.RoleRef.Name == agentName &&
				slices.ContainsFunc(rb.Subjects, func(s rbacv1.Subject) bool {
					return s.Kind == "ServiceAccount" && s.Namespace == agentNS && s.Name == agentName
				})
		}
		if !bound {
			t.Errorf("no RoleBinding of ClusterRole %s to the service account in namespace %s", agentName, ns)
		}
	}
}

// docFiles returns the fenced blocks of a Markdown file that follow a line
// "`<prefix>NAME`:", keyed by NAME.
func docFiles(t *testing.T, path, prefix string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	intro := regexp.MustCompile("^`" + regexp.QuoteMeta(prefix) + "([A-Za-z0-9._-]+)`:$")
	files := map[string]string{}
	var name string
	var body *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case body != nil && strings.HasPrefix(line, "```"):
			files[name] = body.String()
			name, body = "", nil
		case body != nil:
			body.WriteString(line + "\n")
		case name != "" && strings.HasPrefix(line, "```"):
			body = &strings.Builder{}
		case name != "" && strings.TrimSpace(line) != "":
			t.Fatalf("%s: `%s%s`: is not followed by a fenced block", path, prefix, name)
		default:
			if m := intro.FindStringSubmatch(line); m != nil {
				name = m[1]
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return files
}

// TestAppliesToAPIServer creates every object on a real kube-apiserver
// (strict field validation, so a misspelt field fails) and then checks the
// RBAC by acting as the agent's service account.
func TestAppliesToAPIServer(t *testing.T) {
	objs := render(t, baseDir)
	env := kubetest.Start(t)
	ctx := t.Context()

	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	// Namespaces first, as kubectl does.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return boolInt(b.GetKind() == "Namespace") - boolInt(a.GetKind() == "Namespace")
	})
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		created, err := ri.Create(ctx, o, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
		if err != nil {
			t.Fatalf("create %s %s/%s: %v", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		t.Logf("created %s %s/%s", created.GetKind(), created.GetNamespace(), created.GetName())
	}

	admin := env.Client
	ds, err := admin.AppsV1().DaemonSets(agentNS).Get(ctx, agentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The server keeps what we sent (nothing dropped as unknown or reset by
	// defaulting).
	if m := ds.Spec.Template.Spec.Containers[0].VolumeMounts; !slices.ContainsFunc(m, func(m corev1.VolumeMount) bool {
		return m.Name == "bpffs" && ptr.Deref(m.MountPropagation, "") == corev1.MountPropagationHostToContainer
	}) {
		t.Errorf("stored DaemonSet lost the bpffs mount propagation: %+v", m)
	}
	if sc := ds.Spec.Template.Spec.Containers[0].SecurityContext; sc.AppArmorProfile == nil || sc.SeccompProfile == nil {
		t.Errorf("stored DaemonSet lost the AppArmor/seccomp profiles: %+v", sc)
	}
	// The surge rollout the hand-over relies on is accepted as written.
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru == nil || ptr.Deref(ru.MaxSurge, intstr.IntOrString{}) != intstr.FromInt32(1) ||
		ptr.Deref(ru.MaxUnavailable, intstr.IntOrString{}) != intstr.FromInt32(0) {
		t.Errorf("stored updateStrategy %+v: want maxSurge 1 maxUnavailable 0", ds.Spec.UpdateStrategy)
	}
	if p := ds.Spec.Template.Spec.Containers[0].ReadinessProbe; p == nil || p.Exec == nil {
		t.Errorf("stored readiness probe %+v: want exec", p)
	}

	t.Run("PodAdmission", func(t *testing.T) { testPodAdmission(t, admin, ds) })
	t.Run("DocOverlays", func(t *testing.T) { testDocOverlaysAdmitted(t, admin) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, env) })
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// testPodAdmission dry-runs the pod the DaemonSet controller would create
// (there is no controller-manager here), so pod-only admission runs on it:
// Priority resolves system-node-critical in this namespace, and Pod
// Security admits it in edge-agent but not in a "baseline" namespace, which
// is why the Namespace carries the privileged label.
func testPodAdmission(t *testing.T, admin kubernetes.Interface, ds *appsv1.DaemonSet) {
	ctx := t.Context()
	pod := func(ns string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "edge-agent-node-1", Namespace: ns, Labels: ds.Spec.Template.Labels},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		}
		p.Spec.NodeName = "node-1"
		return p
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}
	got, err := admin.CoreV1().Pods(agentNS).Create(ctx, pod(agentNS), dryRun)
	if err != nil {
		t.Fatalf("the DaemonSet's pod is not admitted in %s: %v", agentNS, err)
	}
	if got.Spec.Priority == nil || *got.Spec.Priority < 2_000_000_000 {
		t.Errorf("priority %v: system-node-critical did not resolve", got.Spec.Priority)
	}
	// No host ports after defaulting (with hostNetwork the API server would
	// turn a containerPort into one): the scheduler's NodePorts filter
	// finds no conflict between the surge pod and the old one.
	for _, c := range got.Spec.Containers {
		if len(c.Ports) != 0 {
			t.Errorf("the admitted pod holds ports %+v: the surge pod could not share the node with the old one", c.Ports)
		}
	}

	const strict = "psa-baseline"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: strict, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = admin.CoreV1().Pods(strict).Create(ctx, pod(strict), dryRun)
	if !apierrors.IsForbidden(err) {
		t.Errorf("Pod Security baseline should reject the agent's pod (hostNetwork, hostPath, capabilities); got %v", err)
	} else {
		t.Logf("a baseline namespace refuses it, as expected: %v", err)
	}
}

// testDocOverlaysAdmitted dry-runs the DaemonSet of each overlay in
// docs/deploy.md (renamed, beside the base's) under strict validation, so
// their patches produce objects the API server accepts, update strategies
// included.
func testDocOverlaysAdmitted(t *testing.T, admin kubernetes.Interface) {
	ctx := t.Context()
	for _, name := range []string{"production", "narrow", "no-steering"} {
		ds := typed[appsv1.DaemonSet](t, find(t, buildDocOverlay(t, name), "DaemonSet", agentName))
		ds.Name = agentName + "-" + name
		_, err := admin.AppsV1().DaemonSets(agentNS).Create(ctx, ds, metav1.CreateOptions{
			DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			t.Errorf("overlay %s: the API server refuses its DaemonSet: %v", name, err)
		}
	}
}

// testRBAC acts as the agent's service account and checks each permission
// by doing it for real.
func testRBAC(t *testing.T, env *kubetest.Env) {
	ctx := t.Context()
	admin := env.Client

	// An application team's namespace with a Service, its EndpointSlice and
	// a TLS Secret, and a Lease of another name beside the agent's.
	mustOK(t, "create namespace", func() error {
		_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{})
		return err
	})
	svc, err := admin.CoreV1().Services(appNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{"edge-agent.io/hosts": "shop.example.com"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, "create tls secret", func() error {
		_, err := admin.CoreV1().Secrets(appNS).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-tls"},
			Type:       corev1.SecretTypeTLS,
			Data:       selfSignedTLS(t, "shop.example.com"),
		}, metav1.CreateOptions{})
		return err
	})
	mustOK(t, "create other lease", func() error {
		_, err := admin.CoordinationV1().Leases(agentNS).Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "someone-else"},
		}, metav1.CreateOptions{})
		return err
	})

	saCfg := rest.CopyConfig(env.Config)
	saCfg.Impersonate = rest.ImpersonationConfig{
		UserName: saUsername,
		// What a real token of this service account authenticates as.
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + agentNS, "system:authenticated"},
	}
	sa, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer sees new bindings through an informer: wait for them.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service account never got list services: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	tlsOnly := fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
	can := map[string]func() error{
		"list services in all namespaces": func() error {
			_, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			return err
		},
		"watch services in all namespaces": func() error {
			return watchOnce(sa.CoreV1().Services("").Watch(ctx, metav1.ListOptions{}))
		},
		"list services in shop": func() error {
			_, err := sa.CoreV1().Services(appNS).List(ctx, metav1.ListOptions{})
			return err
		},
		"list endpointslices in all namespaces": func() error {
			_, err := sa.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name"})
			return err
		},
		"watch endpointslices in all namespaces": func() error {
			return watchOnce(sa.DiscoveryV1().EndpointSlices("").Watch(ctx, metav1.ListOptions{}))
		},
		"watch endpointslices in shop": func() error {
			return watchOnce(sa.DiscoveryV1().EndpointSlices(appNS).Watch(ctx, metav1.ListOptions{}))
		},
		"list TLS secrets in all namespaces": func() error {
			l, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{FieldSelector: tlsOnly})
			if err == nil && len(l.Items) != 1 {
				err = fmt.Errorf("want the one TLS secret, got %d", len(l.Items))
			}
			return err
		},
		"watch TLS secrets in all namespaces": func() error {
			return watchOnce(sa.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{FieldSelector: tlsOnly}))
		},
		"create an event in shop": func() error {
			_, err := sa.CoreV1().Events(appNS).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: "shop.manual"},
				InvolvedObject: corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: appNS, Name: svc.Name, UID: svc.UID},
				Reason:         translate.ReasonInvalidAnnotation,
				Message:        "edge-agent.io/timout: unknown key",
				Type:           corev1.EventTypeWarning,
				Source:         corev1.EventSource{Component: "edge-agent", Host: "node-1"},
				Count:          1,
			}, metav1.CreateOptions{})
			return err
		},
		"patch an event in shop": func() error {
			_, err := sa.CoreV1().Events(appNS).Patch(ctx, "shop.manual", types.StrategicMergePatchType, []byte(`{"count":2}`), metav1.PatchOptions{})
			return err
		},
		"create an events.k8s.io event in shop": func() error {
			_, err := sa.EventsV1().Events(appNS).Create(ctx, &eventsv1.Event{
				ObjectMeta:          metav1.ObjectMeta{Name: "shop.manual-v1"},
				EventTime:           metav1.NowMicro(),
				ReportingController: "edge-agent.io/edge-agent",
				ReportingInstance:   "node-1",
				Action:              "Translate",
				Reason:              translate.ReasonRouteConflict,
				Note:                "shop.example.com / is served by other/shop",
				Type:                corev1.EventTypeWarning,
				Regarding:           corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: appNS, Name: svc.Name, UID: svc.UID},
			}, metav1.CreateOptions{})
			return err
		},
		// RBAC cannot limit create by name; get/update of another Lease
		// are refused below.
		"create a lease of another name in edge-agent": func() error {
			_, err := sa.CoordinationV1().Leases(agentNS).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "created-by-agent"}}, metav1.CreateOptions{})
			return err
		},
	}
	cannot := map[string]func() error{
		"update a service": func() error {
			s := svc.DeepCopy()
			s.Annotations["edge-agent.io/hosts"] = "stolen.example.com"
			_, err := sa.CoreV1().Services(appNS).Update(ctx, s, metav1.UpdateOptions{})
			return err
		},
		"patch a service": func() error {
			_, err := sa.CoreV1().Services(appNS).Patch(ctx, svc.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		},
		"delete a service": func() error {
			return sa.CoreV1().Services(appNS).Delete(ctx, svc.Name, metav1.DeleteOptions{})
		},
		"create a secret": func() error {
			_, err := sa.CoreV1().Secrets(appNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		},
		"update a secret": func() error {
			_, err := sa.CoreV1().Secrets(appNS).Patch(ctx, "shop-tls", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
			return err
		},
		"list pods in all namespaces": func() error {
			_, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list pods in shop": func() error {
			_, err := sa.CoreV1().Pods(appNS).List(ctx, metav1.ListOptions{})
			return err
		},
		"get nodes": func() error {
			_, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		},
		"list configmaps": func() error {
			_, err := sa.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list events": func() error {
			_, err := sa.CoreV1().Events(appNS).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete an event": func() error {
			return sa.CoreV1().Events(appNS).Delete(ctx, "shop.manual", metav1.DeleteOptions{})
		},
		"get a lease of another name": func() error {
			_, err := sa.CoordinationV1().Leases(agentNS).Get(ctx, "someone-else", metav1.GetOptions{})
			return err
		},
		"update a lease of another name": func() error {
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Namespace: agentNS}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1")}}
			_, err := sa.CoordinationV1().Leases(agentNS).Update(ctx, l, metav1.UpdateOptions{})
			return err
		},
		"list leases": func() error {
			_, err := sa.CoordinationV1().Leases(agentNS).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete its own lease": func() error {
			return sa.CoordinationV1().Leases(agentNS).Delete(ctx, source.LeaseName, metav1.DeleteOptions{})
		},
		"create the lease in another namespace": func() error {
			_, err := sa.CoordinationV1().Leases(appNS).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: source.LeaseName}}, metav1.CreateOptions{})
			return err
		},
		"create a service": func() error {
			_, err := sa.CoreV1().Services(appNS).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
			}, metav1.CreateOptions{})
			return err
		},
	}

	for _, name := range slices.Sorted(maps.Keys(can)) {
		if err := can[name](); err != nil {
			t.Errorf("CAN %s: %v", name, err)
		} else {
			t.Logf("can %s", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cannot)) {
		if err := cannot[name](); !apierrors.IsForbidden(err) {
			t.Errorf("CANNOT %s: want Forbidden, got %v", name, err)
		} else {
			t.Logf("cannot %s (Forbidden)", name)
		}
	}

	// The agent's own Lease, the way the agent uses it: client-go leader
	// election gets it (not found), creates it, renews it (update) and
	// releases it (update). Then the same verbs by hand.
	t.Run("LeaderElection", func(t *testing.T) { testLeaderElection(t, sa, admin) })
	mustOK(t, "get and update lease "+source.LeaseName+" as the agent", func() error {
		l, err := sa.CoordinationV1().Leases(agentNS).Get(ctx, source.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = ptr.To("node-2")
		_, err = sa.CoordinationV1().Leases(agentNS).Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	// The agent's Event recorder: a repeated Event is a patch of the first.
	t.Run("EventRecorder", func(t *testing.T) { testEventRecorder(t, sa, admin, svc) })
	// Last: it takes the cluster-wide binding away.
	t.Run("NarrowOverlay", func(t *testing.T) { testNarrowOverlay(t, sa, admin, svc) })
}

// testNarrowOverlay applies the RBAC of the "narrow" overlay from
// docs/deploy.md (RoleBindings in the watched namespaces instead of the
// ClusterRoleBinding) and checks that the agent keeps what it needs there
// and loses Secrets everywhere else.
func testNarrowOverlay(t *testing.T, sa, admin kubernetes.Interface, svc *corev1.Service) {
	ctx := t.Context()
	objs := buildDocOverlay(t, "narrow")
	cfg, _ := loadConfig(t, objs)
	checkNarrow(t, objs, cfg)
	if !slices.Equal(cfg.Kubernetes.Namespaces, []string{appNS}) {
		t.Fatalf("the narrow overlay's namespaces %v: this test expects [%s]", cfg.Kubernetes.Namespaces, appNS)
	}
	if err := admin.RbacV1().ClusterRoleBindings().Delete(ctx, agentName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "RoleBinding" || o.GetNamespace() == agentNS {
			continue
		}
		rb := typed[rbacv1.RoleBinding](t, o)
		if _, err := admin.RbacV1().RoleBindings(rb.Namespace).Create(ctx, rb, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Fatal(err)
		}
	}
	tlsOnly := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()}
	// Wait for the authorizer to drop the cluster-wide grant.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := sa.CoreV1().Secrets("").List(ctx, tlsOnly)
		if apierrors.IsForbidden(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing Secrets in all namespaces still answers %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	can := map[string]func() error{
		"watch services in shop": func() error { return watchOnce(sa.CoreV1().Services(appNS).Watch(ctx, metav1.ListOptions{})) },
		"watch endpointslices in shop": func() error {
			return watchOnce(sa.DiscoveryV1().EndpointSlices(appNS).Watch(ctx, metav1.ListOptions{}))
		},
		"watch TLS secrets in shop": func() error { return watchOnce(sa.CoreV1().Secrets(appNS).Watch(ctx, tlsOnly)) },
		"create an event in shop": func() error {
			_, err := sa.CoreV1().Events(appNS).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: "shop.narrow"},
				InvolvedObject: corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: appNS, Name: svc.Name, UID: svc.UID},
				Reason:         source.ReasonServing, Type: corev1.EventTypeNormal,
				Source: corev1.EventSource{Component: "edge-agent"}, Count: 1,
			}, metav1.CreateOptions{})
			return err
		},
		"get and update its lease": func() error {
			l, err := sa.CoordinationV1().Leases(agentNS).Get(ctx, source.LeaseName, metav1.GetOptions{})
			if err == nil {
				_, err = sa.CoordinationV1().Leases(agentNS).Update(ctx, l, metav1.UpdateOptions{})
			}
			return err
		},
	}
	cannot := map[string]func() error{
		"list secrets in all namespaces": func() error { _, err := sa.CoreV1().Secrets("").List(ctx, tlsOnly); return err },
		"list secrets in kube-system":    func() error { _, err := sa.CoreV1().Secrets("kube-system").List(ctx, tlsOnly); return err },
		"list services in all namespaces": func() error {
			_, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			return err
		},
		"create an event in default": func() error {
			_, err := sa.CoreV1().Events("default").Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		},
	}
	for _, name := range slices.Sorted(maps.Keys(can)) {
		if err := can[name](); err != nil {
			t.Errorf("CAN %s: %v", name, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cannot)) {
		if err := cannot[name](); !apierrors.IsForbidden(err) {
			t.Errorf("CANNOT %s: want Forbidden, got %v", name, err)
		}
	}
}

func mustOK(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// watchOnce opens a watch (the authorisation check happens there) and
// closes it.
func watchOnce(w interface{ Stop() }, err error) error {
	if err != nil {
		return err
	}
	w.Stop()
	return nil
}

func testLeaderElection(t *testing.T, sa, admin kubernetes.Interface) {
	ctx := t.Context()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: agentNS, Name: source.LeaseName},
		Client:     sa.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "node-1"},
	}
	lectx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	done := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   3 * time.Second,
		RenewDeadline:   2 * time.Second,
		RetryPeriod:     200 * time.Millisecond,
		ReleaseOnCancel: true,
		Name:            source.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				// Let it renew at least once (an update) before releasing.
				first, err := admin.CoordinationV1().Leases(agentNS).Get(ctx, source.LeaseName, metav1.GetOptions{})
				if err != nil {
					t.Errorf("admin get lease: %v", err)
					close(renewed)
					return
				}
				for ctx.Err() == nil {
					l, err := admin.CoordinationV1().Leases(agentNS).Get(ctx, source.LeaseName, metav1.GetOptions{})
					if err == nil && l.ResourceVersion != first.ResourceVersion {
						close(renewed)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		elector.Run(lectx)
	}()
	select {
	case <-renewed:
	case <-time.After(15 * time.Second):
		t.Fatal("the service account never acquired and renewed the Lease")
	}
	cancel()
	<-done
	l, err := admin.CoordinationV1().Leases(agentNS).Get(ctx, source.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "" {
		t.Errorf("holder after release %q: the release (an update) failed", h)
	}
}

func testEventRecorder(t *testing.T, sa, admin kubernetes.Interface, svc *corev1.Service) {
	ctx := t.Context()
	b := record.NewBroadcaster(record.WithContext(ctx))
	defer b.Shutdown()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: sa.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "edge-agent", Host: "node-1"})
	const msg = "edge-agent.io/timout: unknown key"
	rec.Event(svc, corev1.EventTypeWarning, translate.ReasonInvalidAnnotation, msg)
	rec.Event(svc, corev1.EventTypeWarning, translate.ReasonInvalidAnnotation, msg)

	// The queries docs/deploy.md gives operators, as the admin.
	for _, sel := range []string{
		"reason=" + translate.ReasonInvalidAnnotation,
		"type=Warning,source=edge-agent",
	} {
		deadline := time.Now().Add(15 * time.Second)
		for found := false; !found; {
			l, err := admin.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				t.Fatalf("--field-selector %s: %v", sel, err)
			}
			for _, e := range l.Items {
				if e.Message == msg && e.InvolvedObject.UID == svc.UID && e.Count == 2 {
					found = true
				}
			}
			if !found && time.Now().After(deadline) {
				var seen []string
				for _, e := range l.Items {
					seen = append(seen, fmt.Sprintf("%s count %d", e.Name, e.Count))
				}
				t.Fatalf("--field-selector %s: no Event with count 2 (create then patch) on the Service; found %v", sel, seen)
			}
			if !found {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// selfSignedTLS returns the data of a kubernetes.io/tls Secret for host.
func selfSignedTLS(t *testing.T, host string) map[string][]byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}
