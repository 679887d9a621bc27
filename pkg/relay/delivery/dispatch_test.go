package delivery

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// oldestDue must pick exactly what sorting the whole due set would.
func TestOldestDue(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		due := map[string]time.Time{}
		n := rng.IntN(300)
		for i := range n {
			// Few distinct times, so ties are broken by ID.
			due[fmt.Sprintf("%016d", rng.IntN(1000)*1000+i)] = now.Add(time.Duration(rng.IntN(7)-4) * time.Second)
		}
		k := rng.IntN(20)
		got, next := oldestDue(due, now, k)

		var all []dueItem
		var wantNext time.Time
		for id, t := range due {
			if t.After(now) {
				if wantNext.IsZero() || t.Before(wantNext) {
					wantNext = t
				}
				continue
			}
			all = append(all, dueItem{id, t})
		}
		slices.SortFunc(all, func(a, b dueItem) int {
			if a.before(b) {
				return -1
			}
			return 1
		})
		want := all[:min(k, len(all))]
		if !slices.Equal(got, want) {
			t.Fatalf("round %d (n=%d k=%d): got %v, want %v", round, n, k, got, want)
		}
		if !next.Equal(wantNext) {
			t.Fatalf("round %d: next %v, want %v", round, next, wantNext)
		}
	}
}

func BenchmarkOldestDue(b *testing.B) {
	now := time.Now()
	due := map[string]time.Time{}
	for i := range 5000 {
		due[fmt.Sprintf("%016d", i)] = now.Add(-time.Duration(i) * time.Millisecond)
	}
	for b.Loop() {
		oldestDue(due, now, 1)
	}
}
