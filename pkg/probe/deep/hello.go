package deep

import (
	"crypto/ecdh"
	"encoding/binary"
	"io"
	"net"
)

// Protocol versions as they appear on the wire.
const (
	VersionSSL30 uint16 = 0x0300
	VersionTLS10 uint16 = 0x0301
	VersionTLS11 uint16 = 0x0302
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// AllVersions is every version a deep probe tries, oldest first.
var allVersions = []uint16{VersionSSL30, VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13}

// Extension and group code points (IANA TLS registries).
const (
	extServerName       = 0
	extSupportedGroups  = 10
	extECPointFormats   = 11
	extSignatureAlgs    = 13
	extPadding          = 21
	extExtendedMS       = 23
	extKeyShare         = 51
	extRenegotiationInf = 0xff01

	groupSecp256r1 = 23
	groupSecp384r1 = 24
	groupSecp521r1 = 25
	groupX25519    = 29
	groupFFDHE2048 = 256
)

// supportedGroups are offered in this order: x25519 and P-256 cover every
// modern server, P-384/P-521 the conservative ones, ffdhe2048 (RFC 7919)
// the DHE-only ones.
var supportedGroups = []uint16{groupX25519, groupSecp256r1, groupSecp384r1, groupSecp521r1, groupFFDHE2048}

// signatureAlgorithms is deliberately wide (RFC 8446 §4.2.3, RFC 5246
// §7.4.1.4.1): a server whose only certificate is signed with SHA-1, or
// that only has a DSA key, must still be able to answer, because we are
// measuring what it accepts, not judging its certificate.
var signatureAlgorithms = []uint16{
	0x0403, 0x0503, 0x0603, // ecdsa_secp256r1_sha256, secp384r1_sha384, secp521r1_sha512
	0x0807, 0x0808, // ed25519, ed448
	0x0804, 0x0805, 0x0806, // rsa_pss_rsae_sha256/384/512
	0x0809, 0x080a, 0x080b, // rsa_pss_pss_sha256/384/512
	0x0401, 0x0501, 0x0601, // rsa_pkcs1_sha256/384/512
	0x0303, 0x0301, 0x0302, // sha224 with ecdsa, rsa, dsa
	0x0203, 0x0201, 0x0202, // ecdsa_sha1, rsa_pkcs1_sha1, dsa_sha1
	0x0402, 0x0502, 0x0602, // dsa with sha256/384/512
}

// helloSpec says what one ClientHello offers.
type helloSpec struct {
	// legacyVersion is ClientHello.client_version: the highest version
	// offered for SSLv3..TLS 1.2, and 0x0303 when offering TLS 1.3
	// (RFC 8446 §4.1.2).
	legacyVersion uint16
	// versions fills supported_versions (RFC 8446 §4.2.1); nil for a
	// legacy-only hello. When it contains TLS 1.3 a key_share is sent.
	versions   []uint16
	suites     []uint16
	serverName string
}

// buildClientHello returns one complete TLS record holding a ClientHello
// for spec. rand supplies the random, session ID and key shares.
func buildClientHello(spec helloSpec, rand io.Reader) ([]byte, error) {
	var random [32]byte
	if _, err := io.ReadFull(rand, random[:]); err != nil {
		return nil, err
	}
	var body []byte
	body = binary.BigEndian.AppendUint16(body, spec.legacyVersion)
	body = append(body, random[:]...)
	offers13 := false
	for _, v := range spec.versions {
		if v == VersionTLS13 {
			offers13 = true
		}
	}
	if offers13 {
		// A 32-byte legacy_session_id keeps middleboxes that only know
		// TLS 1.2 resumption quiet (RFC 8446 §D.4).
		var sid [32]byte
		if _, err := io.ReadFull(rand, sid[:]); err != nil {
			return nil, err
		}
		body = append(body, 32)
		body = append(body, sid[:]...)
	} else {
		body = append(body, 0)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(2*len(spec.suites)))
	for _, s := range spec.suites {
		body = binary.BigEndian.AppendUint16(body, s)
	}
	body = append(body, 1, 0) // compression_methods: null only

	// SSLv3 predates extensions (RFC 6101); some SSLv3-only stacks
	// reject a hello that carries them, so send none.
	if spec.legacyVersion > VersionSSL30 || offers13 {
		ext, err := extensions(spec, offers13, rand)
		if err != nil {
			return nil, err
		}
		// RFC 7685: hellos of 256..511 bytes hang some F5 load
		// balancers; pad them to 512 as OpenSSL and browsers do.
		if l := 4 + len(body) + 2 + len(ext); l >= 256 && l < 512 {
			pad := 512 - l - 4
			if pad < 1 {
				pad = 1
			}
			ext = appendExt(ext, extPadding, make([]byte, pad))
		}
		body = binary.BigEndian.AppendUint16(body, uint16(len(ext)))
		body = append(body, ext...)
	}

	msg := make([]byte, 0, 4+len(body))
	msg = append(msg, 1, byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	msg = append(msg, body...)

	// The record layer says TLS 1.0 for any hello of TLS 1.0 or later:
	// old servers reject a higher record version (RFC 8446 §5.1, RFC 5246
	// appendix E.1).
	recVer := VersionTLS10
	if spec.legacyVersion == VersionSSL30 && !offers13 {
		recVer = VersionSSL30
	}
	rec := make([]byte, 0, 5+len(msg))
	rec = append(rec, recordHandshake)
	rec = binary.BigEndian.AppendUint16(rec, recVer)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(msg)))
	return append(rec, msg...), nil
}

func extensions(spec helloSpec, offers13 bool, rand io.Reader) ([]byte, error) {
	var ext []byte
	// RFC 6066 §3: SNI carries host names only, never an IP literal.
	if spec.serverName != "" && net.ParseIP(spec.serverName) == nil {
		name := []byte(spec.serverName)
		var sni []byte
		sni = binary.BigEndian.AppendUint16(sni, uint16(3+len(name)))
		sni = append(sni, 0) // host_name
		sni = binary.BigEndian.AppendUint16(sni, uint16(len(name)))
		sni = append(sni, name...)
		ext = appendExt(ext, extServerName, sni)
	}
	ext = appendExt(ext, extSupportedGroups, vec16of(supportedGroups))
	ext = appendExt(ext, extECPointFormats, []byte{1, 0}) // uncompressed (RFC 8422 §5.1.2)
	ext = appendExt(ext, extSignatureAlgs, vec16of(signatureAlgorithms))
	ext = appendExt(ext, extExtendedMS, nil)
	// renegotiation_info, empty: RFC 5746 §3.4 for an initial handshake.
	ext = appendExt(ext, extRenegotiationInf, []byte{0})
	if len(spec.versions) > 0 {
		sv := []byte{byte(2 * len(spec.versions))}
		for _, v := range spec.versions {
			sv = binary.BigEndian.AppendUint16(sv, v)
		}
		ext = appendExt(ext, extSupportedVersions, sv)
	}
	if offers13 {
		ks, err := keyShares(rand)
		if err != nil {
			return nil, err
		}
		ext = appendExt(ext, extKeyShare, ks)
		// psk_key_exchange_modes psk_dhe_ke: some servers insist on it
		// being present with TLS 1.3 even without a PSK.
		ext = appendExt(ext, 45, []byte{1, 1})
	}
	return ext, nil
}

// keyShares builds real x25519 and P-256 shares (RFC 8446 §4.2.8), so a
// server that would accept either answers with a ServerHello instead of a
// HelloRetryRequest. The private keys are thrown away: we never finish.
func keyShares(rand io.Reader) ([]byte, error) {
	var list []byte
	for _, g := range []struct {
		id    uint16
		curve ecdh.Curve
	}{{groupX25519, ecdh.X25519()}, {groupSecp256r1, ecdh.P256()}} {
		k, err := g.curve.GenerateKey(rand)
		if err != nil {
			return nil, err
		}
		pub := k.PublicKey().Bytes()
		list = binary.BigEndian.AppendUint16(list, g.id)
		list = binary.BigEndian.AppendUint16(list, uint16(len(pub)))
		list = append(list, pub...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...), nil
}

func appendExt(b []byte, typ uint16, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func vec16of(vals []uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(2*len(vals)))
	for _, v := range vals {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}
