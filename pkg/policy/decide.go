package policy

// Action is what becomes of a message for one domain after its hops
// (the MX hosts' addresses in order, or a static route) were tried.
type Action uint8

const (
	// Deliver: over Decision.Hop.
	Deliver Action = iota
	// Defer: keep the message queued and try again later.
	Defer
	// Bounce: return it to the sender now with Decision.Diagnostic.
	Bounce
	// A future on-fail=route:HOST (SPEC §6.4) adds HandOff here: no hop
	// meets the requirement and the message goes to another gateway
	// instead of bouncing. It is decided where Bounce is.
)

func (a Action) String() string {
	switch a {
	case Deliver:
		return "deliver"
	case Defer:
		return "defer"
	}
	return "bounce"
}

// HopResult is how far one hop got, as far as the decision needs it.
type HopResult struct {
	// Reached: a session got as far as the TLS decision and Verdict is
	// Evaluate's for it. False when the hop could not be reached or its
	// session broke before the mail was handed over: it might have met
	// the requirement.
	Reached bool
	Verdict Verdict
}

// Decision is Decide's answer.
type Decision struct {
	Action Action
	// Hop indexes the hops given: for Deliver, the one that carries the
	// mail; for Defer and Bounce, the first that was reached and did not
	// meet the requirement, whose Diagnostic the bounce (or the DSN
	// when the deferral expires) carries. -1 when there is none.
	Hop int
	// Diagnostic is the verdict's text of Hop when it did not meet the
	// requirement (for Deliver: a mode=testing would-be bounce); "" else.
	Diagnostic string
	// WouldBounce: Deliver under mode=testing over a hop that does not
	// meet the requirement; the audit records a would-be bounce.
	WouldBounce bool
}

// Decide is the one route rule, which the relay and the probe both use
// (SPEC §4; RFC 5321 §5.1 for the order): hops are tried in order and the
// first reached one whose verdict lets the mail go (MaySend: met, or not
// enforced) carries it; a hop that does not meet an enforced requirement
// gets no MAIL FROM and the next one is tried. When none carries, the
// message bounces only when every hop was reached and refused and
// on-fail=bounce, with the first refusal's diagnostic (the one Postfix or
// Sendmail would name, not the "best"); otherwise it defers, since an
// unreachable hop might have met the requirement.
func Decide(req Requirement, hops []HopResult) Decision {
	refused, unreached := -1, false
	for i, h := range hops {
		switch {
		case !h.Reached:
			unreached = true
		case h.Verdict.MaySend:
			d := Decision{Action: Deliver, Hop: i, WouldBounce: h.Verdict.WouldBounce}
			if !h.Verdict.Met {
				d.Diagnostic = h.Verdict.Diagnostic
			}
			return d
		case refused < 0:
			refused = i
		}
	}
	if refused < 0 {
		return Decision{Action: Defer, Hop: -1}
	}
	d := Decision{Action: Defer, Hop: refused, Diagnostic: hops[refused].Verdict.Diagnostic}
	if !unreached && req.OnFail == OnFailBounce {
		d.Action = Bounce
	}
	return d
}
