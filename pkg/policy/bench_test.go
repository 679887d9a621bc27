package policy

import (
	"fmt"
	"strings"
	"testing"
)

// bigPolicy is a file of n entries: domains, a user entry per 10, and
// the catch-all.
func bigPolicy(n int) []byte {
	var b strings.Builder
	b.Grow(n * 32)
	b.WriteString("* mode=testing\n")
	for i := 1; i < n; i++ {
		if i%10 == 0 {
			fmt.Fprintf(&b, "user%d@partner%d.example bits=256\n", i, i)
		} else {
			fmt.Fprintf(&b, "partner%d.example\n", i)
		}
	}
	return []byte(b.String())
}

// BenchmarkLookup: SPEC target ≤ 1 µs/op and 0 allocs/op on 1,000,000 entries.
func BenchmarkLookup(b *testing.B) {
	f, err := Parse("big", bigPolicy(1_000_000))
	if err != nil {
		b.Fatal(err)
	}
	p := f.Compile()
	rcpts := []string{
		"User500000@Partner500000.example",  // user entry
		"bob@mail.sales.partner777.example", // two parents up
		"nobody@unlisted.example.org",       // falls to the catch-all
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if p.Lookup(rcpts[i%len(rcpts)]).Entry == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkParse: SPEC target ≤ 1 s to load and index 1,000,000 lines.
func BenchmarkParse(b *testing.B) {
	data := bigPolicy(1_000_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := Parse("big", data)
		if err != nil {
			b.Fatal(err)
		}
		if f.Compile().Len() != 1_000_000 {
			b.Fatal("wrong count")
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	req := Requirement{Options: DefaultOptions(), Target: "partner.com", Line: 1}
	out := Outcome{TLS: true, Version: 0x0304, CipherSuite: 0x1302}
	b.ReportAllocs()
	for b.Loop() {
		if !Evaluate(req, out).Met {
			b.Fatal("not met")
		}
	}
}
