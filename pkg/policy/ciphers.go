package policy

import "crypto/tls"

// Suite describes one TLS cipher suite by its IANA ID.
type Suite struct {
	ID   uint16
	Name string
	// Bits is the effective symmetric strength as OpenSSL's
	// SSL_CIPHER_get_bits reports it (and Sendmail's ${cipher_bits}).
	Bits int
	// TLS13 marks suites that exist only in TLS 1.3.
	TLS13 bool
}

// suites lists every suite Go knows plus the legacy ones a deep probe may
// meet (DHE, CAMELLIA, SEED, IDEA, DES, export, anonymous, NULL). Bits
// follow OpenSSL: 3DES counts 112, DES 56, export 40 (or 56), NULL 0.
var suites = []Suite{
	// TLS 1.3 (RFC 8446 §B.4).
	{0x1301, "TLS_AES_128_GCM_SHA256", 128, true},
	{0x1302, "TLS_AES_256_GCM_SHA384", 256, true},
	{0x1303, "TLS_CHACHA20_POLY1305_SHA256", 256, true},
	{0x1304, "TLS_AES_128_CCM_SHA256", 128, true},
	{0x1305, "TLS_AES_128_CCM_8_SHA256", 128, true},

	// NULL encryption: authenticated, not encrypted.
	{0x0000, "TLS_NULL_WITH_NULL_NULL", 0, false},
	{0x0001, "TLS_RSA_WITH_NULL_MD5", 0, false},
	{0x0002, "TLS_RSA_WITH_NULL_SHA", 0, false},
	{0x003b, "TLS_RSA_WITH_NULL_SHA256", 0, false},
	{0xc001, "TLS_ECDH_ECDSA_WITH_NULL_SHA", 0, false},
	{0xc006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA", 0, false},
	{0xc00b, "TLS_ECDH_RSA_WITH_NULL_SHA", 0, false},
	{0xc010, "TLS_ECDHE_RSA_WITH_NULL_SHA", 0, false},
	{0xc015, "TLS_ECDH_anon_WITH_NULL_SHA", 0, false},

	// Export grade (RFC 2246 appendix A.5).
	{0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5", 40, false},
	{0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", 40, false},
	{0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x000b, "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x000e, "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5", 40, false},
	{0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA", 40, false},
	{0x0062, "TLS_RSA_EXPORT1024_WITH_DES_CBC_SHA", 56, false},
	{0x0063, "TLS_DHE_DSS_EXPORT1024_WITH_DES_CBC_SHA", 56, false},
	{0x0064, "TLS_RSA_EXPORT1024_WITH_RC4_56_SHA", 56, false},

	// Single DES.
	{0x0009, "TLS_RSA_WITH_DES_CBC_SHA", 56, false},
	{0x000c, "TLS_DH_DSS_WITH_DES_CBC_SHA", 56, false},
	{0x000f, "TLS_DH_RSA_WITH_DES_CBC_SHA", 56, false},
	{0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA", 56, false},
	{0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA", 56, false},
	{0x001a, "TLS_DH_anon_WITH_DES_CBC_SHA", 56, false},

	// Triple DES: 112 bits effective, RFC 9325's floor.
	{0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0x000d, "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0x0010, "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0x001b, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0xc008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0xc012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 112, false},
	{0xc017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA", 112, false},

	// RC4, RC2, IDEA, SEED: 128-bit keys.
	{0x0004, "TLS_RSA_WITH_RC4_128_MD5", 128, false},
	{0x0005, "TLS_RSA_WITH_RC4_128_SHA", 128, false},
	{0x0018, "TLS_DH_anon_WITH_RC4_128_MD5", 128, false},
	{0xc007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 128, false},
	{0xc011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA", 128, false},
	{0xc016, "TLS_ECDH_anon_WITH_RC4_128_SHA", 128, false},
	{0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA", 128, false},
	{0x0096, "TLS_RSA_WITH_SEED_CBC_SHA", 128, false},
	{0x009a, "TLS_DHE_RSA_WITH_SEED_CBC_SHA", 128, false},

	// AES with RSA key exchange.
	{0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA", 128, false},
	{0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", 256, false},
	{0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", 128, false},
	{0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256", 256, false},
	{0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256", 128, false},
	{0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384", 256, false},
	{0xc09c, "TLS_RSA_WITH_AES_128_CCM", 128, false},
	{0xc09d, "TLS_RSA_WITH_AES_256_CCM", 256, false},

	// AES with (EC)DHE and anonymous key exchange.
	{0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", 128, false},
	{0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 128, false},
	{0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA", 128, false},
	{0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", 256, false},
	{0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 256, false},
	{0x003a, "TLS_DH_anon_WITH_AES_256_CBC_SHA", 256, false},
	{0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 128, false},
	{0x006b, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 256, false},
	{0x009e, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 128, false},
	{0x009f, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 256, false},
	{0xc09e, "TLS_DHE_RSA_WITH_AES_128_CCM", 128, false},
	{0xc09f, "TLS_DHE_RSA_WITH_AES_256_CCM", 256, false},
	{0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 128, false},
	{0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 256, false},
	{0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 128, false},
	{0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 256, false},
	{0xc018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", 128, false},
	{0xc019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA", 256, false},
	{0xc023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 128, false},
	{0xc024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 256, false},
	{0xc027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 128, false},
	{0xc028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 256, false},
	{0xc02b, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 128, false},
	{0xc02c, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 256, false},
	{0xc02f, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 128, false},
	{0xc030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 256, false},
	{0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", 128, false},
	{0x006a, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", 256, false},
	{0x006c, "TLS_DH_anon_WITH_AES_128_CBC_SHA256", 128, false},
	{0x006d, "TLS_DH_anon_WITH_AES_256_CBC_SHA256", 256, false},
	{0x00a2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", 128, false},
	{0x00a3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", 256, false},
	{0x00a6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256", 128, false},
	{0x00a7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384", 256, false},
	{0xc0a0, "TLS_RSA_WITH_AES_128_CCM_8", 128, false},
	{0xc0a1, "TLS_RSA_WITH_AES_256_CCM_8", 256, false},
	{0xc0a2, "TLS_DHE_RSA_WITH_AES_128_CCM_8", 128, false},
	{0xc0a3, "TLS_DHE_RSA_WITH_AES_256_CCM_8", 256, false},
	{0xc0ae, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", 128, false},
	{0xc0af, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", 256, false},
	{0xc0ac, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", 128, false},
	{0xc0ad, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", 256, false},

	// ChaCha20-Poly1305 (RFC 7905).
	{0xcca8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 256, false},
	{0xcca9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 256, false},
	{0xccaa, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 256, false},

	// CAMELLIA (RFC 5932) and ARIA (RFC 6209).
	{0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", 128, false},
	{0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", 128, false},
	{0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", 128, false},
	{0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", 256, false},
	{0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", 256, false},
	{0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", 256, false},
	{0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA", 128, false},
	{0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA", 256, false},
	{0x00bd, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256", 128, false},
	{0x00c3, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256", 256, false},
	{0x00ba, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256", 128, false},
	{0x00be, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", 128, false},
	{0x00c0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256", 256, false},
	{0x00c4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256", 256, false},
	{0xc072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256", 128, false},
	{0xc073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384", 256, false},
	{0xc076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", 128, false},
	{0xc077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384", 256, false},
	{0xc050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256", 128, false},
	{0xc051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384", 256, false},
	{0xc052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256", 128, false},
	{0xc053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384", 256, false},
	{0xc060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256", 128, false},
	{0xc061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384", 256, false},
	{0xc056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256", 128, false},
	{0xc057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384", 256, false},
	{0xc05c, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256", 128, false},
	{0xc05d, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384", 256, false},
}

var suiteByID = func() map[uint16]Suite {
	m := make(map[uint16]Suite, len(suites))
	for _, s := range suites {
		m[s.ID] = s
	}
	return m
}()

// CipherBits returns the effective symmetric strength of a suite. An ID
// not in the table counts as 0: when unsure, a requirement is not met.
func CipherBits(id uint16) int {
	return suiteByID[id].Bits
}

// LookupSuite returns the table row for id.
func LookupSuite(id uint16) (Suite, bool) {
	s, ok := suiteByID[id]
	return s, ok
}

// SuiteName names a suite, falling back to Go's name and then the hex ID.
func SuiteName(id uint16) string {
	if s, ok := suiteByID[id]; ok {
		return s.Name
	}
	return tls.CipherSuiteName(id)
}

// Suites returns a copy of the whole table, for deep probes that enumerate
// what a server accepts.
func Suites() []Suite {
	return append([]Suite(nil), suites...)
}
