package probe

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
)

// The probe must name the same diagnostic the relay would put in its NDR:
// the first hop in preference order that failed, not the "best" one, and
// it bounces only when every hop was reached (pkg/relay/delivery).
func TestVerdictFollowsTheRelay(t *testing.T) {
	enforce := policy.DefaultRequirement()
	// Attempts graded as session grades them: policy.Evaluate on an outcome.
	graded := func(at *Attempt, out policy.Outcome) *Attempt {
		v := policy.Evaluate(enforce, out)
		at.graded, at.verdict, at.Met, at.Diagnostic = true, v, v.Met, v.Diagnostic
		return at
	}
	plain := func(addr string) *Attempt {
		return graded(&Attempt{Addr: addr}, policy.Outcome{Failure: "STARTTLS not offered"})
	}
	des := func(addr string) *Attempt {
		return graded(&Attempt{Addr: addr, TLS: true, Bits: 56}, policy.Outcome{TLS: true, Version: tls.VersionTLS10, CipherSuite: 0x0009})
	}
	unreachable := func(addr string) *Attempt { return &Attempt{Addr: addr, Error: "connection refused"} }
	good := func(addr string) *Attempt {
		return graded(&Attempt{Addr: addr, TLS: true, Bits: 256, Version: "TLSv1.3", Suite: "TLS_AES_256_GCM_SHA384"},
			policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384})
	}
	hosts := func(as ...*Attempt) []HostReport {
		var hs []HostReport
		for i, a := range as {
			hs = append(hs, HostReport{Name: "mx" + string(rune('1'+i)) + ".p.test", Preference: uint16(10 * (i + 1)), Attempts: []*Attempt{a}})
		}
		return hs
	}
	deferring := enforce
	deferring.OnFail = policy.OnFailDefer
	cases := []struct {
		name    string
		req     policy.Requirement
		hosts   []HostReport
		verdict string
		diag    string
		summary string
	}{
		{"first failure names the NDR", enforce, hosts(plain("10.0.0.1:25"), des("10.0.0.2:25")), VerdictBounce,
			"503 5.7.0 encryption too weak 0 less than 112", "from mx1.p.test"},
		{"an unreachable hop defers", enforce, hosts(unreachable("10.0.0.1:25"), des("10.0.0.2:25")), VerdictDefer,
			"503 5.7.0 encryption too weak 56 less than 112", "might meet the requirement"},
		{"on-fail=defer", deferring, hosts(plain("10.0.0.1:25")), VerdictDefer,
			"503 5.7.0 encryption too weak 0 less than 112", "defer until the queue lifetime ends"},
		{"backup carries it", enforce, hosts(plain("10.0.0.1:25"), good("10.0.0.2:25")), VerdictDeliver, "", "via mx2.p.test"},
		{"nothing reached", enforce, hosts(unreachable("10.0.0.1:25")), VerdictDefer, "", "no MX host could be reached"},
	}
	p := &Prober{cfg: Config{Now: time.Now}}
	for _, c := range cases {
		rep := &Report{Hosts: c.hosts}
		p.verdict(rep, c.req)
		if rep.Verdict != c.verdict || rep.Diagnostic != c.diag || !strings.Contains(rep.Summary, c.summary) {
			t.Errorf("%s: verdict %q diagnostic %q summary %q; want %q %q containing %q",
				c.name, rep.Verdict, rep.Diagnostic, rep.Summary, c.verdict, c.diag, c.summary)
		}
	}
}

// mode=testing: the relay sends over the first hop it reaches, met or not
// (Evaluate lets it), and records a would-be bounce; it does not go on to
// look for a hop that meets the requirement. The probe says the same.
func TestVerdictTestingUsesTheFirstReachedHop(t *testing.T) {
	req := policy.DefaultRequirement()
	req.Mode = policy.ModeTesting
	grade := func(at *Attempt, out policy.Outcome) *Attempt {
		v := policy.Evaluate(req, out)
		at.graded, at.verdict, at.Met, at.Diagnostic = true, v, v.Met, v.Diagnostic
		return at
	}
	rep := &Report{Hosts: []HostReport{
		{Name: "mx1.p.test", Preference: 10, Attempts: []*Attempt{{Addr: "10.0.0.1:25", Error: "connection refused"}}},
		{Name: "mx2.p.test", Preference: 20, Attempts: []*Attempt{grade(&Attempt{Addr: "10.0.0.2:25"}, policy.Outcome{Failure: "STARTTLS not offered"})}},
		{Name: "mx3.p.test", Preference: 30, Attempts: []*Attempt{grade(&Attempt{Addr: "10.0.0.3:25", TLS: true, Bits: 256},
			policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384})}},
	}}
	(&Prober{cfg: Config{Now: time.Now}}).verdict(rep, req)
	const diag = "503 5.7.0 encryption too weak 0 less than 112"
	if rep.Verdict != VerdictTesting || rep.Diagnostic != diag || !strings.Contains(rep.Summary, "from mx2.p.test [10.0.0.2:25]") {
		t.Errorf("verdict %q diagnostic %q summary %q; want %q %q from mx2.p.test", rep.Verdict, rep.Diagnostic, rep.Summary, VerdictTesting, diag)
	}
}

// Published policies reach the verdict through the same decision as the
// relay's: a DANE refusal defers, an entry's route hands off, and the
// requirement names every source (the entry, MTA-STS, each host's DANE).
func TestVerdictPublishedAndHandOff(t *testing.T) {
	file, err := policy.Parse("p.conf", []byte("p.test on-fail=route:gw.example:2525\nq.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol := file.Compile()
	sts := &policy.STS{ID: "20260101", Mode: policy.STSEnforce, MX: []string{"*.p.test"}}
	graded := func(req policy.Requirement, host string, dane policy.DANEState, out policy.Outcome) HostReport {
		at := &Attempt{Addr: "10.0.0.1:25"}
		v := policy.EvaluateHop(req, policy.HopFacts{Name: host, DANE: dane}, out)
		at.graded, at.verdict, at.Met, at.Diagnostic, at.FailedBy = true, v, v.Met, v.Diagnostic, string(v.FailedBy)
		return HostReport{Name: host, Attempts: []*Attempt{at}, dane: dane}
	}
	anon := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Auth: policy.AuthNone, VerifyError: "self-signed"}
	plain := policy.Outcome{Failure: "STARTTLS not offered"}
	p := &Prober{cfg: Config{Now: time.Now}}

	// q.test: listed, DANE usable on its MX, certificate matches no TLSA.
	req := policy.Combine(pol.Lookup("q.test").Requirement(), policy.Published{STS: sts})
	rep := &Report{Requirement: RequirementInfo{}, Hosts: []HostReport{graded(req, "mx1.q.test", policy.DANEUsable, anon)}}
	p.verdict(rep, req)
	if rep.Verdict != VerdictDefer || !strings.HasPrefix(rep.Diagnostic, "451 4.7.5 DANE: ") || !strings.Contains(rep.Summary, "never bounced") {
		t.Errorf("DANE refusal: %q %q %q, want a deferral naming DANE", rep.Verdict, rep.Diagnostic, rep.Summary)
	}
	kinds := []string{}
	for _, s := range rep.Requirement.Sources {
		kinds = append(kinds, string(s.Kind)+":"+s.Target+s.PolicyID+s.Host+string(s.DANE))
	}
	if got, want := strings.Join(kinds, " "), "list:q.test mta-sts:20260101 dane:mx1.q.testusable"; got != want {
		t.Errorf("sources %q, want %q", got, want)
	}

	// p.test: every MX refused, the entry routes: hand off.
	req = policy.Combine(pol.Lookup("p.test").Requirement(), policy.Published{})
	rep = &Report{Hosts: []HostReport{graded(req, "mx1.p.test", policy.DANENone, plain)}}
	p.verdict(rep, req)
	if rep.Verdict != VerdictHandOff || rep.Route != "gw.example:2525" || rep.Pass ||
		!strings.HasPrefix(rep.Summary, "hand off to gw.example:2525: no MX meets the requirement (503 5.7.0 encryption too weak 0 less than 112") {
		t.Errorf("route: %q %q %q", rep.Verdict, rep.Route, rep.Summary)
	}

	// Published policies off: DANE is ignored and said to be.
	req = policy.Combine(policy.Requirement{}, policy.Published{STS: sts, Ignored: true})
	rep = &Report{Hosts: []HostReport{graded(req, "mx9.elsewhere.test", policy.DANEUsable, plain)}}
	p.verdict(rep, req)
	if rep.Verdict != VerdictDeliver || len(rep.Requirement.Sources) != 2 ||
		rep.Requirement.Sources[0].Ignored != policy.IgnoredPublishedOff || rep.Requirement.Sources[1].Ignored != policy.IgnoredPublishedOff {
		t.Errorf("published off: %q sources %+v", rep.Verdict, rep.Requirement.Sources)
	}
}
