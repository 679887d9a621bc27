package testpeer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// KeyType selects the key algorithm of an issued certificate.
type KeyType int

const (
	// ECDSA is an ECDSA P-256 key: fast, and fine for TLS 1.0 to 1.3.
	ECDSA KeyType = iota
	// RSA is an RSA-2048 key, for clients that only offer RSA suites
	// (static RSA key exchange, many NULL suites, old TLS stacks).
	RSA
)

// rsaKey is one RSA-2048 key shared by every RSA certificate: generating
// one costs from 50 ms to several seconds on a busy machine, and tests only
// need distinct certificates, not distinct keys. It is a test key, public
// by design (like crypto/tls's own test keys); never trust it.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	b, _ := pem.Decode([]byte(testRSAKey))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		panic("testpeer: embedded RSA key: " + err.Error())
	}
	return k.(*rsa.PrivateKey)
})

const testRSAKey = `-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCpfoblPkbPVc+3
Y9ceT8o5Gw6h23kPsa/f0Mq8HFZb3i5rtXAPiWQL05+PhRPSh3XtY9b3CmiXo/zx
1XPPjAl+2O1iN7MKc5od8mKW1lVXE+fmvoi9LTZMb4xxKYf9JLNn+DYjJNkEQnTi
RPF6oXLuAhlRznB4SPKQN8uA8SBjPnSQy7OzEzrX6ivmiVE1TUKYk6seTYeneiAw
0taUv4UDC8Ho4p/CUr1dGvImYm0NxeBdSU7ALW7NwHtD+fOKWyjDSVJ8BIzubd1n
YQw8jmDmuulxHJwsf4cJ2Gi5ZZ2jJluFyb5zDWtRgVUYbNkBTxUw/zVgkoh3BNMg
3HAIheAHAgMBAAECggEAHLO6cDOdlhq39BxKH23vlsAIOEyMMaYrXEFlM3mw/hmf
zsmI0ni3onERwiIM+0fJJowTqP3wPE2e1e0JkYnrSbm+aTV5cjmlTZDwNQ7SoM5U
JPT6/t4bJdJ1++vGhY2je+XCdS0WOuxuEqsOIXAZoEhmtT26OgRQXy+znIA4tdVl
JkYUG6qSSVzT4goSsAm2D7GYiY12jnO/DI74bP9/i8HJXB8qXBVC/cbPajFwKj0+
k3hA6N4hqGPffbo3Fo/tlBGunWAf4g36SdP+8UDt9M5Atv5K1ynGaDdSikpQEw2g
Y+tcgRjeB7/Eyy2tyPS4/KYQ6qU/09He9V8og1bLEQKBgQDSipZCbRSMTGCv2Hrs
g+ChwaXCxubfwvsD0MZfT2WkX4pTcZ0cBLcgZUdVvOsvi69m68e1Vg870K+Fpvw4
bM0Cq0Idup868zAe5adtaQ0sPpdRsCd8B3uN7oTLiUsu74k8td8QOpTcFbqqdrQJ
/YZMrm5XZdtUacGpFYTfLYz85QKBgQDOFxydA8a4ydbG9Q1oYZpAwVioR8LsFMrU
NsIHQdi8Ej5fVf8aM9AisBeV7hUmcsjnUbNSzY9PBrgbc+RiYYizomcC87YeZiNN
HN5fLY/lCOyckbFP0GQI7loOLhmMJmczuLeB95MDwT9jSTmj0Xxum8byWrezLHTJ
dM189b8GewKBgBk846YyzTPENBLgMFwJsvOw8t3WWfaYuN5MOHtUWSrLCRnXlK23
IvyPJ23vp4GbjPsZaGckWc8hxOiQi8t3v1uCi/pkVJIMdMg/X0KORTX4issQAqur
efQZk3GSk6CctibA5mxbmVyIfkfQ0uQfr+mhPzjazN/hjYVnPvZBz5TBAoGBAI/O
us2py+o4FaIBb1it+rhC8n2Cjba1D4+joiL0RKt/w3w9AuSi0RLTc7HQT3vjzuLz
NMGL5PtNAf1OEkjALGbE5UK/Ew8FUI7HnTgnD+jPIGRkmajLDnLY94g7jOIqDgue
UpbjTffpyjSa7Rit3jlEhD+rI9JoLBpDYfxXcvOvAoGBAJOr9yqzwH+O8YlETWuT
BU6IR7o6VCuO2OVaM+xYg4yKgib87lJ3pg06luM7x9RwU7RJKcW7FON6zrYoW7BT
I8un0Bp8452z5d/v5SO3JnSsq44OLMz16K0tkHhF3r0myvqQ3MsrimCF0jYIlZCH
mwdxiYGgDJrnp+57n73GeyBf
-----END PRIVATE KEY-----
`

func newKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	if kt == RSA {
		return rsaKey()
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpeer: ecdsa.GenerateKey: %v", err)
	}
	return k
}

// CA is a throw-away certificate authority for one test.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	file    string
}

// Leaf is an issued certificate with its key, in memory and as PEM files in
// a t.TempDir().
type Leaf struct {
	Cert      *x509.Certificate
	TLS       tls.Certificate // for crypto/tls servers
	CertPEM   []byte
	KeyPEM    []byte
	CertFile  string // certificate only
	KeyFile   string // PKCS#8 private key
	ChainFile string // key then certificate, as Postfix's smtpd_tls_chain_files wants
}

// LeafOptions tune an issued certificate. Zero values mean: ECDSA key,
// valid from one hour ago for 90 days (well clear of "expires within 30
// days" warnings).
type LeafOptions struct {
	KeyType   KeyType
	NotBefore time.Time
	NotAfter  time.Time
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testpeer: serial: %v", err)
	}
	return n
}

// NewCA creates an ECDSA P-256 CA valid for a year; its certificate is
// written to CertFile() for --ca-file style options.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t, ECDSA)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "smgctl testpeer CA", Organization: []string{"smgctl tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testpeer: create CA: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.file = filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca.file, ca.CertPEM, 0o644)
	return ca
}

// CertFile is the path of the CA certificate (PEM).
func (ca *CA) CertFile() string { return ca.file }

// Pool returns a pool holding only this CA, for tls.Config.RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue issues an ECDSA P-256 leaf for names (DNS names or IP addresses;
// the first is also the CommonName).
func (ca *CA) Issue(t testing.TB, names ...string) *Leaf {
	t.Helper()
	return ca.IssueOpts(t, LeafOptions{}, names...)
}

// IssueRSA is Issue with an RSA-2048 key.
func (ca *CA) IssueRSA(t testing.TB, names ...string) *Leaf {
	t.Helper()
	return ca.IssueOpts(t, LeafOptions{KeyType: RSA}, names...)
}

// IssueOpts issues a leaf with explicit key type and validity.
func (ca *CA) IssueOpts(t testing.TB, o LeafOptions, names ...string) *Leaf {
	t.Helper()
	return issue(t, ca, o, names)
}

// SelfSigned creates a self-signed ECDSA leaf for names.
func SelfSigned(t testing.TB, names ...string) *Leaf {
	t.Helper()
	return issue(t, nil, LeafOptions{}, names)
}

// SelfSignedOpts creates a self-signed leaf with explicit key type and validity.
func SelfSignedOpts(t testing.TB, o LeafOptions, names ...string) *Leaf {
	t.Helper()
	return issue(t, nil, o, names)
}

func issue(t testing.TB, ca *CA, o LeafOptions, names []string) *Leaf {
	t.Helper()
	if len(names) == 0 {
		names = []string{"testpeer.test"}
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.AddDate(0, 0, 90)
	}
	key := newKey(t, o.KeyType)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"smgctl tests"}},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if o.KeyType == RSA {
		// Static RSA key exchange (TLS 1.0 and many NULL suites) encrypts
		// the premaster secret to the certificate key.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatalf("testpeer: issue certificate for %v: %v", names, err)
	}
	cert, _ := x509.ParseCertificate(der)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testpeer: marshal key: %v", err)
	}
	l := &Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
	l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatalf("testpeer: key pair: %v", err)
	}
	dir := t.TempDir()
	l.CertFile = filepath.Join(dir, "cert.pem")
	l.KeyFile = filepath.Join(dir, "key.pem")
	l.ChainFile = filepath.Join(dir, "chain.pem")
	writeFile(t, l.CertFile, l.CertPEM, 0o644)
	writeFile(t, l.KeyFile, l.KeyPEM, 0o600)
	writeFile(t, l.ChainFile, append(append([]byte{}, l.KeyPEM...), l.CertPEM...), 0o600)
	return l
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("testpeer: %v", err)
	}
}
