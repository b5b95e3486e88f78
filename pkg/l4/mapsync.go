package l4

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// readMap reads every entry of m: the "current" side of the diffs by which
// L4 services, backends and the deny list are synced (what is already
// there is left alone, so traffic never sees a half-written map).
func readMap[K comparable, V any](m *ebpf.Map, what string) (map[K]V, error) {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}
