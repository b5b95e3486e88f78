package maglev

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func backends(n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{ID: uint32(i + 1), Name: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1), Weight: 1}
	}
	return bs
}

func shares(t *testing.T, table []uint32) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	for _, id := range table {
		if id == 0 {
			t.Fatal("empty slot in a table with backends")
		}
		out[id]++
	}
	return out
}

func TestEvenSpread(t *testing.T) {
	for _, n := range []int{3, 10, 100} {
		table, err := Table(backends(n), TableSize)
		if err != nil {
			t.Fatal(err)
		}
		s := shares(t, table)
		lo, hi := TableSize, 0
		for _, c := range s {
			lo, hi = min(lo, c), max(hi, c)
		}
		t.Logf("N=%d: slots per backend min %d max %d (ideal %d)", n, lo, hi, TableSize/n)
		if len(s) != n || float64(hi-lo) > 0.03*float64(TableSize/n)+1 {
			t.Errorf("N=%d: uneven spread min %d max %d", n, lo, hi)
		}
	}
}

func TestWeights(t *testing.T) {
	table, err := Table([]Backend{{ID: 1, Name: "a", Weight: 1}, {ID: 2, Name: "b", Weight: 3}}, TableSize)
	if err != nil {
		t.Fatal(err)
	}
	s := shares(t, table)
	if p := float64(s[2]) / TableSize; p < 0.73 || p > 0.77 {
		t.Fatalf("weight 3 of 4 got %.3f of the slots", p)
	}
}

func TestMinimalDisruption(t *testing.T) {
	for _, n := range []int{10, 100} {
		all := backends(n)
		before, _ := Table(all, TableSize)
		after, err := Table(all[:n-1], TableSize) // remove the last
		if err != nil {
			t.Fatal(err)
		}
		removed := all[n-1].ID
		changed, fromSurvivors := 0, 0
		for i := range before {
			if before[i] != after[i] {
				changed++
				if before[i] != removed {
					fromSurvivors++
				}
			}
		}
		t.Logf("N=%d: removing one changed %d slots (%.2f%%), %d of them from surviving backends", n, changed, 100*float64(changed)/TableSize, fromSurvivors)
		// Maglev trades a little disruption for its even spread: at
		// M/N = 163 (N = 100) about twice the ideal 1/N of slots move.
		if float64(changed) > 2.5*float64(TableSize)/float64(n) || float64(fromSurvivors) > 0.015*TableSize {
			t.Errorf("N=%d: %d changed, %d from survivors", n, changed, fromSurvivors)
		}
		// Adding one back is the same move in reverse.
		again, _ := Table(all, TableSize)
		for i := range again {
			if again[i] != before[i] {
				t.Fatal("the same backends gave a different table")
			}
		}
	}
}

func TestDeterministicAcrossOrder(t *testing.T) {
	bs := backends(20)
	a, _ := Table(bs, TableSize)
	shuffled := append([]Backend(nil), bs...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, _ := Table(shuffled, TableSize)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("slot %d differs with another input order", i)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   []Backend
		m    int
	}{
		{"size not prime", backends(3), 16380},
		{"duplicate name", []Backend{{ID: 1, Name: "a", Weight: 1}, {ID: 2, Name: "a", Weight: 1}}, 7},
		{"duplicate id", []Backend{{ID: 1, Name: "a", Weight: 1}, {ID: 1, Name: "b", Weight: 1}}, 7},
		{"zero id", []Backend{{ID: 0, Name: "a", Weight: 1}}, 7},
		{"zero weight", []Backend{{ID: 1, Name: "a", Weight: 0}}, 7},
	} {
		if _, err := Table(tc.bs, tc.m); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	table, err := Table(nil, 7)
	if err != nil || len(table) != 7 {
		t.Fatal(err)
	}
	for _, id := range table {
		if id != 0 {
			t.Fatal("empty backend list must give an empty table")
		}
	}
}

func BenchmarkTable100(b *testing.B) {
	bs := backends(100)
	for b.Loop() {
		if _, err := Table(bs, TableSize); err != nil {
			b.Fatal(err)
		}
	}
}
