package kubetest_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edge-agent/edge-agent/internal/kubetest"
)

func TestEnv(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	env := kubetest.Start(t)
	t.Logf("env ready in %v", time.Since(begin).Round(time.Millisecond))
	ctx := t.Context()
	c := env.Client
	const ns = "kubetest"

	if _, err := os.Stat(env.Kubeconfig); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	mustCreate(t, "namespace", func() error {
		_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, "service", func() error {
		_, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		return err
	})

	t.Run("EndpointSlice", func(t *testing.T) {
		if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-a", "10.200.0.2"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create with 10.x address: %v", err)
		}
		// The documented pitfall: loopback backends can't be published.
		_, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-b", "127.0.0.1"), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("create with 127.0.0.1: got %v, want Invalid", err)
		}
	})

	t.Run("Event", func(t *testing.T) {
		now := metav1.Now()
		_, err := c.CoreV1().Events(ns).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "web-"},
			InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: ns, Name: "web", APIVersion: "v1"},
			Reason:         "Test",
			Message:        "kubetest event",
			Type:           corev1.EventTypeNormal,
			Source:         corev1.EventSource{Component: "kubetest"},
			FirstTimestamp: now,
			LastTimestamp:  now,
			Count:          1,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create event: %v", err)
		}
	})

	// The kinds the agent and its tests write must be accepted with no
	// controller-manager behind the API server.
	t.Run("Objects", func(t *testing.T) {
		meta := metav1.ObjectMeta{Name: "edge-agent", Namespace: ns}
		labels := map[string]string{"app": "edge-agent"}
		for what, create := range map[string]func() error{
			"secret": func() error {
				_, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{})
				return err
			},
			"configmap": func() error {
				_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
				return err
			},
			"serviceaccount": func() error {
				_, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
				return err
			},
			"lease": func() error {
				_, err := c.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: meta, Spec: coordinationv1.LeaseSpec{HolderIdentity: new("node-a")}}, metav1.CreateOptions{})
				return err
			},
			"clusterrole": func() error {
				_, err := c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
					ObjectMeta: metav1.ObjectMeta{Name: "edge-agent"},
					Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}}},
				}, metav1.CreateOptions{})
				return err
			},
			"daemonset": func() error {
				_, err := c.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
					ObjectMeta: meta,
					Spec: appsv1.DaemonSetSpec{
						Selector: &metav1.LabelSelector{MatchLabels: labels},
						Template: corev1.PodTemplateSpec{
							ObjectMeta: metav1.ObjectMeta{Labels: labels},
							Spec: corev1.PodSpec{
								HostNetwork:        true,
								ServiceAccountName: "edge-agent",
								Containers: []corev1.Container{{
									Name:            "agent",
									Image:           "edge-agent:test",
									SecurityContext: &corev1.SecurityContext{Privileged: new(true)},
								}},
							},
						},
					},
				}, metav1.CreateOptions{})
				return err
			},
		} {
			mustCreate(t, what, create)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		const sa = "nobody"
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
		as, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		list := func() error {
			_, err := as.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			return err
		}
		if err := list(); !apierrors.IsForbidden(err) {
			t.Fatalf("list services without bindings: got %v, want Forbidden", err)
		}

		// A binding must flip it: proves RBAC decides, not a blanket deny.
		mustCreate(t, "role", func() error {
			_, err := c.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "svc-reader"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list"}}},
			}, metav1.CreateOptions{})
			return err
		})
		mustCreate(t, "rolebinding", func() error {
			_, err := c.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "svc-reader"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "svc-reader"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
			}, metav1.CreateOptions{})
			return err
		})
		// The authorizer reads bindings from an informer: allow it to catch up.
		deadline := time.Now().Add(5 * time.Second)
		for err := list(); err != nil; err = list() {
			if time.Now().After(deadline) {
				t.Fatalf("list services after binding: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestStop checks that stop ends the processes and removes the temp dir.
func TestStop(t *testing.T) {
	t.Parallel()
	env, stop, err := kubetest.StartMain()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // must be safe to call twice

	if _, err := os.Stat(filepath.Dir(env.Kubeconfig)); !os.IsNotExist(err) {
		t.Errorf("temp dir after stop: %v, want not exist", err)
	}
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host); err == nil {
		conn.Close()
		t.Errorf("API server still listening on %s after stop", u.Host)
	}
}

func slice(name, addr string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}
}

func mustCreate(t *testing.T, what string, create func() error) {
	t.Helper()
	if err := create(); err != nil {
		t.Fatalf("create %s: %v", what, err)
	}
}
