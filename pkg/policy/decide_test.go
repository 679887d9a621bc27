package policy

import (
	"crypto/tls"
	"testing"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

func TestDecide(t *testing.T) {
	enforce := Requirement{Options: DefaultOptions(), Target: "partner.com", Line: 1}
	deferring, testMode := enforce, enforce
	deferring.OnFail = OnFailDefer
	testMode.Mode = ModeTesting

	modern := Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true}
	plain := Outcome{Failure: "STARTTLS not offered"}
	des := Outcome{TLS: true, Version: tls.VersionTLS10, CipherSuite: 0x0009}
	const (
		diagPlain = "503 5.7.0 encryption too weak 0 less than 112"
		diagDES   = "503 5.7.0 encryption too weak 56 less than 112"
	)
	// Hops are judged by Evaluate, as the relay and the probe judge them.
	reached := func(req Requirement, o Outcome) HopResult { return HopResult{Reached: true, Verdict: Evaluate(req, o)} }
	unreached := HopResult{}

	cases := []struct {
		name string
		req  Requirement
		hops func(Requirement) []HopResult
		want Decision
	}{
		{"first hop meets", enforce,
			func(r Requirement) []HopResult { return []HopResult{reached(r, modern), reached(r, plain)} },
			Decision{Action: Deliver, Hop: 0}},
		{"a later hop meets", enforce,
			func(r Requirement) []HopResult {
				return []HopResult{reached(r, plain), unreached, reached(r, modern)}
			},
			Decision{Action: Deliver, Hop: 2}}, // after a refused and an unreachable hop
		{"all reached and refused: bounce with the first failure's diagnostic", enforce,
			func(r Requirement) []HopResult { return []HopResult{reached(r, plain), reached(r, des)} },
			Decision{Action: Bounce, Hop: 0, Diagnostic: diagPlain}},
		{"first failure is not the best one", enforce,
			func(r Requirement) []HopResult { return []HopResult{reached(r, des), reached(r, plain)} },
			Decision{Action: Bounce, Hop: 0, Diagnostic: diagDES}},
		{"an unreachable hop before a refusal defers", enforce,
			func(r Requirement) []HopResult { return []HopResult{unreached, reached(r, des)} },
			Decision{Action: Defer, Hop: 1, Diagnostic: diagDES}},
		{"an unreachable hop after a refusal defers", enforce,
			func(r Requirement) []HopResult { return []HopResult{reached(r, plain), unreached} },
			Decision{Action: Defer, Hop: 0, Diagnostic: diagPlain}},
		{"nothing reached", enforce,
			func(Requirement) []HopResult { return []HopResult{unreached, unreached} },
			Decision{Action: Defer, Hop: -1}},
		{"no hops at all", enforce,
			func(Requirement) []HopResult { return nil },
			Decision{Action: Defer, Hop: -1}},
		{"on-fail=defer: every hop refused defers", deferring,
			func(r Requirement) []HopResult { return []HopResult{reached(r, plain), reached(r, des)} },
			Decision{Action: Defer, Hop: 0, Diagnostic: diagPlain}},
		{"on-fail=defer still delivers over a hop that meets", deferring,
			func(r Requirement) []HopResult { return []HopResult{reached(r, plain), reached(r, modern)} },
			Decision{Action: Deliver, Hop: 1}},
		{"mode=testing: the first reached hop carries, recording a would-be bounce", testMode,
			func(r Requirement) []HopResult { return []HopResult{unreached, reached(r, plain), reached(r, modern)} },
			Decision{Action: Deliver, Hop: 1, Diagnostic: diagPlain, WouldBounce: true}},
		{"mode=testing: a hop that meets is a plain delivery", testMode,
			func(r Requirement) []HopResult { return []HopResult{reached(r, modern)} },
			Decision{Action: Deliver, Hop: 0}},
		{"mode=testing: nothing reached defers", testMode,
			func(Requirement) []HopResult { return []HopResult{unreached} },
			Decision{Action: Defer, Hop: -1}},
	}
	for _, c := range cases {
		if got := Decide(c.req, c.hops(c.req)); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// Beyond the list: published failures defer, REQUIRETLS bounces with
// 5.7.30, an enforced entry with a route hands off (SPEC §6).
func TestDecidePublishedAndRoute(t *testing.T) {
	p := mustParse(t, `bounce.example
defer.example on-fail=defer
routed.example on-fail=route:gw.example:2525
testing.example mode=testing on-fail=route:gw.example
`)
	req := func(domain string, pub Published) Requirement {
		return Combine(p.Lookup(domain).Requirement(), pub)
	}
	mx1 := HopFacts{Name: "mx1.example"}
	mx2 := HopFacts{Name: "mx2.example"}
	dane1 := HopFacts{Name: "mx1.example", DANE: DANEUsable}
	dane2 := HopFacts{Name: "mx2.example", DANE: DANEUsable}
	hop := func(r Requirement, f HopFacts, o Outcome) HopResult {
		return HopResult{Reached: true, Verdict: EvaluateHop(r, f, o)}
	}
	gw := Route{Host: "gw.example", Port: 2525}
	cases := []struct {
		name   string
		req    Requirement
		hops   func(Requirement) []HopResult
		action Action
		diag   string
		route  Route
	}{
		{"DANE mismatch on every MX defers, never bounces", req("other.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, dane1, hopAnon), hop(r, dane2, hopAnon)} },
			Defer, smtpreply.DANENotAuthenticated("mx1.example", "no TLSA record matched the certificate chain").String(), Route{}},
		{"DANE failure defers under on-fail=bounce too", req("bounce.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, dane1, hopAnon)} },
			Defer, smtpreply.DANENotAuthenticated("mx1.example", "no TLSA record matched the certificate chain").String(), Route{}},
		{"STS enforce failure defers", req("bounce.example", Published{STS: &STS{ID: "i", Mode: STSEnforce, MX: []string{"mx9.example"}}}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPKIX)} },
			Defer, smtpreply.STSMXNotListed("mx1.example", "i").String(), Route{}},
		{"a list refusal and a DANE refusal: defer", req("bounce.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPlain), hop(r, dane2, hopAnon)} },
			Defer, smtpreply.EncryptionTooWeak(0, 112).String(), Route{}},
		{"REQUIRETLS refusal bounces with 5.7.30", req("other.example", Published{RequireTLS: true}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPKIX), hop(r, mx2, hopPKIX)} },
			Bounce, smtpreply.RequireTLSNotOffered("mx1.example").String(), Route{}},
		{"REQUIRETLS refusal bounces under on-fail=defer", req("defer.example", Published{RequireTLS: true}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPKIX)} },
			Bounce, smtpreply.RequireTLSNotOffered("mx1.example").String(), Route{}},
		{"REQUIRETLS met", req("other.example", Published{RequireTLS: true}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPKIX), hop(r, mx2, hopPKIXRTLS)} },
			Deliver, "", Route{}},
		{"route: every MX refused → hand off", req("routed.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPlain), hop(r, mx2, hopPlain)} },
			HandOff, smtpreply.EncryptionTooWeak(0, 112).String(), gw},
		{"route: DANE refusal → hand off", req("routed.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, dane1, hopAnon)} },
			HandOff, smtpreply.DANENotAuthenticated("mx1.example", "no TLSA record matched the certificate chain").String(), gw},
		{"route: an unreachable MX defers", req("routed.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPlain), {}} },
			Defer, smtpreply.EncryptionTooWeak(0, 112).String(), Route{}},
		{"route: an MX meets → deliver", req("routed.example", Published{}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPlain), hop(r, mx2, hopPKIX)} },
			Deliver, "", Route{}},
		{"route on a testing entry is not used", req("testing.example", Published{STS: &STS{ID: "i", Mode: STSEnforce, MX: []string{"mx9.example"}}}),
			func(r Requirement) []HopResult { return []HopResult{hop(r, mx1, hopPKIX)} },
			Defer, smtpreply.STSMXNotListed("mx1.example", "i").String(), Route{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.req, c.hops(c.req))
			if d.Action != c.action || d.Diagnostic != c.diag || d.Route != c.route {
				t.Errorf("got %v %q route %v, want %v %q route %v", d.Action, d.Diagnostic, d.Route, c.action, c.diag, c.route)
			}
		})
	}
}

// After HandOff: the route met → handed off; refused → the entry's rule
// (bounce with the route's diagnostic); unreachable → defer.
func TestDecideRoute(t *testing.T) {
	p := mustParse(t, "routed.example min-tls=1.2 on-fail=route:[192.0.2.7]\n")
	req := Combine(p.Lookup("routed.example").Requirement(), Published{})
	rr := RouteRequirement(req)
	if rr.Verify != VerifyCert || rr.Mode != ModeEnforce || rr.MinTLS != tls.VersionTLS12 || rr.STS != nil {
		t.Fatalf("route requirement %+v: want verify=cert, enforce, min-tls 1.2, no MTA-STS", rr)
	}
	gw := HopFacts{Name: "192.0.2.7"}
	route := Route{Host: "[192.0.2.7]", Port: 25}
	for _, c := range []struct {
		name   string
		hop    HopResult
		action Action
		diag   string
	}{
		{"verified TLS: handed off", HopResult{Reached: true, Verdict: EvaluateHop(rr, gw, hopPKIX)}, HandOff, ""},
		{"bad certificate: bounce", HopResult{Reached: true, Verdict: EvaluateHop(rr, gw, hopAnon)}, Bounce,
			smtpreply.CertificateNotVerified("x509: certificate signed by unknown authority").String()},
		{"no TLS: bounce, never in clear", HopResult{Reached: true, Verdict: EvaluateHop(rr, gw, hopPlain)}, Bounce,
			smtpreply.EncryptionTooWeak(0, 112).String()},
		{"unreachable: defer", HopResult{}, Defer, ""},
	} {
		d := DecideRoute(req, c.hop)
		if d.Action != c.action || d.Diagnostic != c.diag || d.Route != route {
			t.Errorf("%s: got %v %q %v, want %v %q %v", c.name, d.Action, d.Diagnostic, d.Route, c.action, c.diag, route)
		}
	}
	// A REQUIRETLS message keeps its demand on the route.
	rt := RouteRequirement(Combine(p.Lookup("routed.example").Requirement(), Published{RequireTLS: true}))
	if d := DecideRoute(req, HopResult{Reached: true, Verdict: EvaluateHop(rt, gw, hopPKIX)}); d.Action != Bounce ||
		d.Diagnostic != smtpreply.RequireTLSNotOffered("192.0.2.7").String() {
		t.Errorf("REQUIRETLS to a route without it: %v %q", d.Action, d.Diagnostic)
	}
}
