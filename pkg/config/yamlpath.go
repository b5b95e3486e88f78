package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	lineRef      = regexp.MustCompile(`line (\d+): `)
	unknownField = regexp.MustCompile(`field (\S+) not found`)
	duplicateKey = regexp.MustCompile(`mapping key "([^"]+)" already defined`)
)

// decodeErrors turns YAML decoding errors (unknown fields, wrong types,
// duplicate keys), which name only a line, into FieldErrors that also name
// the field path, e.g. `routes[1].timeout`. It returns nil when err does not
// refer to lines it can place.
func decodeErrors(data []byte, err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil
	}
	var out Errors
	for _, msg := range msgs {
		m := lineRef.FindStringSubmatch(msg)
		if m == nil {
			return nil
		}
		line, _ := strconv.Atoi(m[1])
		// Errors that name a key are placed at that key, not inside its value.
		key := ""
		if k := unknownField.FindStringSubmatch(msg); k != nil {
			key = k[1]
		} else if k := duplicateKey.FindStringSubmatch(msg); k != nil {
			key = k[1]
		}
		path := pathAtLine(&root, line, "", key)
		if path == "" || path[0] == '[' {
			return nil // not a place in the config's mapping: keep YAML's own message
		}
		out = append(out, FieldError{Path: path, Reason: msg})
	}
	return out
}

// pathAtLine finds the mapping key named key on line, or else the deepest
// mapping key or sequence item on line, and returns its path in the config's
// notation.
func pathAtLine(n *yaml.Node, line int, path, key string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p := pathAtLine(c, line, path, key); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		best := ""
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if k.Line == line && key != "" && k.Value == key {
				best = p
				continue // a later duplicate of key on this line is the one reported
			}
			if deeper := pathAtLine(v, line, p, key); deeper != "" {
				return deeper
			}
			if k.Line == line && key == "" {
				best = p // keep looking: a later duplicate key on this line is the one reported
			}
		}
		return best
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if deeper := pathAtLine(c, line, p, key); deeper != "" {
				return deeper
			}
			if c.Kind == yaml.ScalarNode && c.Line == line {
				return p
			}
		}
	}
	return ""
}
