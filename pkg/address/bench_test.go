package address

import "testing"

// Every RCPT is read once by ParseValue, and every delivery attempt reads
// each stored recipient with Parse and writes it with String.
func BenchmarkParseValue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseValue("bob.smith@sales.partner.example"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAndString(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(`"bob smith"@Sales.Partner.Example.`)
		if err != nil {
			b.Fatal(err)
		}
		_ = m.String()
	}
}

func BenchmarkCanonicalDomainIDN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CanonicalDomain("ｐａｒｔｎｅｒ.bücher.example"); err != nil {
			b.Fatal(err)
		}
	}
}
