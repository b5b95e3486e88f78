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
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown fields, wrong types and duplicate keys
// are errors), applies defaults and validates.
func Parse(data []byte) (*Config, error) {
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
