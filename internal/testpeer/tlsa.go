package testpeer

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// TLSA usages and selectors and matching types (RFC 6698 §2.1, RFC 7218
// names), for TLSAData.
const (
	TLSADANETA uint8 = 2 // usage: trust anchor, the chain must contain it
	TLSADANEEE uint8 = 3 // usage: end entity, the server's own certificate
	TLSACert   uint8 = 0 // selector: the whole certificate
	TLSASPKI   uint8 = 1 // selector: its SubjectPublicKeyInfo
	TLSAFull   uint8 = 0 // matching type: the selected bytes themselves
	TLSASHA256 uint8 = 1 // matching type: their SHA-256
	TLSASHA512 uint8 = 2 // matching type: their SHA-512
)

// TLSAData is the rdata "usage selector mtype hex" of a TLSA record for
// cert, as a zone file or a DANE check wants it (RFC 6698 §2.1).
func TLSAData(usage, selector, mtype uint8, cert *x509.Certificate) string {
	sel := cert.Raw
	if selector == TLSASPKI {
		sel = cert.RawSubjectPublicKeyInfo
	}
	var data []byte
	switch mtype {
	case TLSASHA256:
		h := sha256.Sum256(sel)
		data = h[:]
	case TLSASHA512:
		h := sha512.Sum512(sel)
		data = h[:]
	default:
		data = sel
	}
	return fmt.Sprintf("%d %d %d %s", usage, selector, mtype, hex.EncodeToString(data))
}

// TLSA is the "3 1 1" (DANE-EE, SPKI, SHA-256) rdata for the leaf: the
// record RFC 7671 §5.1 recommends for a server's own key.
func (l *Leaf) TLSA() string { return TLSAData(TLSADANEEE, TLSASPKI, TLSASHA256, l.Cert) }

// TLSA is the "2 1 1" (DANE-TA, SPKI, SHA-256) rdata for the CA: every
// certificate it issues for the right name matches (RFC 7671 §5.2).
func (ca *CA) TLSA() string { return TLSAData(TLSADANETA, TLSASPKI, TLSASHA256, ca.Cert) }

// TLSARecord is a zone-file line "_port._tcp.host. 300 IN TLSA rdata", for
// Zone.Records.
func TLSARecord(host string, port int, rdata string) string {
	return fmt.Sprintf("_%d._tcp.%s. 300 IN TLSA %s", port, strings.TrimSuffix(host, "."), rdata)
}
