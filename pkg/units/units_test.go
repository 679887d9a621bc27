package units

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "10MB": 10_000_000, "10mb": 10_000_000, "50MiB": 50 << 20,
		"50 MiB": 50 << 20, "1k": 1024, "2G": 2 << 30, "512B": 512, "0": 0, "1kB": 1000,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "10XB", "-1", "1.5MB", "99999999999999999999", "9999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
	if _, err := ParseSize("10XB"); !strings.Contains(err.Error(), "want a size such as 10MB") {
		t.Errorf("error in the user's words: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "4h": 4 * time.Hour, "5d": 5 * day, "1d12h": 36 * time.Hour,
		"2w": 14 * day, "1.5d": 36 * time.Hour, "0": 0, "250ms": 250 * time.Millisecond,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "5", "-1h", "5x", "1d-2h", "99999999999w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
	if _, err := ParseDuration("1y"); !strings.Contains(err.Error(), "want a duration such as 90s, 4h or 5d") {
		t.Errorf("error in the user's words: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1 << 20, 50 << 20, 3 << 30, 1<<20 + 1} {
		if got, err := ParseSize(FormatSize(n)); err != nil || got != n {
			t.Errorf("size %d → %q → %d %v", n, FormatSize(n), got, err)
		}
	}
	for _, d := range []time.Duration{time.Second, 90 * time.Minute, 5 * day, 4 * time.Hour, 36 * time.Hour} {
		if got, err := ParseDuration(FormatDuration(d)); err != nil || got != d {
			t.Errorf("duration %v → %q → %v %v", d, FormatDuration(d), got, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"5d", "1d12h", "90s", "1.5w", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("%q → negative %v", s, d)
		}
	})
}
