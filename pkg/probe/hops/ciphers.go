package hops

import (
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// openSSLNames maps OpenSSL's cipher names, as Postfix, Sendmail and
// Exim-with-OpenSSL write them into Received: headers, to IANA IDs. The
// first block is what Debian 12's OpenSSL 3.0 still knows ("openssl
// ciphers -V 'ALL:eNULL:@SECLEVEL=0'", limited to suites pkg/policy
// rates); the second is names older OpenSSL releases used for suites
// OpenSSL 3 dropped (RC4, DES, 3DES, export, SEED, IDEA), which old
// headers still carry. TestOpenSSLNamesMatchLocal checks the first block
// against the local openssl.
var openSSLNames = map[string]uint16{
	"NULL-MD5":                       0x0001,
	"NULL-SHA":                       0x0002,
	"AES128-SHA":                     0x002f,
	"DHE-DSS-AES128-SHA":             0x0032,
	"DHE-RSA-AES128-SHA":             0x0033,
	"ADH-AES128-SHA":                 0x0034,
	"AES256-SHA":                     0x0035,
	"DHE-DSS-AES256-SHA":             0x0038,
	"DHE-RSA-AES256-SHA":             0x0039,
	"ADH-AES256-SHA":                 0x003a,
	"NULL-SHA256":                    0x003b,
	"AES128-SHA256":                  0x003c,
	"AES256-SHA256":                  0x003d,
	"CAMELLIA128-SHA":                0x0041,
	"DHE-DSS-CAMELLIA128-SHA":        0x0044,
	"DHE-RSA-CAMELLIA128-SHA":        0x0045,
	"DHE-RSA-AES128-SHA256":          0x0067,
	"DHE-RSA-AES256-SHA256":          0x006b,
	"CAMELLIA256-SHA":                0x0084,
	"DHE-DSS-CAMELLIA256-SHA":        0x0087,
	"DHE-RSA-CAMELLIA256-SHA":        0x0088,
	"AES128-GCM-SHA256":              0x009c,
	"AES256-GCM-SHA384":              0x009d,
	"DHE-RSA-AES128-GCM-SHA256":      0x009e,
	"DHE-RSA-AES256-GCM-SHA384":      0x009f,
	"CAMELLIA128-SHA256":             0x00ba,
	"DHE-RSA-CAMELLIA128-SHA256":     0x00be,
	"CAMELLIA256-SHA256":             0x00c0,
	"DHE-RSA-CAMELLIA256-SHA256":     0x00c4,
	"ECDHE-ECDSA-NULL-SHA":           0xc006,
	"ECDHE-ECDSA-AES128-SHA":         0xc009,
	"ECDHE-ECDSA-AES256-SHA":         0xc00a,
	"ECDHE-RSA-NULL-SHA":             0xc010,
	"ECDHE-RSA-AES128-SHA":           0xc013,
	"ECDHE-RSA-AES256-SHA":           0xc014,
	"AECDH-NULL-SHA":                 0xc015,
	"AECDH-AES128-SHA":               0xc018,
	"AECDH-AES256-SHA":               0xc019,
	"ECDHE-ECDSA-AES128-SHA256":      0xc023,
	"ECDHE-ECDSA-AES256-SHA384":      0xc024,
	"ECDHE-RSA-AES128-SHA256":        0xc027,
	"ECDHE-RSA-AES256-SHA384":        0xc028,
	"ECDHE-ECDSA-AES128-GCM-SHA256":  0xc02b,
	"ECDHE-ECDSA-AES256-GCM-SHA384":  0xc02c,
	"ECDHE-RSA-AES128-GCM-SHA256":    0xc02f,
	"ECDHE-RSA-AES256-GCM-SHA384":    0xc030,
	"ARIA128-GCM-SHA256":             0xc050,
	"ARIA256-GCM-SHA384":             0xc051,
	"DHE-RSA-ARIA128-GCM-SHA256":     0xc052,
	"DHE-RSA-ARIA256-GCM-SHA384":     0xc053,
	"ECDHE-ARIA128-GCM-SHA256":       0xc060,
	"ECDHE-ARIA256-GCM-SHA384":       0xc061,
	"ECDHE-ECDSA-CAMELLIA128-SHA256": 0xc072,
	"ECDHE-ECDSA-CAMELLIA256-SHA384": 0xc073,
	"ECDHE-RSA-CAMELLIA128-SHA256":   0xc076,
	"ECDHE-RSA-CAMELLIA256-SHA384":   0xc077,
	"AES128-CCM":                     0xc09c,
	"AES256-CCM":                     0xc09d,
	"DHE-RSA-AES128-CCM":             0xc09e,
	"DHE-RSA-AES256-CCM":             0xc09f,
	"ECDHE-ECDSA-AES128-CCM":         0xc0ac,
	"ECDHE-ECDSA-AES256-CCM":         0xc0ad,
	"ECDHE-RSA-CHACHA20-POLY1305":    0xcca8,
	"ECDHE-ECDSA-CHACHA20-POLY1305":  0xcca9,
	"DHE-RSA-CHACHA20-POLY1305":      0xccaa,

	// Dropped from OpenSSL 3 (or 1.1), still in old headers.
	"EXP-RC4-MD5":                 0x0003,
	"RC4-MD5":                     0x0004,
	"RC4-SHA":                     0x0005,
	"EXP-RC2-CBC-MD5":             0x0006,
	"IDEA-CBC-SHA":                0x0007,
	"EXP-DES-CBC-SHA":             0x0008,
	"DES-CBC-SHA":                 0x0009,
	"DES-CBC3-SHA":                0x000a,
	"EXP-DH-DSS-DES-CBC-SHA":      0x000b,
	"DH-DSS-DES-CBC-SHA":          0x000c,
	"DH-DSS-DES-CBC3-SHA":         0x000d,
	"EXP-DH-RSA-DES-CBC-SHA":      0x000e,
	"DH-RSA-DES-CBC-SHA":          0x000f,
	"DH-RSA-DES-CBC3-SHA":         0x0010,
	"EXP-EDH-DSS-DES-CBC-SHA":     0x0011,
	"EDH-DSS-DES-CBC-SHA":         0x0012,
	"EDH-DSS-DES-CBC3-SHA":        0x0013,
	"DHE-DSS-DES-CBC3-SHA":        0x0013,
	"EXP-EDH-RSA-DES-CBC-SHA":     0x0014,
	"EDH-RSA-DES-CBC-SHA":         0x0015,
	"EDH-RSA-DES-CBC3-SHA":        0x0016,
	"DHE-RSA-DES-CBC3-SHA":        0x0016,
	"EXP-ADH-RC4-MD5":             0x0017,
	"ADH-RC4-MD5":                 0x0018,
	"EXP-ADH-DES-CBC-SHA":         0x0019,
	"ADH-DES-CBC-SHA":             0x001a,
	"ADH-DES-CBC3-SHA":            0x001b,
	"EXP1024-DES-CBC-SHA":         0x0062,
	"EXP1024-DHE-DSS-DES-CBC-SHA": 0x0063,
	"EXP1024-RC4-SHA":             0x0064,
	"SEED-SHA":                    0x0096,
	"DHE-RSA-SEED-SHA":            0x009a,
	"ECDH-ECDSA-NULL-SHA":         0xc001,
	"ECDHE-ECDSA-RC4-SHA":         0xc007,
	"ECDHE-ECDSA-DES-CBC3-SHA":    0xc008,
	"ECDH-RSA-NULL-SHA":           0xc00b,
	"ECDHE-RSA-RC4-SHA":           0xc011,
	"ECDHE-RSA-DES-CBC3-SHA":      0xc012,
	"AECDH-RC4-SHA":               0xc016,
	"AECDH-DES-CBC3-SHA":          0xc017,
}

// ianaNames maps the IANA names in pkg/policy's table (what Exchange,
// Gmail, Exim's tls_in_cipher_std and TLS 1.3 stacks write) to IDs.
var ianaNames = func() map[string]uint16 {
	m := map[string]uint16{}
	for _, s := range policy.Suites() {
		m[s.Name] = s.ID
		// Some stacks (Java, old Exchange) say SSL_ for TLS_.
		m["SSL_"+strings.TrimPrefix(s.Name, "TLS_")] = s.ID
	}
	return m
}()

// exchangeCurve is the key-exchange curve suffix Exchange appends to
// ECDHE suite names ("..._SHA384_P384"); it says nothing about the
// cipher.
var exchangeCurves = []string{"_P256", "_P384", "_P521"}

// SuiteByName resolves a cipher suite name as an MTA wrote it — IANA,
// OpenSSL, or Exchange's curve-suffixed IANA form — to its ID. ok is
// false for names it does not know (GnuTLS names, typos): the caller must
// then rely on bits written beside the name, or treat the strength as
// unknown.
func SuiteByName(name string) (id uint16, ok bool) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if id, ok := openSSLNames[n]; ok {
		return id, true
	}
	if id, ok := ianaNames[n]; ok {
		return id, true
	}
	for _, c := range exchangeCurves {
		if base, cut := strings.CutSuffix(n, c); cut {
			if id, ok := ianaNames[base]; ok {
				return id, true
			}
		}
	}
	return 0, false
}

// suiteWithBits returns a suite from pkg/policy's table whose strength is
// the largest not above bits. A hop that records only a bit count (Exim
// with GnuTLS, an unknown suite name) is judged through it: policy.Outcome
// carries a suite ID and policy.Evaluate reads the strength from the
// table, so the representative suite gives Evaluate exactly the bits the
// header claims, rounded down to a strength the table knows (fail closed:
// Postfix's old "(168/168 bits)" for 3DES counts as 128, never more).
func suiteWithBits(bits int) uint16 {
	best, bestBits := uint16(0x0000), 0 // TLS_NULL_WITH_NULL_NULL: 0 bits
	for _, s := range policy.Suites() {
		if s.Bits <= bits && s.Bits > bestBits {
			best, bestBits = s.ID, s.Bits
		}
	}
	return best
}
