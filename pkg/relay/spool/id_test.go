package spool

import (
	"slices"
	"testing"
	"time"
)

func TestNewIDSortsAndIsUnique(t *testing.T) {
	var c idClock
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	var ids []string
	for i := range 10000 {
		// The clock stands still and even steps back: IDs must still rise.
		at := now
		if i%3 == 2 {
			at = now.Add(-time.Second)
		}
		id := newID(&c, at)
		if len(id) != idLen || !ValidID(id) {
			t.Fatalf("bad ID %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate ID %q", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Error("IDs from one clock do not sort in issue order")
	}
	got, err := IDTime(ids[0])
	if err != nil || !got.Equal(now) {
		t.Errorf("IDTime = %v, %v, want %v", got, err, now)
	}
	later := newID(&idClock{}, now.Add(time.Hour))
	if later <= ids[len(ids)-1] {
		t.Errorf("an hour later sorts before: %s <= %s", later, ids[len(ids)-1])
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"0CT4H1P9VGA2K3QF", true},
		{"a", true},
		{"Postfix4BfLXs1z", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../etc", false},
		{"a/b", false},
		{"a b", false},
		{"a.json", false},
		{"a\x00", false},
		{"ä", false},
		{string(make([]byte, 65)), false},
	}
	for _, tc := range tests {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if _, err := IDTime("short"); err == nil {
		t.Error("IDTime accepted a non-generated ID")
	}
}
