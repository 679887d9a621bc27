// Package units reads the sizes and durations operators type: "10MB",
// "50MiB", "90s", "4h", "5d". Go's time.ParseDuration has no days and
// strconv no units, and an error like `strconv.ParseInt: parsing "10MB"`
// tells an operator nothing; these say what is wanted.
package units

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	// Postfix and most admins write "k" and "m" for binary multiples.
	"k": 1 << 10,
	"m": 1 << 20,
	"g": 1 << 30,
}

// ParseSize reads a byte count: a whole number, optionally followed by a
// unit: B, kB, MB, GB (powers of 1000), KiB, MiB, GiB or K, M, G (powers
// of 1024), case-insensitive, with or without a space.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if i == 0 || !ok {
		return 0, fmt.Errorf("%q: want a size such as 10MB, 50MiB or 1048576 (bytes)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n * mult, nil
}

// FormatSize writes n in the largest binary unit that divides it, so
// that ParseSize reads it back: 52428800 → "50MiB".
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

const day = 24 * time.Hour

// ParseDuration reads Go's duration syntax ("90s", "4h30m") with days
// ("5d") and weeks ("2w") added; a day is 24 hours. Negative durations
// are refused: no setting of the product wants one.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	bad := fmt.Errorf("%q: want a duration such as 90s, 4h or 5d", s)
	if t == "" || t[0] == '-' || t[0] == '+' {
		return 0, bad
	}
	if t == "0" {
		return 0, nil
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		j := i
		for j < len(t) && (t[j] < '0' || t[j] > '9') && t[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		num, unit := t[:i], t[i:j]
		var d time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			mult := float64(day)
			if unit == "w" {
				mult *= 7
			}
			if err != nil || f*mult > math.MaxInt64 {
				return 0, bad
			}
			d = time.Duration(f * mult)
		default:
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, bad
			}
		}
		if total > math.MaxInt64-d {
			return 0, errors.New(s + ": too long")
		}
		total += d
		t = t[j:]
	}
	return total, nil
}

// FormatDuration writes d so that ParseDuration reads it back, in days
// when it is a whole number of them: 120h → "5d".
func FormatDuration(d time.Duration) string {
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
