package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultRoutePort is the port of a route given without one: SMTP relay
// (RFC 5321 §4.5.4.2 names 25 for MTA-to-MTA transfer).
const DefaultRoutePort = 25

// Route is a hand-off gateway: where on-fail=route:HOST[:PORT] sends mail
// that no MX could take with the required TLS (an S/MIME gateway, a
// secure-mail portal). The courier reaches it over TLS with a verified
// certificate, never in clear.
type Route struct {
	// Host is a host name in lower-case A-label form, or an IP address
	// literal in brackets ("[192.0.2.7]", "[2001:db8::7]").
	Host string
	Port uint16
}

// IsZero reports whether r names no route.
func (r Route) IsZero() bool { return r.Host == "" }

// String writes the route as a policy file does: HOST, or HOST:PORT when
// the port is not 25.
func (r Route) String() string {
	if r.Port == DefaultRoutePort || r.Port == 0 {
		return r.Host
	}
	return r.Host + ":" + strconv.Itoa(int(r.Port))
}

// Literal reports whether Host is an IP address literal.
func (r Route) Literal() bool { return strings.HasPrefix(r.Host, "[") }

// DialHost is the host to resolve or dial: Host without brackets.
func (r Route) DialHost() string { return strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]") }

// Address is host:port for net.Dial (a host name still to be resolved).
func (r Route) Address() string {
	return net.JoinHostPort(r.DialHost(), strconv.Itoa(int(r.Port)))
}

// ParseRoute reads HOST[:PORT]: a host name, or an IPv4 or IPv6 address
// in brackets (RFC 5321 §4.1.3; "[IPv6:…]" is accepted too), then an
// optional port 1–65535 (default 25).
func ParseRoute(s string) (Route, error) {
	if s == "" {
		return Route{}, errors.New("want route:HOST[:PORT], HOST a host name or [IP]")
	}
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Route{}, fmt.Errorf("address literal %q has no closing ]", s)
		}
		lit := strings.TrimPrefix(s[1:end], "IPv6:")
		ip, err := netip.ParseAddr(lit)
		if err != nil || ip.Zone() != "" {
			return Route{}, fmt.Errorf("%q is not an IP address", s[1:end])
		}
		host = "[" + ip.Unmap().String() + "]"
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return Route{}, fmt.Errorf("%q after the address literal: want :PORT", rest)
			}
			port = p
		}
	} else {
		name, p, hasPort := strings.Cut(s, ":")
		if hasPort {
			port = p
			if port == "" || strings.Contains(port, ":") {
				return Route{}, fmt.Errorf("port %q: want a number from 1 to 65535 (an IPv6 address goes in brackets: [2001:db8::1])", port)
			}
		}
		if _, err := netip.ParseAddr(name); err == nil {
			return Route{}, fmt.Errorf("IP address %s must be written in brackets: [%s]", name, name)
		}
		d, err := NormalizeDomain(name)
		if err != nil {
			return Route{}, fmt.Errorf("bad host %q: %v", name, err)
		}
		host = d
	}
	r := Route{Host: host, Port: DefaultRoutePort}
	if port != "" {
		n, err := strconv.Atoi(port)
		// Digits only, no sign or leading zero: one spelling per value.
		if err != nil || n < 1 || n > 65535 || port[0] < '1' || port[0] > '9' {
			return Route{}, fmt.Errorf("port %q: want a number from 1 to 65535", port)
		}
		r.Port = uint16(n)
	}
	return r, nil
}
