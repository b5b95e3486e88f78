package upstream

import (
	"math"
	"sync"
	"testing"

	"github.com/edge-agent/edge-agent/pkg/config"
)

func mkEndpoints(weights ...int) []*Endpoint {
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = &Endpoint{Address: string(rune('a' + i)), Weight: w}
	}
	return eps
}

func indexOf(eps []*Endpoint, e *Endpoint) int {
	for i, x := range eps {
		if x == e {
			return i
		}
	}
	return -1
}

func TestRoundRobinSmoothNginxOrder(t *testing.T) {
	eps := mkEndpoints(5, 1, 1)
	rr := newRoundRobin(eps)
	if len(rr.seq) != 7 {
		t.Fatalf("schedule length = %d, want 7", len(rr.seq))
	}
	want := "aabacaa"
	for cycle := 0; cycle < 3; cycle++ {
		got := make([]byte, 0, 7)
		counts := make([]int, 3)
		for range 7 {
			e := rr.pick()
			got = append(got, e.Address[0])
			counts[indexOf(eps, e)]++
		}
		if string(got) != want {
			t.Fatalf("cycle %d: order %q, want nginx's %q", cycle, got, want)
		}
		if counts[0] != 5 || counts[1] != 1 || counts[2] != 1 {
			t.Fatalf("cycle %d: counts %v, want [5 1 1]", cycle, counts)
		}
	}
}

// The smooth property: the heavy endpoint never runs longer than needed and
// every window of one cycle has exact proportions.
func TestRoundRobinExactCountsEveryWindow(t *testing.T) {
	weights := []int{3, 2, 1}
	eps := mkEndpoints(weights...)
	rr := newRoundRobin(eps)
	total := 6
	seq := make([]int, 0, total*4)
	for range total * 4 {
		seq = append(seq, indexOf(eps, rr.pick()))
	}
	// Any window of `total` consecutive picks (the schedule is cyclic) has
	// exactly weight[i] picks of endpoint i.
	for start := 0; start+total <= len(seq); start++ {
		counts := make([]int, len(eps))
		for _, i := range seq[start : start+total] {
			counts[i]++
		}
		for i, w := range weights {
			if counts[i] != w {
				t.Fatalf("window at %d: counts %v, want %v", start, counts, weights)
			}
		}
	}
	// {3,2,1} in nginx order: a b a c b a.
	want := []int{0, 1, 0, 2, 1, 0}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want prefix %v", seq[:total], want)
		}
	}
}

func TestRoundRobinGCDReduction(t *testing.T) {
	eps := mkEndpoints(10, 20, 30)
	rr := newRoundRobin(eps)
	if len(rr.seq) != 6 {
		t.Fatalf("schedule for {10,20,30} has %d entries, want 6 (reduced by gcd 10)", len(rr.seq))
	}
	ref := newRoundRobin(mkEndpoints(1, 2, 3))
	for i := range rr.seq {
		if rr.seq[i].Address != ref.seq[i].Address {
			t.Fatalf("reduced schedule differs from {1,2,3} at %d", i)
		}
	}
	if rr := newRoundRobin(mkEndpoints(4, 4)); len(rr.seq) != 2 || rr.seq[0] == rr.seq[1] {
		t.Fatalf("{4,4}: schedule %d entries, want 2 alternating", len(rr.seq))
	}
	if rr := newRoundRobin(mkEndpoints(7)); len(rr.seq) != 1 {
		t.Fatalf("{7}: schedule %d entries, want 1", len(rr.seq))
	}
}

func TestRoundRobinScalesLargeWeights(t *testing.T) {
	cases := [][]int{
		{10000, 1, 3000, 7},
		{config.MaxEndpointWeight, config.MaxEndpointWeight - 1, 1},
		{4097, 1},
		{5000, 5000, 5000, 1, 1, 1},
	}
	for _, weights := range cases {
		eps := mkEndpoints(weights...)
		rr := newRoundRobin(eps)
		if len(rr.seq) > maxSchedule+len(eps) {
			t.Errorf("%v: schedule has %d entries, want about %d at most", weights, len(rr.seq), maxSchedule)
		}
		counts := make([]int, len(eps))
		for _, e := range rr.seq {
			counts[indexOf(eps, e)]++
		}
		sum := 0
		for _, w := range weights {
			sum += w
		}
		for i, w := range weights {
			if counts[i] < 1 {
				t.Errorf("%v: endpoint %d (weight %d) never scheduled", weights, i, w)
			}
			want := float64(w) / float64(sum)
			got := float64(counts[i]) / float64(len(rr.seq))
			// Within 3% of the whole, or 5% relative for big shares.
			if math.Abs(got-want) > 0.03 {
				t.Errorf("%v: endpoint %d share %.4f, want %.4f", weights, i, got, want)
			}
			if want > 0.1 && math.Abs(got-want)/want > 0.05 {
				t.Errorf("%v: endpoint %d share %.4f, want %.4f (relative)", weights, i, got, want)
			}
		}
	}
}

func TestRoundRobinConcurrentExactCounts(t *testing.T) {
	eps := mkEndpoints(5, 1, 1)
	rr := newRoundRobin(eps)
	const goroutines, perG = 8, 7 * 20000
	var wg sync.WaitGroup
	results := make([][3]int, goroutines)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range perG {
				results[g][indexOf(eps, rr.pick())]++
			}
		}()
	}
	close(start)
	wg.Wait()
	var total [3]int
	for _, r := range results {
		for i := range r {
			total[i] += r[i]
		}
	}
	cycles := goroutines * perG / 7
	if total != [3]int{5 * cycles, cycles, cycles} {
		t.Fatalf("counts %v, want [%d %d %d]", total, 5*cycles, cycles, cycles)
	}
}

func TestRandomRespectsWeights(t *testing.T) {
	weights := []int{1, 2, 7, 0}
	eps := mkEndpoints(weights...)
	r := newRandom(eps)
	const n = 200000
	counts := make([]int, len(eps))
	for range n {
		counts[indexOf(eps, r.pick())]++
	}
	sum := 10.0
	for i, w := range weights {
		p := float64(w) / sum
		mean := p * n
		sigma := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(counts[i])-mean) > 6*sigma+1 {
			t.Errorf("endpoint %d (weight %d): %d picks, want %.0f ± %.0f", i, w, counts[i], mean, 6*sigma)
		}
	}
	if counts[3] != 0 {
		t.Errorf("weight-0 endpoint picked %d times", counts[3])
	}
}

func TestLeastRequestPrefersFewerActive(t *testing.T) {
	eps := mkEndpoints(1, 1)
	eps[0].active.Store(5)
	l := &leastRequest{eps: eps}
	for range 1000 {
		if e := l.pick(); e != eps[1] {
			t.Fatalf("picked %s with %d active over %s with %d", e.Address, e.active.Load(), eps[1].Address, eps[1].active.Load())
		}
	}
	eps[0].active.Store(0)
	eps[1].active.Store(3)
	for range 1000 {
		if e := l.pick(); e != eps[0] {
			t.Fatalf("picked %s, want the idle endpoint", e.Address)
		}
	}
}

// With distinct loads, the most loaded endpoint can only win a pair made of
// itself twice; it must never be returned. The least loaded wins every pair
// it is in: 2/n of picks.
func TestLeastRequestNeverSamplesSameEndpointTwice(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		eps := mkEndpoints(make([]int, n)...)
		for i, e := range eps {
			e.active.Store(int64(i * 10))
		}
		l := &leastRequest{eps: eps}
		const picks = 60000
		counts := make([]int, n)
		for range picks {
			counts[indexOf(eps, l.pick())]++
		}
		if counts[n-1] != 0 {
			t.Errorf("n=%d: most loaded endpoint picked %d times", n, counts[n-1])
		}
		p := 2.0 / float64(n)
		if n == 2 {
			p = 1
		}
		mean := p * picks
		sigma := math.Sqrt(picks * p * (1 - p))
		if math.Abs(float64(counts[0])-mean) > 6*sigma+1 {
			t.Errorf("n=%d: least loaded picked %d times, want %.0f ± %.0f", n, counts[0], mean, 6*sigma)
		}
	}
}

func TestLeastRequestTiesSpread(t *testing.T) {
	eps := mkEndpoints(1, 1, 1, 1)
	l := &leastRequest{eps: eps}
	const picks = 40000
	counts := make([]int, len(eps))
	for range picks {
		counts[indexOf(eps, l.pick())]++
	}
	mean := float64(picks) / 4
	sigma := math.Sqrt(picks * 0.25 * 0.75)
	for i, c := range counts {
		if math.Abs(float64(c)-mean) > 6*sigma {
			t.Errorf("endpoint %d picked %d times, want %.0f ± %.0f", i, c, mean, 6*sigma)
		}
	}
}

func TestPickersEmptyAndSingle(t *testing.T) {
	for _, policy := range []config.LBPolicy{config.LBRoundRobin, config.LBRandom, config.LBLeastRequest, ""} {
		if e := newPicker(policy, nil).pick(); e != nil {
			t.Errorf("%q: empty endpoint list picked %v", policy, e)
		}
		if e := newPicker(policy, []*Endpoint{}).pick(); e != nil {
			t.Errorf("%q: empty endpoint list picked %v", policy, e)
		}
		one := mkEndpoints(3)
		for range 10 {
			if e := newPicker(policy, one).pick(); e != one[0] {
				t.Errorf("%q: single endpoint list picked %v", policy, e)
			}
		}
	}
	if _, ok := newPicker(config.LBLeastRequest, nil).(*leastRequest); !ok {
		t.Error("least_request policy did not build a leastRequest picker")
	}
	if _, ok := newPicker(config.LBRandom, nil).(*random); !ok {
		t.Error("random policy did not build a random picker")
	}
	if _, ok := newPicker(config.LBRoundRobin, nil).(*roundRobin); !ok {
		t.Error("round_robin policy did not build a roundRobin picker")
	}
}
