package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKubernetesSection(t *testing.T) {
	c := mustParse(t, minimalYAML+`kubernetes:
  namespaces: [shop, blog]
  labelSelector: edge=public
  listeners: [http]
  debounce: 250ms
  hostnames:
    - hosts: ["*.shop.example.com", shop.example.com]
      namespaces: [shop]
`)
	k := c.Kubernetes
	if len(k.Namespaces) != 2 || k.LabelSelector != "edge=public" || k.Debounce.D() != 250*time.Millisecond || len(k.Hostnames) != 1 || k.Enabled {
		t.Fatalf("kubernetes = %+v", k)
	}
	if d := mustParse(t, minimalYAML).Kubernetes.Debounce.D(); d != DefaultKubernetesDebounce {
		t.Fatalf("default debounce = %v", d)
	}
}

func TestKubernetesSectionErrors(t *testing.T) {
	_, err := Parse([]byte(minimalYAML + `kubernetes:
  namespaces: [Shop]
  listeners: [nope]
  debounce: 1m
  hostnames:
    - hosts: [bad_host]
      namespaces: []
`))
	var fe Errors
	if !errors.As(err, &fe) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := map[string]bool{
		"kubernetes.namespaces[0]":           true,
		"kubernetes.listeners[0]":            true,
		"kubernetes.debounce":                true,
		"kubernetes.hostnames[0].hosts[0]":   true,
		"kubernetes.hostnames[0].namespaces": true,
	}
	for _, e := range fe {
		delete(want, e.Path)
	}
	if len(want) != 0 {
		t.Fatalf("missing errors for %v in:\n%v", want, err)
	}
}

// In Kubernetes mode Secrets supply certificates, so an https listener may
// start with none; a standalone file still needs one.
func TestKubernetesBaseAllowsHTTPSWithoutCertificates(t *testing.T) {
	yml := `listeners:
  - name: https
    address: 127.0.0.1:8443
    protocol: https
    tls: {certificates: []}
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("standalone Load accepted an https listener without certificates")
	}
	c, err := LoadKubernetesBase(path)
	if err != nil {
		t.Fatalf("LoadKubernetesBase: %v", err)
	}
	if !c.Kubernetes.Enabled {
		t.Fatal("Enabled not set")
	}
}

func TestFinalizeFragment(t *testing.T) {
	routes := []Route{{Name: "r", Listeners: []string{"http"}, Hosts: []string{"a.example.com"},
		Match: Match{Path: &PathMatch{Exact: "/x"}}, Rewrite: &Rewrite{Prefix: "/y"}, Backends: []Backend{{Cluster: "c"}}}}
	clusters := []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "10.0.0.1:80"}}}}
	err := FinalizeFragment(routes, clusters, []string{"http"})
	var fe Errors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Path != "routes[0].rewrite.prefix" {
		t.Fatalf("err = %v", err)
	}
	if routes[0].Timeout.D() != DefaultRouteTimeout || clusters[0].LBPolicy != LBRoundRobin {
		t.Fatal("defaults not applied in place")
	}
	routes[0].Rewrite = nil
	if err := FinalizeFragment(routes, clusters, []string{"other"}); err == nil {
		t.Fatal("unknown listener accepted")
	}
}

func TestL4Section(t *testing.T) {
	c := mustParse(t, minimalYAML+`l4:
  interfaces: [eth0]
  services:
    - name: dns
      address: 10.96.0.10:53
      protocol: udp
      backends: [{address: 10.1.0.2:53}, {address: 10.1.0.3:53, weight: 3}]
    - name: web
      address: 10.96.0.10:80
      backends: [{address: 10.1.0.2:8080}]
`)
	if s := c.L4.Services; len(s) != 2 || s[1].Protocol != L4TCP || s[0].Backends[0].Weight != 1 || s[0].Backends[1].Weight != 3 {
		t.Fatalf("l4 = %+v", c.L4)
	}
	_, err := Parse([]byte(minimalYAML + `l4:
  interfaces: ["a/b"]
  socketLB: {enabled: true, cgroup: sys/fs/cgroup}
  services:
    - name: a
      address: vip.example.com:80
      protocol: sctp
      backends: [{address: "[::1]:80"}, {address: 10.0.0.1:0}]
    - name: b
      address: 10.0.0.9:80
      backends: [{address: 10.0.0.1:80}, {address: 10.0.0.1:80}]
    - name: c
      address: 10.0.0.9:80
`))
	var fe Errors
	if !errors.As(err, &fe) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := map[string]bool{
		"l4.interfaces[0]": true, "l4.services[0].address": true, "l4.services[0].protocol": true,
		"l4.services[0].backends[0].address": true, "l4.services[0].backends[1].address": true,
		"l4.services[1].backends[1].address": true, "l4.services[2].address": true,
		"l4.socketLB.cgroup": true,
	}
	for _, e := range fe {
		delete(want, e.Path)
	}
	if len(want) != 0 {
		t.Fatalf("missing errors for %v in:\n%v", want, err)
	}
}
