package upstream

import (
	"math/rand/v2"
	"sort"
	"sync/atomic"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// picker chooses an endpoint for one request.
type picker interface {
	pick() *Endpoint
}

func newPicker(policy config.LBPolicy, eps []*Endpoint) picker {
	switch policy {
	case config.LBLeastRequest:
		return &leastRequest{eps: eps}
	case config.LBRandom:
		return newRandom(eps)
	default:
		return newRoundRobin(eps)
	}
}

// roundRobin walks a precomputed smooth weighted sequence (nginx's
// algorithm, run once at build time) with one atomic counter.
type roundRobin struct {
	seq  []*Endpoint
	next atomic.Uint64
}

// maxSchedule bounds the precomputed sequence; larger weight sums are scaled.
const maxSchedule = 4096

func newRoundRobin(eps []*Endpoint) *roundRobin {
	weights := make([]int, len(eps))
	total := 0
	g := 0
	for i, e := range eps {
		weights[i] = e.Weight
		total += e.Weight
		g = gcd(g, e.Weight)
	}
	if g > 1 {
		total = 0
		for i := range weights {
			weights[i] /= g
			total += weights[i]
		}
	}
	if total > maxSchedule {
		scaled := 0
		for i, w := range weights {
			weights[i] = max(1, w*maxSchedule/total)
			scaled += weights[i]
		}
		total = scaled
	}
	seq := make([]*Endpoint, 0, total)
	current := make([]int, len(eps))
	for range total {
		best := 0
		for i := range eps {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, eps[best])
	}
	return &roundRobin{seq: seq}
}

func (r *roundRobin) pick() *Endpoint {
	if len(r.seq) == 0 {
		return nil
	}
	n := r.next.Add(1) - 1
	return r.seq[n%uint64(len(r.seq))]
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// random picks by weight; cumulative weights make it O(log n).
type random struct {
	eps   []*Endpoint
	cum   []int
	total int
}

func newRandom(eps []*Endpoint) *random {
	r := &random{eps: eps, cum: make([]int, len(eps))}
	for i, e := range eps {
		r.total += e.Weight
		r.cum[i] = r.total
	}
	return r
}

func (r *random) pick() *Endpoint {
	if r.total <= 0 {
		return nil
	}
	x := rand.IntN(r.total)
	return r.eps[sort.SearchInts(r.cum, x+1)]
}

// leastRequest is power-of-two-choices: sample two endpoints, take the one
// with fewer requests in flight. Weights are not used.
type leastRequest struct{ eps []*Endpoint }

func (l *leastRequest) pick() *Endpoint {
	switch n := len(l.eps); n {
	case 0:
		return nil
	case 1:
		return l.eps[0]
	default:
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := l.eps[i], l.eps[j]
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	}
}
