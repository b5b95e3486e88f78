package proxy

import "strings"

// hostTable maps host patterns (exact names, "*.example.com" wildcards) to
// values; a lookup tries the exact name, then the most specific wildcard.
// Certificates, TLS passthrough and client-certificate requirements all
// pick by server name this way.
type hostTable[T any] struct {
	exact    map[string]T
	wildcard map[string]T
}

func newHostTable[T any]() *hostTable[T] {
	return &hostTable[T]{exact: map[string]T{}, wildcard: map[string]T{}}
}

// add maps pattern to v; a later pattern replaces an equal earlier one.
func (h *hostTable[T]) add(pattern string, v T) {
	pattern = strings.ToLower(pattern)
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		h.wildcard[rest] = v
	} else {
		h.exact[pattern] = v
	}
}

// lookup finds the value for a server name (case and a trailing dot
// ignored).
func (h *hostTable[T]) lookup(name string) (T, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if v, ok := h.exact[name]; ok {
		return v, true
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if v, ok := h.wildcard[name[i+1:]]; ok {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}
