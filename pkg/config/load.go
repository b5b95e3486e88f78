package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Load reads, parses, defaults and validates a YAML config file.
func Load(path string) (*Config, error) { return load(path, false) }

// LoadKubernetesBase loads the node's file config for Kubernetes mode, where
// Secrets supply the https listeners' certificates.
func LoadKubernetesBase(path string) (*Config, error) { return load(path, true) }

func load(path string, kubernetes bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := parse(data, kubernetes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown fields, wrong types and duplicate keys
// are errors), applies defaults and validates.
func Parse(data []byte) (*Config, error) { return parse(data, false) }

func parse(data []byte, kubernetes bool) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		if fe := decodeErrors(data, err); fe != nil {
			return nil, fe
		}
		return nil, fmt.Errorf("parse: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse: the file must hold exactly one YAML document")
	}
	c.Kubernetes.Enabled = kubernetes
	if err := Finalize(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Finalize fills defaults and validates. Every source (the file, later the
// Kubernetes translator) passes its result through it before publishing.
func Finalize(c *Config) error {
	applyDefaults(c)
	return Validate(c)
}

// FinalizeFragment fills defaults in place and validates routes and clusters
// as Finalize would inside a config whose listeners are listenerNames.
// Sources that translate many objects vet each object's part on its own, so
// one bad object is dropped instead of failing the whole snapshot. Field
// paths start at routes[i] and clusters[i] of the fragment.
func FinalizeFragment(routes []Route, clusters []Cluster, listenerNames []string) error {
	c := Config{Routes: routes, Clusters: clusters}
	applyDefaults(&c)
	var e errs
	listeners := make(map[string]bool, len(listenerNames))
	for _, n := range listenerNames {
		listeners[n] = true
	}
	validateRoutes(&e, routes, listeners, validateClusters(&e, clusters))
	return e.err()
}

// FinalizeL4 fills defaults and validates L4 services on their own, for
// sources that vet one object's part at a time.
func FinalizeL4(l *L4) error {
	c := Config{L4: *l}
	applyDefaults(&c)
	*l = c.L4
	var e errs
	validateL4(&e, l)
	return e.err()
}
