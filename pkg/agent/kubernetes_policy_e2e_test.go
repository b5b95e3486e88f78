package agent_test

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Traffic policy and access control set by annotations, end to end against
// a real API server: a rate limit, an IP rule and an API key from a labeled
// Secret apply to live traffic, and a policy error is reported on its own
// Service while the others serve.
func TestKubernetesPolicyAndSecurityAnnotations(t *testing.T) {
	kt := newKubeTest(t, "")
	if _, err := kt.client.CoreV1().Secrets(kt.ns).Create(kt.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-keys", Labels: map[string]string{"edge-agent.io/auth-secret": "true"}},
		Data:       map[string][]byte{"keys": []byte("k-123\n")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kt.createService("shop", map[string]string{
		"edge-agent.io/hosts":                      "shop.example.com",
		"edge-agent.io/rate-limit-requests":        "3",
		"edge-agent.io/rate-limit-period":          "1m",
		"edge-agent.io/admin.path-prefix":          "/admin",
		"edge-agent.io/admin.ip-allow":             "10.0.0.0/8",
		"edge-agent.io/keys.path-prefix":           "/keys",
		"edge-agent.io/keys.api-keys-secret":       "shop-keys",
		"edge-agent.io/keys.rate-limit-requests":   "100",
		"edge-agent.io/keys.retry-attempts":        "2",
		"edge-agent.io/keys.retry-per-try-timeout": "1s",
	})
	kt.createService("other", map[string]string{"edge-agent.io/hosts": "other.example.com"})
	kt.putSlice("shop", endpointState{kt.addr(0), true, false})
	kt.putSlice("other", endpointState{kt.addr(1), true, false})
	kt.eventually("other routes", convergence, kt.routesTo("other.example.com", "/", kt.addr(1)))
	kt.eventually("shop routes", convergence, kt.routesTo("shop.example.com", "/", kt.addr(0)))

	// The default route's rate limit: 3 a minute (one went to convergence).
	codes := []int{}
	for range 4 {
		code, _, _, err := kt.request("shop.example.com", "/")
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
	}
	if codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("rate limit: %v, want 429 at the end", codes)
	}
	// The admin route admits 10/8 only; the test client is 127.0.0.1.
	if code, _, _, _ := kt.request("shop.example.com", "/admin/x"); code != http.StatusForbidden {
		t.Fatalf("admin from 127.0.0.1: %d, want 403", code)
	}
	// The keys route wants the key from the Secret.
	if code, _, _, _ := kt.request("shop.example.com", "/keys/x"); code != http.StatusUnauthorized {
		t.Fatalf("no key: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", kt.agent.proxyURL("/keys/x"), nil)
	req.Host = "shop.example.com"
	req.Header.Set("X-API-Key", "k-123")
	resp, err := newClient(false).Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Edge-Agent-Attempts") != "1" {
		t.Fatalf("with the key: %v %v", resp, err)
	}
	resp.Body.Close()

	// A policy the model refuses (per-try timeout above the route timeout)
	// is reported on that Service, naming the key; the others keep serving.
	kt.annotate("other", map[string]string{
		"edge-agent.io/hosts":                 "other.example.com",
		"edge-agent.io/timeout":               "2s",
		"edge-agent.io/retry-attempts":        "1",
		"edge-agent.io/retry-per-try-timeout": "5s",
	})
	if msg := kt.event("other", "InvalidAnnotation"); !strings.Contains(msg, "edge-agent.io/retry-per-try-timeout") {
		t.Fatalf("Event = %q, want it to name retry-per-try-timeout", msg)
	}
	if err := kt.routesTo("other.example.com", "/", kt.addr(1))(); err != nil {
		t.Fatalf("other's last good config: %v", err)
	}
	if code, _, _, _ := kt.request("shop.example.com", "/admin/x"); code != http.StatusForbidden {
		t.Fatalf("shop after other's error: %d", code)
	}
	// The Secret's content is nowhere in the admin page.
	if dc := kt.agent.debugConfigRaw(); strings.Contains(dc, "k-123") {
		t.Fatal("/debug/config shows the API key")
	}
}
