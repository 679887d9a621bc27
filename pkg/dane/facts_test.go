package dane

import (
	"testing"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// What a host's DANE state means for the decision (RFC 7672 §2.2), the
// same for the relay's courier and the probe.
func TestFacts(t *testing.T) {
	failed := &mx.Error{Step: "TLSA", Name: "_25._tcp.mx.p.test", Rcode: 2, Temporary: true}
	for _, c := range []struct {
		h       Host
		want    policy.DANEState
		wantErr string
	}{
		{Host{State: StateNone, Reason: "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)"}, policy.DANENone, ""},
		{Host{State: StateUsable}, policy.DANEUsable, ""},
		{Host{State: StateUnusable}, policy.DANEUnusable, ""},
		{Host{State: StateFailed, Err: failed, Reason: "DANE: …"}, policy.DANEFailed, failed.Error()},
	} {
		f := c.h.Facts("mx.p.test")
		if f.Name != "mx.p.test" || f.DANE != c.want || f.DANEError != c.wantErr {
			t.Errorf("%s: %+v, want %q %q", c.h.State, f, c.want, c.wantErr)
		}
	}
}
