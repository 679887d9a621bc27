package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// TestProbeRealPeers probes domains served by an in-process DNS zone whose
// MX hosts are real Postfix instances on loopback addresses.
func TestProbeRealPeers(t *testing.T) {
	testpeer.RequirePostfix(t)
	ca := testpeer.NewCA(t)
	var modern, plain *testpeer.Postfix
	done := make(chan bool, 2)
	go func() {
		modern = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca})
		done <- true
	}()
	go func() { plain = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone}); done <- true }()
	<-done
	<-done
	if modern == nil || plain == nil {
		t.Fatal("a Postfix instance did not start")
	}
	down := testpeer.FreeLoopbackIP(t) // nothing listens here

	d := testpeer.StartDNS(t)
	addMX := func(domain string, pref uint16, pf *testpeer.Postfix) {
		d.AddMX(domain, pref, pf.Hostname)
	}
	for _, pf := range []*testpeer.Postfix{modern, plain} {
		d.AddA(pf.Hostname, pf.IP.String())
	}
	d.AddA("down.testpeer.test", down.String())

	addMX("good.test", 10, modern)
	addMX("plain.test", 10, plain)
	// The preferred MX is down; the backup is good.
	d.AddMX("backup.test", 10, "down.testpeer.test")
	addMX("backup.test", 20, modern)
	// The preferred MX is plain; the backup is good.
	addMX("weakfirst.test", 10, plain)
	addMX("weakfirst.test", 20, modern)
	d.NullMX("null.test")
	d.AddA("implicit.test", modern.IP.String())
	d.AddMX("noaddr.test", 10, "ghost.noaddr.test")
	d.AddTXT("ghost.noaddr.test", "no address here")
	// Every MX host's address lookup fails permanently (NXDOMAIN, no
	// address): the relay returns the mail (mx.Result.NoAddress); one
	// temporary failure among them and it waits.
	d.AddMX("nxmx.test", 10, "ghost.nxmx.test")
	d.AddMX("nxmx.test", 20, "ghost.noaddr.test")
	d.AddMX("mixed.test", 10, "ghost.nxmx.test")
	d.AddMX("mixed.test", 20, "sf.mixed.test")
	d.AddA("sf.mixed.test", modern.IP.String())
	d.ServFail("sf.mixed.test")
	d.AddMX("servfail.test", 10, modern.Hostname)
	d.ServFail("servfail.test")
	addMX("users.test", 10, modern)
	addMX("routed.test", 10, plain)
	// MTA-STS in enforce mode lists only the good host; the plain one
	// is outside its patterns.
	addMX("sts.test", 10, modern)
	addMX("sts.test", 20, plain)
	d.AddTXT("_mta-sts.sts.test", "v=STSv1; id=20240101T000000;")
	d.AddTXT("_smtp._tls.sts.test", "v=TLSRPTv1; rua=mailto:tlsrpt@sts.test")
	stsPolicy := "version: STSv1\r\nmode: enforce\r\nmx: " + modern.Hostname + "\r\nmax_age: 86400\r\n"
	stsSrv := testpeer.ServeMTASTS(t, ca, d, testpeer.MTASTSHandler(stsPolicy), "sts.test")

	// Go negotiates TLS_AES_128_GCM_SHA256 with Postfix: 128 bits. The
	// domain entry asks 128 (met), the address entry 256 (not met).
	pf, err := policy.Parse("policy.conf", []byte("users.test bits=128\nboss@users.test bits=256 verify=cert\nrouted.test on-fail=route:gw.example:2525\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := mx.NewResolver(d.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stsFetch, err := mtasts.NewFetcher(mtasts.FetcherConfig{Resolver: res, Roots: ca.Pool(), Port: stsSrv.Port})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{
		Resolver: res, Policy: pf.Compile(), Timeout: 5 * time.Second, Concurrency: 8,
		HeloName: "probe.test", RootCAs: ca.Pool(), STSFetcher: stsFetch,
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		target     string
		pass       bool
		verdict    string
		via        string // host the relay would use
		diagnostic string
		summaryHas string
		riskHas    string
		reqSource  string
		reqBits    int
		check      func(t *testing.T, r *Report)
	}{
		{target: "good.test", pass: true, verdict: VerdictDeliver, via: modern.Hostname, summaryHas: "TLSv1.3", reqSource: "default", reqBits: 112,
			riskHas: "no MTA-STS (enforce) and no DANE", check: func(t *testing.T, r *Report) {
				at := r.Hosts[0].Attempts[0]
				if !at.TLS || at.Version != "TLSv1.3" || at.Bits < 128 || at.Suite == "" || !at.Verified || !at.STARTTLS {
					t.Fatalf("attempt %+v", at)
				}
				if at.Cert == nil || !at.Cert.ChainVerified || !at.Cert.NameMatched || at.Cert.NotAfter.Before(time.Now()) {
					t.Fatalf("cert %+v", at.Cert)
				}
				for _, step := range []string{"connect", "banner", "ehlo", "starttls", "handshake", "ehlo_tls", "quit"} {
					if _, ok := at.Timings[step]; !ok {
						t.Fatalf("no timing for %s: %v", step, at.Timings)
					}
				}
			}},
		{target: "plain.test", verdict: VerdictBounce, diagnostic: "503 5.7.0 encryption too weak 0 less than 112", summaryHas: "bounce: 503 5.7.0 encryption too weak 0 less than 112"},
		{target: "backup.test", pass: true, verdict: VerdictDeliver, via: modern.Hostname, summaryHas: "not the preferred MX down.testpeer.test", riskHas: "down.testpeer.test [" + down.String() + ":25] unreachable"},
		{target: "weakfirst.test", pass: true, verdict: VerdictDeliver, via: modern.Hostname, summaryHas: "not the preferred MX " + plain.Hostname,
			riskHas: "MX " + plain.Hostname + " (preference 10) [" + plain.Addr() + "] offers no TLS: 503 5.7.0 encryption too weak 0 less than 112"},
		{target: "null.test", verdict: VerdictNoMail, summaryHas: "null MX", check: func(t *testing.T, r *Report) {
			if !r.MX.NullMX || len(r.Hosts) != 0 {
				t.Fatalf("%+v", r.MX)
			}
		}},
		{target: "implicit.test", pass: true, verdict: VerdictDeliver, via: "implicit.test", check: func(t *testing.T, r *Report) {
			if !r.MX.Implicit {
				t.Fatal("not implicit")
			}
			// The certificate names the Postfix host, not implicit.test.
			if at := r.Hosts[0].Attempts[0]; at.Verified || !strings.Contains(at.Cert.VerifyError, "does not name implicit.test") {
				t.Fatalf("%+v", at.Cert)
			}
		}},
		{target: "noaddr.test", verdict: VerdictNoMail, summaryHas: "bounce: no MX host has an address (A/AAAA lookup of ghost.noaddr.test: no A or AAAA record (permanent)); the relay returns such mail with 550 5.4.4"},
		{target: "nxmx.test", verdict: VerdictNoMail, summaryHas: "bounce: no MX host has an address", check: func(t *testing.T, r *Report) {
			if len(r.Hosts) != 2 || !strings.Contains(r.Hosts[0].Error, "NXDOMAIN (permanent)") {
				t.Fatalf("hosts %+v", r.Hosts)
			}
		}},
		{target: "mixed.test", verdict: VerdictDefer, summaryHas: "defer: no MX host could be reached", riskHas: "sf.mixed.test (preference 20) has no usable address"},
		{target: "servfail.test", verdict: VerdictDefer, summaryHas: "SERVFAIL"},
		{target: "nosuch.test", verdict: VerdictNoMail, summaryHas: "NXDOMAIN"},
		{target: "users.test", pass: true, verdict: VerdictDeliver, via: modern.Hostname, reqSource: "policy", reqBits: 128},
		// No MX meets the entry, which routes: the relay hands off.
		{target: "routed.test", verdict: VerdictHandOff, diagnostic: "503 5.7.0 encryption too weak 0 less than 112",
			summaryHas: "hand off to gw.example:2525: no MX meets the requirement (503 5.7.0 encryption too weak 0 less than 112, from " + plain.Hostname,
			check: func(t *testing.T, r *Report) {
				if r.Route != "gw.example:2525" || len(r.Requirement.Sources) != 1 || r.Requirement.Sources[0].Target != "routed.test" {
					t.Fatalf("route %q sources %+v", r.Route, r.Requirement.Sources)
				}
			}},
		{target: "boss@users.test", verdict: VerdictBounce, diagnostic: "503 5.7.0 encryption too weak 128 less than 256", reqSource: "policy", reqBits: 256},
		{target: "sts.test", pass: true, verdict: VerdictDeliver, via: modern.Hostname,
			riskHas: "MX " + plain.Hostname + " is not in the MTA-STS policy's mx list", check: func(t *testing.T, r *Report) {
				if !r.MTASTS.Present || r.MTASTS.Policy == nil || r.MTASTS.Policy.Mode != "enforce" || r.MTASTS.ID != "20240101T000000" {
					t.Fatalf("mta-sts %+v", r.MTASTS)
				}
				if m := r.Hosts[0].MTASTSMatch; m == nil || !*m {
					t.Fatal("good host does not match")
				}
				if len(r.TLSRPT.Records) != 1 {
					t.Fatalf("tls-rpt %+v", r.TLSRPT)
				}
				for _, risk := range r.Risks {
					if strings.Contains(risk, "no MTA-STS") {
						t.Fatalf("MTA-STS enforce, yet risk %q", risk)
					}
				}
			}},
		// One server, no MX walk (posttls-finger style), graded by the
		// default requirement even though users.test has an entry.
		{target: "[" + modern.IP.String() + "]", pass: true, verdict: VerdictDeliver, via: modern.IP.String(), reqSource: "default", reqBits: 112,
			check: func(t *testing.T, r *Report) {
				if r.Domain != "" || r.MX.Implicit || len(r.Hosts) != 1 || r.Hosts[0].Attempts[0].Addr != modern.Addr() {
					t.Fatalf("a single host probed as a domain: %+v", r)
				}
			}},
		{target: "[" + modern.Hostname + "]:25", pass: true, verdict: VerdictDeliver, via: modern.Hostname, check: func(t *testing.T, r *Report) {
			if at := r.Hosts[0].Attempts[0]; !at.Verified || at.Cert == nil || !at.Cert.NameMatched {
				t.Fatalf("the server's name was not checked: %+v", at)
			}
		}},
		{target: "[" + plain.IP.String() + "]:25", verdict: VerdictBounce, diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
	}
	targets := make([]string, len(tests))
	for i, tc := range tests {
		targets[i] = tc.target
	}
	var calls int
	p.cfg.Progress = func(done, total int, r *Report) { calls++ }
	start := time.Now()
	reports := p.Probe(context.Background(), targets)
	t.Logf("%d targets in %v", len(targets), time.Since(start))
	if calls != len(targets) {
		t.Fatalf("progress called %d times", calls)
	}
	for i, tc := range tests {
		r := reports[i]
		t.Run(tc.target, func(t *testing.T) {
			js, _ := json.MarshalIndent(r, "", "  ")
			if r.Target != tc.target || r.Pass != tc.pass || r.Verdict != tc.verdict || r.Diagnostic != tc.diagnostic {
				t.Fatalf("pass=%v verdict=%q diagnostic=%q\n%s", r.Pass, r.Verdict, r.Diagnostic, js)
			}
			if tc.via != "" && (r.Via == nil || r.Via.Host != tc.via) {
				t.Fatalf("via %+v, want %s\n%s", r.Via, tc.via, js)
			}
			if !strings.Contains(r.Summary, tc.summaryHas) {
				t.Fatalf("summary %q, want %q", r.Summary, tc.summaryHas)
			}
			if tc.riskHas != "" && !strings.Contains(strings.Join(r.Risks, "\n"), tc.riskHas) {
				t.Fatalf("risks %q, want %q", r.Risks, tc.riskHas)
			}
			if tc.reqSource != "" && (r.Requirement.Source != tc.reqSource || r.Requirement.Bits != tc.reqBits) {
				t.Fatalf("requirement %+v", r.Requirement)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}

	// DANE through a resolver whose answers carry the AD bit (trusted on
	// loopback): the Postfix MX's certificate against its TLSA records.
	t.Run("DANE joins the requirement", func(t *testing.T) {
		sd := testpeer.StartDNS(t)
		sd.SetAD(true)
		sd.AddA(modern.Hostname, modern.IP.String())
		sd.AddMX("dane-ok.test", 10, modern.Hostname)
		for _, leaf := range modern.Certs {
			spki := sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo)
			sd.AddTLSA("_25._tcp."+modern.Hostname, 3, 1, 1, hex.EncodeToString(spki[:]))
		}
		sd.AddA("mx.dane-bad.test", modern.IP.String())
		sd.AddMX("dane-bad.test", 10, "mx.dane-bad.test")
		sd.AddTLSA("_25._tcp.mx.dane-bad.test", 3, 1, 1, strings.Repeat("00", 32))
		// A signed MX answer, but the host's address record is in an
		// unsigned zone: DANE does not apply and its TLSA (which would not
		// match) is never asked (RFC 7672 §2.2.2).
		sd.AddA("mx.dane-insecure.test", modern.IP.String())
		sd.Insecure("mx.dane-insecure.test")
		sd.AddMX("dane-insecure.test", 10, "mx.dane-insecure.test")
		sd.AddTLSA("_25._tcp.mx.dane-insecure.test", 3, 1, 1, strings.Repeat("00", 32))
		// Authentic MX and addresses, and the TLSA lookup fails: defer.
		sd.AddA("mx.dane-sf.test", modern.IP.String())
		sd.AddMX("dane-sf.test", 10, "mx.dane-sf.test")
		sd.ServFail("_25._tcp.mx.dane-sf.test")
		// The MX is an alias: its records are asked at the CNAME-expanded
		// name first (RFC 7672 §2.2.2), and DANE-EE matches there.
		sd.AddCNAME("alias.dane-cname.test", modern.Hostname)
		sd.AddMX("dane-cname.test", 10, "alias.dane-cname.test")
		sres, err := mx.NewResolver(sd.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ps, _ := New(Config{Resolver: sres, Timeout: 5 * time.Second, RootCAs: ca.Pool(), STSFetcher: stsFetch})
		insecure := ps.ProbeTarget(context.Background(), "dane-insecure.test")
		if h := insecure.Hosts[0]; !insecure.Pass || !insecure.MX.Secure || h.TLSA.State != "none" ||
			h.TLSA.Reason != "address records of mx.dane-insecure.test not DNSSEC-authenticated (RFC 7672 §2.2.2)" ||
			len(insecure.Requirement.Sources) != 0 || h.Attempts[0].DANE != DANENone || h.Attempts[0].Auth != "none" {
			js, _ := json.MarshalIndent(insecure, "", "  ")
			t.Fatalf("insecure addresses: want DANE none and delivery\n%s", js)
		}
		for _, q := range sd.Queries() {
			if q.Qtype == dns.TypeTLSA && strings.Contains(q.Name, "dane-insecure.test") {
				t.Fatalf("TLSA asked for a host whose addresses are not authentic: %s", q.Name)
			}
		}
		sf := ps.ProbeTarget(context.Background(), "dane-sf.test")
		wantSF := "451 4.7.5 DANE: TLSA lookup for mx.dane-sf.test failed: SERVFAIL"
		if sf.Pass || sf.Verdict != VerdictDefer || !strings.HasPrefix(sf.Diagnostic, wantSF) || sf.Hosts[0].TLSA.State != "failed" ||
			sf.Hosts[0].Attempts[0].FailedBy != "dane" || !strings.Contains(sf.Summary, "never bounced") {
			js, _ := json.MarshalIndent(sf, "", "  ")
			t.Fatalf("TLSA SERVFAIL: want defer %q\n%s", wantSF, js)
		}
		cname := ps.ProbeTarget(context.Background(), "dane-cname.test")
		if h := cname.Hosts[0]; !cname.Pass || h.TLSA.Name != "_25._tcp."+modern.Hostname ||
			strings.Join(h.TLSA.Names, " ") != "alias.dane-cname.test "+modern.Hostname || h.Attempts[0].Auth != "dane" {
			js, _ := json.MarshalIndent(cname, "", "  ")
			t.Fatalf("CNAME-expanded TLSA: %s", js)
		}
		for _, off := range []bool{false, true} {
			ps, _ := New(Config{Resolver: sres, Timeout: 5 * time.Second, RootCAs: ca.Pool(), STSFetcher: stsFetch, IgnorePublished: off})
			good := ps.ProbeTarget(context.Background(), "dane-ok.test")
			gat := good.Hosts[0].Attempts[0]
			if !good.Pass || gat.DANE != DANEMatch || gat.Auth != "dane" || !strings.HasPrefix(gat.TLSA, "3 1 1 ") ||
				!slices.Contains(good.Hosts[0].TLSA.Records, gat.TLSA) || good.Hosts[0].TLSA.State != "usable" ||
				len(good.Requirement.Sources) != 1 || good.Requirement.Sources[0].DANE != policy.DANEUsable {
				t.Fatalf("published off %v: DANE-EE match: %+v", off, good)
			}
			bad := ps.ProbeTarget(context.Background(), "dane-bad.test")
			if off {
				// The relay's switch: DANE ignored, and said to be.
				if !bad.Pass || bad.Requirement.Sources[0].Ignored != policy.IgnoredPublishedOff {
					t.Fatalf("published off: %+v", bad)
				}
				continue
			}
			want := "451 4.7.5 DANE: certificate of mx.dane-bad.test matches no usable TLSA record: no TLSA record matched the certificate chain"
			if bad.Pass || bad.Verdict != VerdictDefer || bad.Diagnostic != want || bad.Hosts[0].Attempts[0].FailedBy != "dane" {
				t.Fatalf("DANE mismatch: verdict %q diagnostic %q, want defer %q", bad.Verdict, bad.Diagnostic, want)
			}
		}
	})

	t.Run("require-bits overrides the policy", func(t *testing.T) {
		p2, _ := New(Config{Resolver: res, Policy: pf.Compile(), RequireBits: 256, Timeout: 5 * time.Second, RootCAs: ca.Pool(), STSFetcher: stsFetch})
		r := p2.ProbeTarget(context.Background(), "users.test")
		if r.Pass || r.Requirement.Source != "flag" || r.Diagnostic != "503 5.7.0 encryption too weak 128 less than 256" {
			t.Fatalf("%+v", r)
		}
	})
}
