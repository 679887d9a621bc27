package probe

import (
	"testing"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// What pkg/dane's state of a host means for the decision (RFC 7672
// §2.2); the lookup itself is pkg/dane's (its tests, and the probe's
// real-peer tests).
func TestHopFacts(t *testing.T) {
	failed := &mx.Error{Step: "TLSA", Name: "_25._tcp.mx.p.test", Rcode: 2, Temporary: true}
	for _, c := range []struct {
		h       dane.Host
		want    policy.DANEState
		wantErr string
	}{
		{dane.Host{State: dane.StateNone, Reason: "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)"}, policy.DANENone, ""},
		{dane.Host{State: dane.StateUsable}, policy.DANEUsable, ""},
		{dane.Host{State: dane.StateUnusable}, policy.DANEUnusable, ""},
		{dane.Host{State: dane.StateFailed, Err: failed, Reason: "DANE: …"}, policy.DANEFailed, failed.Error()},
	} {
		f := hopFacts("mx.p.test", c.h)
		if f.Name != "mx.p.test" || f.DANE != c.want || f.DANEError != c.wantErr {
			t.Errorf("%s: %+v, want %q %q", c.h.State, f, c.want, c.wantErr)
		}
	}
}
