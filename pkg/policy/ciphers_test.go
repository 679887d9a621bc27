package policy

import (
	"crypto/tls"
	"testing"
)

// Every suite Go can negotiate must have an explicit strength: a gap
// would silently count as 0 and bounce good mail, or hide a weak suite.
func TestCipherTableCoversGo(t *testing.T) {
	all := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	for _, cs := range all {
		s, ok := LookupSuite(cs.ID)
		if !ok {
			t.Errorf("suite %s (0x%04x) missing from the bits table", cs.Name, cs.ID)
			continue
		}
		if s.Name != cs.Name {
			t.Errorf("0x%04x: table says %s, Go says %s", cs.ID, s.Name, cs.Name)
		}
	}
}

func TestCipherBits(t *testing.T) {
	cases := map[uint16]int{
		tls.TLS_AES_128_GCM_SHA256:                  128,
		tls.TLS_AES_256_GCM_SHA384:                  256,
		tls.TLS_CHACHA20_POLY1305_SHA256:            256,
		tls.TLS_RSA_WITH_RC4_128_SHA:                128,
		tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:           112,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:   256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: 128,
		0x0009: 56,  // DES
		0x0003: 40,  // export RC4-40
		0x0064: 56,  // export1024 RC4-56
		0x0002: 0,   // NULL-SHA
		0xc010: 0,   // ECDHE-RSA-NULL-SHA
		0x0041: 128, // CAMELLIA128
		0x0088: 256, // DHE-RSA-CAMELLIA256
		0xfefe: 0,   // unknown: fail closed
		0x5600: 0,   // TLS_FALLBACK_SCSV is not a suite
	}
	for id, want := range cases {
		if got := CipherBits(id); got != want {
			t.Errorf("CipherBits(0x%04x) = %d, want %d", id, got, want)
		}
	}
}

func TestCipherTableNoDuplicates(t *testing.T) {
	seen := map[uint16]string{}
	for _, s := range Suites() {
		if prev, dup := seen[s.ID]; dup {
			t.Errorf("0x%04x listed twice: %s and %s", s.ID, prev, s.Name)
		}
		seen[s.ID] = s.Name
	}
}
