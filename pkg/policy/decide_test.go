package policy

import (
	"crypto/tls"
	"testing"
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
