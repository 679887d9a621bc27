package probe

import (
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
)

// The probe must name the same diagnostic the relay would put in its NDR:
// the first hop in preference order that failed, not the "best" one, and
// it bounces only when every hop was reached (pkg/relay/delivery).
func TestVerdictFollowsTheRelay(t *testing.T) {
	plain := func(addr string) *Attempt {
		return &Attempt{Addr: addr, graded: true, Diagnostic: "503 5.7.0 encryption too weak 0 less than 112"}
	}
	des := func(addr string) *Attempt {
		return &Attempt{Addr: addr, graded: true, TLS: true, Bits: 56, Diagnostic: "503 5.7.0 encryption too weak 56 less than 112"}
	}
	unreachable := func(addr string) *Attempt { return &Attempt{Addr: addr, Error: "connection refused"} }
	good := func(addr string) *Attempt {
		return &Attempt{Addr: addr, graded: true, Met: true, TLS: true, Bits: 256, Version: "TLSv1.3", Suite: "TLS_AES_256_GCM_SHA384"}
	}
	hosts := func(as ...*Attempt) []HostReport {
		var hs []HostReport
		for i, a := range as {
			hs = append(hs, HostReport{Name: "mx" + string(rune('1'+i)) + ".p.test", Preference: uint16(10 * (i + 1)), Attempts: []*Attempt{a}})
		}
		return hs
	}
	enforce := policy.DefaultRequirement()
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
