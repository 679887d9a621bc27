package deep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// TLS record content types and handshake message types (RFC 8446 §5.1,
// §4; RFC 5246 §6.2.1, §7.4).
const (
	recordAlert     = 21
	recordHandshake = 22

	handshakeServerHello = 2

	extSupportedVersions = 43
)

// maxRecord bounds one record's payload: 2^14 plus the 2048 bytes of
// expansion RFC 5246 §6.2.3 allows. A ServerHello never needs more, and a
// peer announcing more is not speaking TLS to us.
const (
	maxRecord       = 1<<14 + 2048
	maxHandshakeMsg = 1 << 16
)

// helloRetryRandom is the ServerHello.random that marks a HelloRetryRequest
// (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// ServerHello is the part of the server's first flight a deep probe needs.
type ServerHello struct {
	// Version is the negotiated version: supported_versions when present
	// (RFC 8446 §4.2.1), else legacy_version.
	Version       uint16
	LegacyVersion uint16
	CipherSuite   uint16
	Compression   uint8
	// HelloRetry marks a HelloRetryRequest: the server accepted version
	// and suite but wants a key share for another group. For enumeration
	// that is as good as a ServerHello; we never send the second flight.
	HelloRetry bool
}

// Alert is a TLS alert the server sent instead of a ServerHello.
type Alert struct {
	Level       uint8
	Description uint8
}

func (a Alert) String() string {
	if n, ok := alertNames[a.Description]; ok {
		return n
	}
	return fmt.Sprintf("alert %d", a.Description)
}

// alertNames are RFC 8446 §6 and RFC 5246 §7.2 descriptions a server
// refusing a ClientHello sends.
var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
	40: "handshake_failure", 47: "illegal_parameter", 50: "decode_error",
	51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
	80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
	109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
	120: "no_application_protocol",
}

// ErrNotTLS means the peer answered the ClientHello with something that is
// not a TLS record, typically an SMTP reply or an SSLv2 hello.
var ErrNotTLS = errors.New("reply is not TLS")

// reply is what a server sent in answer to one ClientHello: a ServerHello
// or an alert.
type reply struct {
	hello *ServerHello
	alert *Alert
}

// readReply reads records from r until the first handshake message is
// complete or an alert arrives. It reads nothing past what it needs and is
// bounded: it never allocates more than maxHandshakeMsg plus one record.
func readReply(r io.Reader) (reply, error) {
	var hs []byte
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) && len(hs) == 0 {
				return reply{}, fmt.Errorf("%w: short record header", ErrNotTLS)
			}
			return reply{}, err
		}
		typ := hdr[0]
		if typ != recordAlert && typ != recordHandshake {
			return reply{}, fmt.Errorf("%w: starts %q", ErrNotTLS, printable(hdr[:]))
		}
		// Record versions are 0x03xx in every SSL/TLS version (RFC 8446
		// §5.1 legacy_record_version); anything else is not TLS.
		if hdr[1] != 3 {
			return reply{}, fmt.Errorf("%w: record version %#02x%02x", ErrNotTLS, hdr[1], hdr[2])
		}
		n := int(binary.BigEndian.Uint16(hdr[3:5]))
		if n == 0 || n > maxRecord {
			return reply{}, fmt.Errorf("%w: record length %d", ErrNotTLS, n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return reply{}, fmt.Errorf("reading record: %w", err)
		}
		if typ == recordAlert {
			if len(hs) > 0 {
				return reply{}, errors.New("alert inside a fragmented handshake message")
			}
			if n < 2 {
				return reply{}, errors.New("truncated alert")
			}
			return reply{alert: &Alert{Level: body[0], Description: body[1]}}, nil
		}
		hs = append(hs, body...)
		if len(hs) < 4 {
			continue
		}
		if hs[0] != handshakeServerHello {
			return reply{}, fmt.Errorf("first handshake message is type %d, not ServerHello", hs[0])
		}
		msgLen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if msgLen > maxHandshakeMsg {
			return reply{}, fmt.Errorf("ServerHello length %d too large", msgLen)
		}
		if len(hs) < 4+msgLen {
			continue
		}
		sh, err := ParseServerHello(hs[4 : 4+msgLen])
		if err != nil {
			return reply{}, err
		}
		return reply{hello: &sh}, nil
	}
}

// ParseServerHello parses the body of a ServerHello handshake message
// (after the 4-byte handshake header), RFC 5246 §7.4.1.3 and RFC 8446
// §4.1.3. It is strict: every length is checked, trailing bytes are an
// error, and it never panics.
func ParseServerHello(b []byte) (ServerHello, error) {
	var sh ServerHello
	p := parser{b: b}
	sh.LegacyVersion = p.u16()
	random := p.bytes(32)
	sid := p.u8()
	if sid > 32 {
		return sh, fmt.Errorf("ServerHello session_id length %d > 32", sid)
	}
	p.bytes(int(sid))
	sh.CipherSuite = p.u16()
	sh.Compression = p.u8()
	if p.err != nil {
		return sh, fmt.Errorf("ServerHello truncated")
	}
	sh.Version = sh.LegacyVersion
	sh.HelloRetry = bytes.Equal(random, helloRetryRandom)
	if p.empty() {
		// SSLv3 and early TLS servers may omit the extensions block.
		return sh, nil
	}
	ext := parser{b: p.vec16()}
	if p.err != nil || !p.empty() {
		return sh, fmt.Errorf("ServerHello extensions block malformed")
	}
	seen := map[uint16]bool{}
	for !ext.empty() && ext.err == nil {
		typ := ext.u16()
		data := ext.vec16()
		if ext.err != nil {
			break
		}
		// RFC 8446 §4.2: no more than one extension of a type.
		if seen[typ] {
			return sh, fmt.Errorf("ServerHello repeats extension %d", typ)
		}
		seen[typ] = true
		if typ == extSupportedVersions {
			if len(data) != 2 {
				return sh, fmt.Errorf("ServerHello supported_versions length %d", len(data))
			}
			sh.Version = binary.BigEndian.Uint16(data)
		}
	}
	if ext.err != nil {
		return sh, fmt.Errorf("ServerHello extension truncated")
	}
	return sh, nil
}

// parser reads big-endian fields and remembers the first overrun instead
// of panicking, so a parse is a straight line of reads and one check.
type parser struct {
	b   []byte
	err error
}

func (p *parser) bytes(n int) []byte {
	if p.err != nil || n < 0 || n > len(p.b) {
		p.err = io.ErrUnexpectedEOF
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) u8() uint8 {
	if b := p.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (p *parser) u16() uint16 {
	if b := p.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (p *parser) vec16() []byte { return p.bytes(int(p.u16())) }

func (p *parser) empty() bool { return len(p.b) == 0 }

// printable shows the first bytes of a non-TLS reply for the report, e.g.
// an SMTP "554 5.7.0" that a server sends on garbage.
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, c)
		} else {
			out = append(out, '.')
		}
	}
	return string(out)
}
