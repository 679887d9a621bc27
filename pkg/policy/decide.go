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
	// HandOff: no hop meets the requirement and the entry has
	// on-fail=route (SPEC §6.4): the message goes to Decision.Route, an
	// encryption gateway, over verified TLS instead of bouncing. From
	// DecideRoute: it was handed over.
	HandOff
)

func (a Action) String() string {
	switch a {
	case Deliver:
		return "deliver"
	case Defer:
		return "defer"
	case HandOff:
		return "hand-off"
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
	// Route is where HandOff sends the message; zero otherwise.
	Route Route
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
//
// Beyond the list (verdicts of EvaluateHop): a refusal by DANE or MTA-STS
// never bounces, it defers (RFC 7672 §2.2, RFC 8461 §5); a REQUIRETLS
// refusal is permanent whatever on-fail says (RFC 8689 §4.2.1, 5.7.30).
// Where the message would bounce or defer after every hop was reached
// and refused, an enforced entry with on-fail=route hands it off to the
// route instead; the courier then tries the route and calls DecideRoute.
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
	if unreached {
		return d
	}
	if req.OnFail == OnFailRoute && !req.Route.IsZero() && req.Mode == ModeEnforce {
		d.Action, d.Route = HandOff, req.Route
		return d
	}
	permanent := true
	for _, h := range hops {
		if h.Reached && !h.Verdict.MaySend && !refusalIsPermanent(req, h.Verdict) {
			permanent = false
		}
	}
	if permanent {
		d.Action = Bounce
	}
	return d
}

// refusalIsPermanent: a list refusal bounces with on-fail=bounce, a
// REQUIRETLS refusal always; what the partner publishes only defers.
func refusalIsPermanent(req Requirement, v Verdict) bool {
	switch v.FailedBy {
	case SourceList, "":
		return req.OnFail == OnFailBounce
	case SourceRequireTLS:
		return true
	}
	return false
}

// RouteRequirement is what the hand-off route must achieve: TLS with a
// certificate that verifies for the route's host (PKIX, the operator CA
// file allowed), never in clear, at the entry's strength and version,
// and REQUIRETLS passed on when the message asked it. The route is not
// the partner's MX, so the partner's MTA-STS and DANE do not apply to it.
func RouteRequirement(req Requirement) Requirement {
	return Requirement{
		Options:    Options{Bits: req.Bits, MinTLS: req.MinTLS, Verify: VerifyCert, Mode: ModeEnforce, OnFail: OnFailBounce},
		Target:     req.Target,
		Line:       req.Line,
		RequireTLS: req.RequireTLS,
	}
}

// DecideRoute is the decision after Decide said HandOff and the courier
// tried the route: route is its HopResult, judged by EvaluateHop against
// RouteRequirement(req). Met → HandOff (handed over, audited as
// handed-off, no bounce to the sender). Otherwise the entry's rule for
// when the route fails too: a refusal (no TLS, a certificate that does
// not verify) bounces with the route's diagnostic, an unreachable route
// defers — as on-fail=bounce judges MX hosts.
func DecideRoute(req Requirement, route HopResult) Decision {
	switch {
	case !route.Reached:
		return Decision{Action: Defer, Hop: -1, Route: req.Route}
	case route.Verdict.Met:
		return Decision{Action: HandOff, Hop: 0, Route: req.Route}
	}
	return Decision{Action: Bounce, Hop: 0, Diagnostic: route.Verdict.Diagnostic, Route: req.Route}
}
