package deep

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// sessionHello runs the relay's real STARTTLS (smtpclient.Session) against
// a loopback server that answers 220 to STARTTLS and keeps the first TLS
// record it then receives: the ClientHello the relay sends on the wire.
func sessionHello(t *testing.T, serverName string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		line := func() string { l, _ := r.ReadString('\n'); return strings.ToUpper(l) }
		io.WriteString(c, "220 mx.example ESMTP\r\n")
		if !strings.HasPrefix(line(), "EHLO ") {
			return
		}
		io.WriteString(c, "250-mx.example\r\n250 STARTTLS\r\n")
		if !strings.HasPrefix(line(), "STARTTLS") {
			return
		}
		io.WriteString(c, "220 go ahead\r\n")
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
		copy(rec, hdr[:])
		if _, err := io.ReadFull(r, rec[5:]); err != nil {
			return
		}
		got <- rec
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := smtpclient.Dial(ctx, ln.Addr().String(), smtpclient.Options{HeloName: "relay.example", ServerName: serverName})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	s.StartTLS(ctx) // fails: the server hangs up after the hello
	rec, ok := <-got
	if !ok {
		t.Fatal("server did not receive a ClientHello")
	}
	return rec
}

// The deep probe's "what smgctl's relay would negotiate" must be the hello
// the relay really sends: same suites in the same order, same versions,
// curves, extensions and SNI. Key shares and randoms differ per handshake;
// everything the server chooses from does not.
func TestRelayOfferMatchesSession(t *testing.T) {
	for _, name := range []string{"mx.example", "192.0.2.1", ""} {
		t.Run("server name "+name, func(t *testing.T) {
			relay, err := parseClientHello(sessionHello(t, name))
			if err != nil {
				t.Fatal(err)
			}
			rec, err := goClientHello(smtpclient.RelayOffer(), name)
			if err != nil {
				t.Fatal(err)
			}
			sim, err := parseClientHello(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(relay.suites, sim.suites) {
				t.Errorf("suites: relay %s, deep %s", hexes(relay.suites), hexes(sim.suites))
			}
			if !slices.Equal(relay.versions, sim.versions) {
				t.Errorf("versions: relay %s, deep %s", hexes(relay.versions), hexes(sim.versions))
			}
			if relay.serverName != sim.serverName {
				t.Errorf("SNI: relay %q, deep %q", relay.serverName, sim.serverName)
			}
			rt, st := slices.Sorted(maps.Keys(relay.extensions)), slices.Sorted(maps.Keys(sim.extensions))
			if !slices.Equal(rt, st) {
				t.Errorf("extensions: relay %v, deep %v", rt, st)
			}
			for _, ext := range []uint16{extSupportedGroups, extSignatureAlgs, extECPointFormats} {
				if string(relay.extensions[ext]) != string(sim.extensions[ext]) {
					t.Errorf("extension %d: relay %x, deep %x", ext, relay.extensions[ext], sim.extensions[ext])
				}
			}
			if !slices.Equal(slices.Sorted(maps.Keys(relay.keyShares)), slices.Sorted(maps.Keys(sim.keyShares))) {
				t.Errorf("key share groups: relay %v, deep %v", relay.keyShares, sim.keyShares)
			}
		})
	}
}
