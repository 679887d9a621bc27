package policy

import (
	"strings"
	"testing"
)

// TestRouteRoundTrip: every accepted spelling of on-fail=route and
// verify=dane is written back in one canonical form that parses to the
// same options.
func TestRouteRoundTrip(t *testing.T) {
	cases := []struct {
		line, canonical string
		host            string
		port            uint16
		dial            string
	}{
		{"p.example on-fail=route:gw.example", "p.example on-fail=route:gw.example", "gw.example", 25, "gw.example:25"},
		{"p.example on-fail=route:GW.Example.:25", "p.example on-fail=route:gw.example", "gw.example", 25, "gw.example:25"},
		{"p.example on-fail=route:gw.example:2525", "p.example on-fail=route:gw.example:2525", "gw.example", 2525, "gw.example:2525"},
		{"p.example on-fail=route:bücher.example", "p.example on-fail=route:xn--bcher-kva.example", "xn--bcher-kva.example", 25, "xn--bcher-kva.example:25"},
		{"p.example on-fail=route:[192.0.2.7]", "p.example on-fail=route:[192.0.2.7]", "[192.0.2.7]", 25, "192.0.2.7:25"},
		{"p.example on-fail=route:[192.0.2.7]:587", "p.example on-fail=route:[192.0.2.7]:587", "[192.0.2.7]", 587, "192.0.2.7:587"},
		{"p.example on-fail=route:[IPv6:2001:DB8::7]:2525", "p.example on-fail=route:[2001:db8::7]:2525", "[2001:db8::7]", 2525, "[2001:db8::7]:2525"},
		{"p.example on-fail=route:[::ffff:192.0.2.7]", "p.example on-fail=route:[192.0.2.7]", "[192.0.2.7]", 25, "192.0.2.7:25"},
		{"p.example verify=dane", "p.example verify=dane", "", 0, ""},
		{"p.example verify=dane min-tls=1.2 on-fail=route:gw.example", "p.example min-tls=1.2 verify=dane on-fail=route:gw.example", "gw.example", 25, "gw.example:25"},
		{"p.example on-fail=route:gw.example on-fail=defer", "", "", 0, ""}, // given twice: refused
	}
	for _, c := range cases {
		f, err := Parse("p", []byte(c.line+"\n"))
		if c.canonical == "" {
			if err == nil {
				t.Errorf("%q: parsed, want an error", c.line)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		e := f.Entries()[0]
		if got := strings.Join(strings.Fields(e.String()), " "); got != c.canonical {
			t.Errorf("%q written as %q, want %q", c.line, got, c.canonical)
		}
		if e.Options.Route.Host != c.host || (c.host != "" && e.Options.Route.Port != c.port) {
			t.Errorf("%q: route %+v, want %s port %d", c.line, e.Options.Route, c.host, c.port)
		}
		if c.host != "" && (e.Options.OnFail != OnFailRoute || e.Options.Route.Address() != c.dial) {
			t.Errorf("%q: on-fail %v, address %q; want route, %q", c.line, e.Options.OnFail, e.Options.Route.Address(), c.dial)
		}
		again, err := Parse("again", []byte(e.String()+"\n"))
		if err != nil || again.Entries()[0].Options != e.Options {
			t.Errorf("%q: canonical form does not parse back to the same options (%v)", c.line, err)
		}
	}
}
