package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/mx"
)

// HostTarget is one mail server probed directly, without an MX walk, as
// posttls-finger takes it: "[mx.partner.com]", "[192.0.2.7]:2525",
// "mx.partner.com:25", "192.0.2.7", "[2001:db8::7]:25".
type HostTarget struct {
	Host string // canonical host name, or an IP address
	Port int    // 0: the probe's --port
}

// Key is the target's canonical spelling: the host in brackets (Postfix's
// "no MX lookup" form), then the port when one was given.
func (h HostTarget) Key() string {
	k := "[" + h.Host + "]"
	if h.Port != 0 {
		k += ":" + strconv.Itoa(h.Port)
	}
	return k
}

// ParseHostTarget recognises the single-host forms. ok is false for
// anything else (a domain or an address, which are MX-walked); err is
// set for a host form that is malformed.
func ParseHostTarget(s string) (h HostTarget, ok bool, err error) {
	s = strings.TrimSpace(s)
	host, port := "", ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return h, true, fmt.Errorf("%q: no closing ]", s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if !strings.HasPrefix(port, ":") {
				return h, true, fmt.Errorf("%q: want [HOST] or [HOST]:PORT", s)
			}
			port = port[1:]
		}
	case strings.Contains(s, "@"):
		return h, false, nil
	default:
		if a, err := netip.ParseAddr(s); err == nil {
			return HostTarget{Host: a.String()}, true, nil
		}
		hp, pp, err := net.SplitHostPort(s)
		if err != nil {
			return h, false, nil // no port: a domain
		}
		host, port = hp, pp
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return h, true, fmt.Errorf("%q: port %q: want 1-65535", s, port)
		}
		h.Port = n
	}
	if a, err := netip.ParseAddr(strings.TrimPrefix(host, "IPv6:")); err == nil {
		h.Host = a.String()
		return h, true, nil
	}
	if h.Host, err = address.CanonicalDomain(host); err != nil {
		return h, true, fmt.Errorf("%q: %v", s, err)
	}
	return h, true, nil
}

// probeHost probes one server: no MX, MTA-STS or TLS-RPT lookup (they
// belong to a recipient domain), graded by the what-if options or the default
// requirement, since no policy entry names a server.
func (p *Prober) probeHost(ctx context.Context, rep *Report, ht HostTarget) *Report {
	rep.Target, rep.Domain = ht.Key(), ""
	req := p.requirement(rep, "")
	port := ht.Port
	if port == 0 {
		port = p.cfg.Port
	}
	host := mx.Host{Name: ht.Host}
	if a, err := netip.ParseAddr(ht.Host); err == nil {
		host.Addrs = []netip.Addr{a}
	} else {
		// Canonical and AD too: the host's own address records decide
		// whether its TLSA records are asked (dane.Lookup).
		host = p.cfg.Resolver.LookupHost(ctx, ht.Host)
	}
	if host.Err != nil {
		rep.Error = host.Err.Error()
		rep.MX.Error = host.Err.Error()
		if mx.IsTemporary(host.Err) && !errors.Is(host.Err, mx.ErrNoAddress) {
			rep.Verdict, rep.Summary = VerdictDefer, "defer: temporary DNS failure: "+host.Err.Error()
		} else {
			rep.Verdict, rep.Summary = VerdictNoMail, "bounce: "+host.Err.Error()
		}
		return rep
	}
	p.probeHosts(ctx, rep, []mx.Host{host}, true, port, req)
	p.verdict(rep, req)
	return rep
}

// NormalizeTarget validates a probe target of any form and returns its
// canonical spelling: a domain or address (MX walk), or a single host.
func NormalizeTarget(s string) (string, error) {
	if ht, ok, err := ParseHostTarget(s); ok || err != nil {
		return ht.Key(), err
	}
	t, err := ParseTarget(s)
	if err != nil {
		return "", err
	}
	return t.Key(), nil
}
