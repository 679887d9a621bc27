package courier

import (
	"context"
	"testing"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// With published policies off no TLSA is asked for a domain that only
// publishes DANE, but a verify=dane list entry still gets its lookup:
// the switch must never turn a list entry into a refusal.
func TestWithDANEPublishedOff(t *testing.T) {
	f, err := policy.Parse("p", []byte("dane.test verify=dane\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol := f.Compile()
	asked := 0
	c := &SMTP{cfg: Config{MXPort: 25, DANE: func(ctx context.Context, mxAuthentic bool, h mx.Host, port int) dane.Host {
		asked++
		return dane.Host{State: dane.StateUsable, Records: []mx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}}}
	}}}
	host := &mx.Host{Name: "mx.x.test", AD: true}
	for _, tc := range []struct {
		name  string
		rcpt  string
		pub   policy.Published
		asked bool
	}{
		{"unlisted", "a@other.test", policy.Published{}, true},
		{"unlisted, published policies off", "a@other.test", policy.Published{Ignored: true}, false},
		{"verify=dane", "a@dane.test", policy.Published{}, true},
		{"verify=dane, published policies off", "a@dane.test", policy.Published{Ignored: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = 0
			req := policy.Combine(pol.Lookup(tc.rcpt).Requirement(), tc.pub)
			got := c.withDANE(context.Background(), target{name: host.Name, mx: host, mxAD: true}, req, map[string]target{})
			if (asked > 0) != tc.asked {
				t.Fatalf("TLSA asked = %v, want %v", asked > 0, tc.asked)
			}
			if tc.asked && got.facts.DANE != policy.DANEUsable {
				t.Errorf("facts %+v: want the usable state", got.facts)
			}
		})
	}
}
