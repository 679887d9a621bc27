package courier

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// target is one address to try: an MX host's address or a route.
type target struct {
	name string // the MX host name, for SNI and certificate matching
	addr string // host:port to dial
	// facts is what is known of the hop before its session (its DANE
	// state); every verdict on the hop, new or cached, is taken with it.
	facts policy.HopFacts
	// dane is the host's TLSA lookup: its records verify the chain when
	// usable (smtpclient.Options.TLSA).
	dane dane.Host
	// mx is the MX host, mxAD its MX RRset's trusted AD bit, for the
	// TLSA lookup that withDANE makes when the host's turn comes; zero
	// for a route.
	mx   *mx.Host
	mxAD bool
}

// DANELookup finds one MX host's DANE state; dane.Lookup over the
// relay's resolver is one. mxAuthentic is the MX RRset's trusted AD bit
// (mx.Result.AD).
type DANELookup func(ctx context.Context, mxAuthentic bool, host mx.Host, port int) dane.Host

// routeFor finds a static route for domain or a parent domain.
func (c *SMTP) routeFor(domain string) (string, bool) {
	for d := domain; d != ""; {
		if hp, ok := c.cfg.Routes[d]; ok {
			return hp, true
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			break
		}
		d = rest
	}
	return "", false
}

// targets lists where the group's mail goes, in the order to try: the
// route, or every address of every MX host by preference (RFC 5321 §5.1).
// Each MX host's DANE state (RFC 7672 §2.2) is looked up when its turn
// comes (withDANE), so a domain whose first MX takes the mail costs one
// TLSA lookup. A non-nil failure applies to the whole group.
//
// A static route gets no TLSA lookup: it is the operator's own next hop
// (a lab, a smarthost), named by configuration rather than by the
// domain's DNSSEC-signed MX records, which is what DANE authenticates.
func (c *SMTP) targets(ctx context.Context, g Group) ([]target, *failure) {
	domain := g.Domain
	if hp, ok := c.routeFor(domain); ok {
		host, _, _ := net.SplitHostPort(hp)
		return []target{{name: host, addr: hp, facts: policy.HopFacts{Name: host}}}, nil
	}
	if c.cfg.Resolver == nil {
		return nil, &failure{reply: smtpreply.LookupFailed("no resolver and no route for " + domain), temporary: true}
	}
	res, err := c.cfg.Resolver.LookupMX(ctx, domain)
	switch {
	case errors.Is(err, mx.ErrNullMX) || res.NullMX:
		return nil, &failure{reply: smtpreply.NullMX(domain)}
	case err != nil && mx.IsTemporary(err):
		return nil, &failure{reply: smtpreply.LookupFailed(err), temporary: true}
	case err != nil:
		return nil, &failure{reply: smtpreply.NoDomain(err)}
	}
	port := strconv.Itoa(c.cfg.MXPort)
	var ts []target
	for i := range res.Hosts {
		h := &res.Hosts[i]
		for _, a := range h.Addrs {
			ts = append(ts, target{name: h.Name, addr: net.JoinHostPort(a.Unmap().String(), port),
				facts: policy.HopFacts{Name: h.Name}, mx: h, mxAD: res.AD})
		}
	}
	if len(ts) == 0 {
		// Every host failed its A/AAAA lookup: temporary unless each
		// failure was permanent (mx.Result.NoAddress, which the probe
		// grades by too).
		if permanent, err := res.NoAddress(); permanent {
			return nil, &failure{reply: smtpreply.NoDomain(err)}
		}
		return nil, &failure{reply: smtpreply.NoMXReached(domain), temporary: true}
	}
	return ts, nil
}

// withDANE gives an MX target its host's DANE state, looked up once per
// host and attempt (seen), unless published policies are off (then
// nothing is asked: the setting is for labs and emergencies, a broken
// DNSSEC chain among them). A verify=dane list entry still gets its
// lookup: the setting switches off what partners publish, never a list
// entry, and without the records such an entry could only refuse.
func (c *SMTP) withDANE(ctx context.Context, t target, req policy.Requirement, seen map[string]target) target {
	listWantsDANE := req.Judged() && req.Verify == policy.VerifyDANE
	if t.mx == nil || c.cfg.DANE == nil || (req.Ignore == policy.IgnoredPublishedOff && !listWantsDANE) {
		return t
	}
	if s, ok := seen[t.name]; ok {
		t.facts, t.dane = s.facts, s.dane
		return t
	}
	t.facts, t.dane = c.daneOf(ctx, t.mxAD, *t.mx)
	seen[t.name] = t
	return t
}

// daneOf looks up a host's DANE state and what it means for the
// decision (dane.Host.Facts, which the probe uses too).
func (c *SMTP) daneOf(ctx context.Context, mxAuthentic bool, h mx.Host) (policy.HopFacts, dane.Host) {
	d := c.cfg.DANE(ctx, mxAuthentic, h, c.cfg.MXPort)
	return d.Facts(h.Name), d
}
