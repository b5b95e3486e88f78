// Package maglev computes Maglev consistent-hashing lookup tables
// (Eisenbud et al., NSDI 2016, section 3.4). The eBPF program reads a table
// from a BPF array: slot = hash(5-tuple) % M gives the backend id.
package maglev

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"sort"
)

// TableSize is the lookup table size M: a prime, so every skip generates a
// full permutation. M > 100·N keeps the spread within about 1% for up to 163
// backends.
const TableSize = 16381

// Backend is one table entry: ID is what the table stores (the BPF backend
// map key; 0 means empty, so it is refused), Name seeds the permutation
// (stable across restarts and nodes, e.g. "10.0.0.1:80"), Weight ≥ 1 scales
// its share.
type Backend struct {
	ID     uint32
	Name   string
	Weight uint32
}

// Table fills a table of size m with backend ids. The same backends in any
// order give the same table on every node; no backends give all zeros.
func Table(backends []Backend, m int) ([]uint32, error) {
	if m < 2 || !big.NewInt(int64(m)).ProbablyPrime(20) {
		return nil, fmt.Errorf("table size %d is not a prime", m)
	}
	table := make([]uint32, m)
	if len(backends) == 0 {
		return table, nil
	}
	bs := append([]Backend(nil), backends...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
	names, ids := map[string]bool{}, map[uint32]bool{}
	var maxW uint32
	for _, b := range bs {
		switch {
		case b.ID == 0:
			return nil, fmt.Errorf("backend %q: id 0 is reserved for empty slots", b.Name)
		case b.Weight == 0:
			return nil, fmt.Errorf("backend %q: weight must be at least 1", b.Name)
		case names[b.Name]:
			return nil, fmt.Errorf("backend %q is listed twice", b.Name)
		case ids[b.ID]:
			return nil, fmt.Errorf("backend id %d is used twice", b.ID)
		}
		names[b.Name], ids[b.ID] = true, true
		maxW = max(maxW, b.Weight)
	}
	n := len(bs)
	offset, skip, next := make([]uint64, n), make([]uint64, n), make([]uint64, n)
	for i, b := range bs {
		offset[i] = hash(b.Name, 0x5bd1e995) % uint64(m)
		skip[i] = hash(b.Name, 0x27d4eb2f)%uint64(m-1) + 1
	}
	// Weighted fill: each round a backend earns weight/maxWeight of a turn
	// and takes a slot per whole turn earned, so shares follow weights and
	// the heaviest backend takes one slot every round.
	credit := make([]float64, n)
	filled := 0
	for filled < m {
		progressed := false
		for i := range bs {
			credit[i] += float64(bs[i].Weight) / float64(maxW)
			for credit[i] >= 1 && filled < m {
				credit[i]--
				// Next preferred slot that is still free.
				for {
					c := (offset[i] + next[i]*skip[i]) % uint64(m)
					next[i]++
					if table[c] == 0 {
						table[c] = bs[i].ID
						filled++
						progressed = true
						break
					}
				}
			}
		}
		if !progressed && maxW == 0 {
			return nil, errors.New("no backend can take a slot")
		}
	}
	return table, nil
}

// hash is FNV-1a 64 of name with a seed prefix: deterministic across
// processes (hash/maphash would not be), with two seeds giving the two
// independent hashes Maglev needs.
func hash(name string, seed uint32) uint64 {
	h := fnv.New64a()
	var s [4]byte
	s[0], s[1], s[2], s[3] = byte(seed), byte(seed>>8), byte(seed>>16), byte(seed>>24)
	h.Write(s[:])
	h.Write([]byte(name))
	return h.Sum64()
}
