package courier

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// addrResolver finds a host's addresses; *mx.Resolver is one. A Resolver
// without it leaves a route's host name to the system resolver.
type addrResolver interface {
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
}

// handOff carries g to route after policy.Decide said HandOff: every MX
// was reached and none met the entry's requirement, and the entry names
// an encryption gateway (on-fail=route:HOST[:PORT]). The route must offer
// TLS with a certificate that verifies for its host name (the relay's
// RootCAs: the system roots or the operator's CA file) — the enforced
// policy.RouteRequirement, so a session that cannot meet it gets no MAIL
// FROM and is never retried in clear. why is the partner's refusal, kept
// as the Diagnostic of what was handed off.
//
// policy.DecideRoute judges the route's outcome: met → the recipients
// come back Delivered with HandedOff set; refused (no TLS, a certificate
// that does not verify) → bounced with the route's diagnostic; not
// reached → deferred.
//
// Route connections share the connection cache with MX ones under the
// route's host name: an idle connection is taken only for the same name
// and address, and only when its judged TLS passes the requirement of the
// group that takes it (reuse.go), so an MX session never carries handed-
// off mail and a route session never carries an MX's without a verified
// certificate.
func (c *SMTP) handOff(ctx context.Context, m *Message, g Group, route policy.Route, why *failure) []Result {
	rg := g
	rg.Req = policy.RouteRequirement(g.Req)
	ts, f := c.routeTargets(ctx, route)
	if f == nil {
		for _, t := range ts {
			res, tf := c.deliverTo(ctx, t, m, rg)
			if tf == nil {
				for i := range res {
					res[i].Route = route.String()
					if res[i].Kind == Delivered {
						res[i].HandedOff, res[i].Diagnostic = true, why.reply
					}
				}
				return res
			}
			f = tf
			if tf.policy {
				// Refused on TLS: another address of the same
				// gateway is the same gateway.
				break
			}
		}
	}
	c.cfg.Log.Info("hand-off route not used", "domain", g.Domain, "route", route.String(), "reason", f.reply.String(), "policy", f.policy)
	d := policy.DecideRoute(g.Req, policy.HopResult{Reached: f.policy, Verdict: f.hop.Verdict})
	f.temporary = d.Action != policy.Bounce
	f.reply = routeReply(route, f.reply)
	res := failAll(g, f)
	for i := range res {
		res[i].Route = route.String()
	}
	return res
}

// routeTargets lists the route's addresses: the literal's, or its host
// name's A and AAAA addresses. The host name (never the address) is what
// the certificate must name; for a literal, the address itself.
func (c *SMTP) routeTargets(ctx context.Context, route policy.Route) ([]target, *failure) {
	port := strconv.Itoa(int(route.Port))
	host := route.DialHost()
	if route.Literal() {
		return []target{{name: host, addr: net.JoinHostPort(host, port)}}, nil
	}
	r, ok := c.cfg.Resolver.(addrResolver)
	if !ok {
		return []target{{name: host, addr: route.Address()}}, nil
	}
	addrs, err := r.LookupAddrs(ctx, host)
	if err != nil {
		return nil, &failure{reply: smtpreply.LookupFailed(err), temporary: true}
	}
	ts := make([]target, 0, len(addrs))
	for _, a := range addrs {
		ts = append(ts, target{name: host, addr: net.JoinHostPort(a.Unmap().String(), port)})
	}
	return ts, nil
}

// routeReply says that reply came from (or about) the hand-off route, so
// the sender's DSN and the audit log do not read as if the partner's MX
// had said it: "hand-off route gw.example: certificate not verified: …".
func routeReply(route policy.Route, reply smtpreply.Reply) smtpreply.Reply {
	lines := slices.Clone(reply.Lines)
	if len(lines) == 0 {
		lines = []string{""}
	}
	lines[0] = strings.TrimSuffix("hand-off route "+route.String()+": "+lines[0], ": ")
	reply.Lines = lines
	return reply
}
