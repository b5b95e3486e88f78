// Package maglev computes Maglev consistent-hashing lookup tables
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4). The eBPF program reads the table from a
// BPF array map: slot = hash(5-tuple) % M gives the backend ID.
package maglev

import (
	"fmt"
	"slices"
	"strings"
)

// TableSize is the lookup table size M: a prime, so every skip value
// generates a full permutation. M > 100·N keeps the spread within about 1%
// for up to 163 backends.
const TableSize = 16381

// Backend is one table entry. ID is what the table stores (the BPF backend
// map key; never 0, which marks an empty slot). Name seeds the permutation,
// so it must be stable across restarts and nodes (e.g. "10.0.0.1:80").
// Weight ≥ 1 scales the backend's share of the slots.
type Backend struct {
	ID     uint32
	Name   string
	Weight uint32
}

// Table fills a table of size m (a prime; TableSize in production) with
// backend IDs. It is deterministic: the same backends, in any order, give the
// same table on every node. An empty backend list gives a table of zeros.
//
// Weights: each round every backend earns Weight credit and claims one slot
// per maxWeight of credit it holds, so over the fill its share is
// Weight/sum(Weight) and the heaviest backend claims a slot every round. With
// equal weights this is exactly the paper's round-robin. Credits are integers
// so no float rounding can differ between nodes.
func Table(backends []Backend, m int) ([]uint32, error) {
	if !isPrime(m) {
		return nil, fmt.Errorf("maglev: table size %d is not prime", m)
	}
	// Sort a copy by name: the fill order decides ties, so it must not
	// depend on the caller's order.
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })

	ids := make(map[uint32]struct{}, len(bs))
	var maxW uint64
	for i, b := range bs {
		switch {
		case b.ID == 0:
			return nil, fmt.Errorf("maglev: backend %q: ID 0 is reserved for empty slots", b.Name)
		case b.Weight == 0:
			return nil, fmt.Errorf("maglev: backend %q: weight must be at least 1", b.Name)
		case i > 0 && bs[i-1].Name == b.Name: // sorted, so duplicates are adjacent
			return nil, fmt.Errorf("maglev: duplicate backend name %q", b.Name)
		}
		if _, dup := ids[b.ID]; dup {
			return nil, fmt.Errorf("maglev: duplicate backend ID %d", b.ID)
		}
		ids[b.ID] = struct{}{}
		maxW = max(maxW, uint64(b.Weight))
	}

	table := make([]uint32, m)
	if len(bs) == 0 {
		return table, nil
	}

	// pos is each backend's current place in its permutation
	// (offset + j·skip) mod m, advanced by skip instead of storing the
	// N×M permutation matrix.
	mm := uint64(m)
	pos := make([]uint64, len(bs))
	skip := make([]uint64, len(bs))
	for i, b := range bs {
		pos[i] = hash(b.Name, seedOffset) % mm
		skip[i] = hash(b.Name, seedSkip)%(mm-1) + 1
	}

	// Terminates: the heaviest backend claims a slot every round, and its
	// permutation visits every slot because m is prime and 1 ≤ skip < m.
	credit := make([]uint64, len(bs))
	for filled := 0; filled < m; {
		for i := range bs {
			credit[i] += uint64(bs[i].Weight)
			for credit[i] >= maxW && filled < m {
				credit[i] -= maxW
				for table[pos[i]] != 0 {
					pos[i] = (pos[i] + skip[i]) % mm
				}
				table[pos[i]] = bs[i].ID
				filled++
			}
		}
	}
	return table, nil
}

// Seeds for the two hashes; any two distinct constants work, but they are
// part of the table format: changing them reshuffles every table.
const (
	seedOffset = 0x6d61676c65763031 // "maglev01"
	seedSkip   = 0x6d61676c65763032 // "maglev02"
)

// hash is seeded FNV-1a 64 followed by the SplitMix64 finalizer. It is
// deterministic across processes and nodes (hash/maphash seeds are random
// per process), and the finalizer decorrelates the two seeded hashes, which
// plain FNV would leave related for names that differ in one byte.
func hash(name string, seed uint64) uint64 {
	const prime = 0x100000001b3
	h := uint64(0xcbf29ce484222325) ^ seed
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// isPrime is trial division: m is at most a few hundred thousand in
// practice, and this runs once per table.
func isPrime(m int) bool {
	if m < 2 {
		return false
	}
	for d := 2; d <= m/d; d++ {
		if m%d == 0 {
			return false
		}
	}
	return true
}
