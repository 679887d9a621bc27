package courier

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// target is one address to try: an MX host's address or a route.
type target struct {
	name string // the MX host name, for SNI and certificate matching
	addr string // host:port to dial
}

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

// targets lists where the domain's mail goes, in the order to try: the
// route, or every address of every MX host by preference (RFC 5321 §5.1).
// A non-nil failure applies to the whole group.
func (c *SMTP) targets(ctx context.Context, domain string) ([]target, *failure) {
	if hp, ok := c.routeFor(domain); ok {
		host, _, _ := net.SplitHostPort(hp)
		return []target{{name: host, addr: hp}}, nil
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
	for _, h := range res.Hosts {
		for _, a := range h.Addrs {
			ts = append(ts, target{name: h.Name, addr: net.JoinHostPort(a.Unmap().String(), port)})
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
