package source

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/edge-agent/edge-agent/internal/kubetest"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/k8s/translate"
)

// TestAuthSecretsAgainstAPIServer runs the source against a real API
// server: Secrets named by basic-auth-secret are seen only when labeled
// for edge-agent, label changes are followed, and no Event shows a
// Secret's content.
func TestAuthSecretsAgainstAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	c := env.Client
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const ns = "shop"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte("the-password"))
	users := "alice:{SHA}" + base64.StdEncoding.EncodeToString(sum[:])
	label := map[string]string{translate.AuthSecretLabel: translate.AuthSecretLabelValue}
	for name, labels := range map[string]map[string]string{"staff": label, "unlabeled": nil} {
		if _, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"users": []byte(users)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for svc, secret := range map[string]string{"web": "staff", "other": "unlabeled"} {
		if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: svc, Annotations: map[string]string{
				"edge-agent.io/hosts":             svc + ".example.com",
				"edge-agent.io/basic-auth-secret": secret,
			}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	results := make(chan *translate.Result, 64)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Client:   c,
			Settings: config.Kubernetes{Namespaces: []string{ns}, Debounce: config.Duration(10 * time.Millisecond)},
			Identity: "test-node",
			Publish: func(r *translate.Result) {
				select {
				case results <- r:
				default:
				}
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var last *translate.Result
	await := func(what string, ok func(r *translate.Result) error) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		var err error
		for {
			select {
			case r := <-results:
				last = r
				if err = ok(r); err == nil {
					return
				}
			case <-deadline:
				t.Fatalf("%s: %v (last result %+v)", what, err, last)
			}
		}
	}
	state := func(r *translate.Result, name string) translate.ServiceStatus {
		for _, s := range r.Status {
			if s.Name == name {
				return s
			}
		}
		return translate.ServiceStatus{}
	}
	await("the labeled Secret serves, the unlabeled one is not seen", func(r *translate.Result) error {
		web, other := state(r, "web"), state(r, "other")
		if web.State != translate.StateServing {
			return fmt.Errorf("web = %+v", web)
		}
		if other.State != translate.StateNotServing || len(other.Problems) != 1 || !strings.Contains(other.Problems[0].Message, "secret shop/unlabeled not found") {
			return fmt.Errorf("other = %+v", other)
		}
		for _, rt := range r.Routes {
			if rt.Name == "k8s:shop/web/default" && (rt.BasicAuth == nil || len(rt.BasicAuth.Users) != 1 || rt.BasicAuth.Users[0] != users) {
				return fmt.Errorf("web route basic auth = %+v", rt.BasicAuth)
			}
		}
		return nil
	})

	// Labeling the Secret makes it visible; unlabeling takes it away.
	patch := func(name, labels string) {
		t.Helper()
		if _, err := c.CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":`+labels+`}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch("unlabeled", `{"`+translate.AuthSecretLabel+`":"true"}`)
	patch("staff", `{"`+translate.AuthSecretLabel+`":null}`)
	await("the label moved", func(r *translate.Result) error {
		if s := state(r, "other"); s.State != translate.StateServing {
			return fmt.Errorf("other = %+v", s)
		}
		if s := state(r, "web"); s.State != translate.StateNotServing {
			return fmt.Errorf("web = %+v", s)
		}
		return nil
	})

	// The Events name the Secret, never what it holds.
	var events []corev1.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		events = l.Items
		found := 0
		for _, e := range events {
			if e.Reason == translate.ReasonInvalidSecret {
				found++
			}
		}
		if found >= 2 || time.Now().After(deadline) {
			if found < 2 {
				t.Fatalf("want InvalidSecret Events on both Services, got %+v", events)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range events {
		if strings.Contains(e.Message, "the-password") || strings.Contains(e.Message, users[len("alice:"):]) || strings.Contains(e.Message, "alice") {
			t.Errorf("Event shows Secret content: %s", e.Message)
		}
	}
}
