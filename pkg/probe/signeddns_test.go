package probe

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

// TestProbeSignedDNS judges DANE through a real validating resolver
// (unbound over zones signed by ldns-signzone, served by nsd) against a
// real Postfix MX, as the relay judges it: TLSA 3 1 1 matching → deliver,
// DANE-authenticated; not matching → defer naming DANE; a bogus TLSA
// signature (SERVFAIL) → defer naming DANE; an MX whose address is in an
// unsigned zone, or a domain in an unsigned zone → DANE does not apply.
func TestProbeSignedDNS(t *testing.T) {
	testpeer.RequirePostfix(t)
	testpeer.RequireSignedDNS(t)
	ca := testpeer.NewCA(t)
	pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca})
	ip := pf.IP.String()
	signed := []string{
		"ee MX 10 mx.dane.test.", "mx A " + ip,
		"mm MX 10 mm-mx.dane.test.", "mm-mx A " + ip, testpeer.TLSARecord("mm-mx.dane.test", 25, "3 1 1 "+strings.Repeat("00", 32)),
		"sf MX 10 sf-mx.dane.test.", "sf-mx A " + ip, testpeer.TLSARecord("sf-mx.dane.test", 25, pf.Certs[0].TLSA()),
		// Signed MX, address in an unsigned child zone: no TLSA asked.
		"ins MX 10 mx.plain.dane.test.",
	}
	for _, leaf := range pf.Certs {
		signed = append(signed, testpeer.TLSARecord("mx.dane.test", 25, leaf.TLSA()))
	}
	s := testpeer.StartSignedDNS(t,
		testpeer.Zone{Name: "dane.test", Records: signed, Bogus: []string{"_25._tcp.sf-mx"}},
		testpeer.Zone{Name: "plain.dane.test", Unsigned: true, Records: []string{
			"mx A " + ip, testpeer.TLSARecord("mx.plain.dane.test", 25, "3 1 1 "+strings.Repeat("00", 32))}},
		testpeer.Zone{Name: "plain.test", Unsigned: true, Records: []string{
			"@ MX 10 mx.plain.test.", "mx A " + ip}},
	)
	res, err := mx.NewResolver(s.Addr(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Resolver: res, Timeout: 5 * time.Second, RootCAs: ca.Pool(), HeloName: "probe.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		target, verdict, state, auth, diagnostic, reason string
	}{
		{target: "ee.dane.test", verdict: VerdictDeliver, state: "usable", auth: "dane"},
		{target: "mm.dane.test", verdict: VerdictDefer, state: "usable", auth: "none",
			diagnostic: "451 4.7.5 DANE: certificate of mm-mx.dane.test matches no usable TLSA record"},
		{target: "sf.dane.test", verdict: VerdictDefer, state: "failed", auth: "none",
			diagnostic: "451 4.7.5 DANE: TLSA lookup for sf-mx.dane.test failed: SERVFAIL"},
		{target: "ins.dane.test", verdict: VerdictDeliver, state: "none", auth: "none",
			reason: "address records of mx.plain.dane.test not DNSSEC-authenticated (RFC 7672 §2.2.2)"},
		{target: "plain.test", verdict: VerdictDeliver, state: "none", auth: "none",
			reason: "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)"},
	} {
		t.Run(c.target, func(t *testing.T) {
			r := p.ProbeTarget(context.Background(), c.target)
			js, _ := json.MarshalIndent(r, "", "  ")
			if r.Verdict != c.verdict || len(r.Hosts) != 1 || len(r.Hosts[0].Attempts) == 0 {
				t.Fatalf("verdict %q, want %q\n%s\n%s", r.Verdict, c.verdict, js, s.Logs())
			}
			h, at := r.Hosts[0], r.Hosts[0].Attempts[0]
			if h.TLSA.State != c.state || h.TLSA.Reason != c.reason && c.reason != "" || !strings.HasPrefix(r.Diagnostic, c.diagnostic) {
				t.Fatalf("state %q reason %q diagnostic %q\n%s", h.TLSA.State, h.TLSA.Reason, r.Diagnostic, js)
			}
			// The certificate names the Postfix host, not these MX names:
			// only DANE authenticates it.
			if at.Auth != c.auth || (at.Auth == "dane") != (at.TLSA != "") {
				t.Fatalf("auth %q tlsa %q, want %q\n%s", at.Auth, at.TLSA, c.auth, js)
			}
		})
	}
}
