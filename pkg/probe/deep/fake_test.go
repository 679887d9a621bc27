package deep

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
)

// clientHello is a test-side parse of what buildClientHello (or another
// client) sent, to check the builder and to script fake servers.
type clientHello struct {
	recordVersion uint16
	legacyVersion uint16
	sessionID     []byte
	suites        []uint16
	extensions    map[uint16][]byte
	extOrder      []uint16
	versions      []uint16 // supported_versions
	serverName    string
	keyShares     map[uint16]int // group -> key length
	handshakeLen  int
}

func parseClientHello(rec []byte) (clientHello, error) {
	var ch clientHello
	p := parser{b: rec}
	if p.u8() != recordHandshake {
		return ch, errors.New("not a handshake record")
	}
	ch.recordVersion = p.u16()
	body := parser{b: p.vec16()}
	if p.err != nil || !p.empty() {
		return ch, errors.New("bad record length")
	}
	if body.u8() != 1 {
		return ch, errors.New("not a ClientHello")
	}
	l := body.bytes(3)
	if body.err != nil {
		return ch, body.err
	}
	ch.handshakeLen = 4 + (int(l[0])<<16 | int(l[1])<<8 | int(l[2]))
	if ch.handshakeLen-4 != len(body.b) {
		return ch, errors.New("bad handshake length")
	}
	ch.legacyVersion = body.u16()
	body.bytes(32)
	ch.sessionID = body.bytes(int(body.u8()))
	cs := parser{b: body.vec16()}
	for !cs.empty() && cs.err == nil {
		ch.suites = append(ch.suites, cs.u16())
	}
	body.bytes(int(body.u8())) // compression
	if body.err != nil || cs.err != nil {
		return ch, errors.New("truncated ClientHello")
	}
	ch.extensions = map[uint16][]byte{}
	if body.empty() {
		return ch, nil
	}
	ext := parser{b: body.vec16()}
	for !ext.empty() && ext.err == nil {
		t := ext.u16()
		d := ext.vec16()
		ch.extensions[t] = d
		ch.extOrder = append(ch.extOrder, t)
	}
	if ext.err != nil || !body.empty() {
		return ch, errors.New("bad extensions")
	}
	if d, ok := ch.extensions[extSupportedVersions]; ok && len(d) > 0 {
		sv := parser{b: d[1:]}
		for !sv.empty() && sv.err == nil {
			ch.versions = append(ch.versions, sv.u16())
		}
	}
	if d, ok := ch.extensions[extServerName]; ok {
		sn := parser{b: d}
		list := parser{b: sn.vec16()}
		list.u8()
		ch.serverName = string(list.vec16())
	}
	if d, ok := ch.extensions[extKeyShare]; ok {
		ch.keyShares = map[uint16]int{}
		ks := parser{b: d}
		list := parser{b: ks.vec16()}
		for !list.empty() && list.err == nil {
			g := list.u16()
			ch.keyShares[g] = len(list.vec16())
		}
	}
	return ch, nil
}

// maxOffered is the highest version a hello offers.
func (ch clientHello) maxOffered() uint16 {
	if len(ch.versions) > 0 {
		return slices.Max(ch.versions)
	}
	return ch.legacyVersion
}

// serverHelloRecord builds a ServerHello record for fake servers.
func serverHelloRecord(version, suite uint16, hrr bool) []byte {
	var b []byte
	legacy := version
	if version == VersionTLS13 {
		legacy = VersionTLS12
	}
	b = binary.BigEndian.AppendUint16(b, legacy)
	if hrr {
		b = append(b, helloRetryRandom...)
	} else {
		b = append(b, make([]byte, 32)...)
	}
	b = append(b, 0) // session id
	b = binary.BigEndian.AppendUint16(b, suite)
	b = append(b, 0) // compression
	if version == VersionTLS13 {
		b = append(b, 0, 6, 0, 43, 0, 2, 3, 4)
	}
	msg := append([]byte{2, 0, byte(len(b) >> 8), byte(len(b))}, b...)
	return append([]byte{22, 3, 3, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func alertRecord(desc uint8) []byte { return []byte{21, 3, 3, 0, 2, 2, desc} }

// fakeServer answers each connection's first record with respond.
type fakeServer struct {
	l       net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	hellos  []clientHello
	respond func(clientHello) []byte
}

func startFake(t *testing.T, respond func(clientHello) []byte) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{l: l, respond: respond}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				var hdr [5]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
				if _, err := io.ReadFull(c, body); err != nil {
					return
				}
				ch, err := parseClientHello(append(hdr[:], body...))
				if err != nil {
					t.Errorf("fake server: %v", err)
					return
				}
				s.mu.Lock()
				s.hellos = append(s.hellos, ch)
				s.mu.Unlock()
				if out := s.respond(ch); out != nil {
					c.Write(out)
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

func (s *fakeServer) dial() Dial { return tcpDial(s.l.Addr().String()) }

// policyServer is a scripted server: it accepts the versions and suites
// in accept and picks by its own order (serverOrder) or the client's.
func policyServer(accept map[uint16][]uint16, serverOrder bool) func(clientHello) []byte {
	return func(ch clientHello) []byte {
		v := ch.maxOffered()
		if ch.versions != nil && !slices.Contains(ch.versions, v) {
			return alertRecord(70)
		}
		// Highest version we support that is offered.
		var chosen uint16
		for cand := v; cand >= VersionSSL30; cand-- {
			if _, ok := accept[cand]; ok && (ch.versions == nil || slices.Contains(ch.versions, cand)) {
				chosen = cand
				break
			}
		}
		if chosen == 0 {
			return alertRecord(70)
		}
		mine := accept[chosen]
		if serverOrder {
			for _, s := range mine {
				if slices.Contains(ch.suites, s) {
					return serverHelloRecord(chosen, s, false)
				}
			}
		} else {
			for _, s := range ch.suites {
				if slices.Contains(mine, s) {
					return serverHelloRecord(chosen, s, false)
				}
			}
		}
		return alertRecord(40)
	}
}
