package delivery

import (
	"context"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// stsInfo is what the audit needs of a domain's MTA-STS policy beyond the
// requirement: its text (TLS-RPT policy-string, RFC 8460 §4.3) and, when
// a record exists but no policy could be had, the TLS-RPT result type.
type stsInfo struct {
	lines   []string // the policy's lines, without line ends
	failure string   // mtasts.FailureFetch, FailureInvalid, FailureWebPKI
	reason  string   // why it failed, for the audit's diagnostic
}

// published joins g's list requirement with what g's domain publishes
// (MTA-STS, from the cache) and what the message asks (REQUIRETLS,
// TLS-Required: No) into the requirement the courier judges every hop
// by (policy.Combine; DANE is per hop, the courier's). With the
// published-policies setting off the MTA-STS cache is still read, so the
// audit names the policy that was ignored.
func (r *Runner) published(ctx context.Context, env *spool.Envelope, g courier.Group) (courier.Group, stsInfo) {
	pub := policy.Published{RequireTLS: env.RequireTLS, TLSRequiredNo: env.TLSRequiredNo, Ignored: r.cfg.IgnorePublished}
	var info stsInfo
	if r.cfg.MTASTS != nil && g.Refused.IsZero() && g.Domain != "" {
		// RFC 8461 §5: no policy (none published, none fetched and none
		// cached) is delivery as without MTA-STS; a cold lookup is
		// bounded by the cache's own timeout.
		res, err := r.cfg.MTASTS(ctx, g.Domain)
		switch {
		case err != nil:
			r.cfg.Log.Debug("MTA-STS: no policy for this attempt", "domain", g.Domain, "err", err)
		case res.Policy != nil:
			p := res.Policy
			pub.STS = &policy.STS{ID: res.ID, Mode: policy.STSMode(p.Mode), MX: p.MX}
			info.lines = strings.Split(strings.TrimRight(strings.ReplaceAll(p.String(), "\r\n", "\n"), "\n"), "\n")
		case res.Failure != "":
			info.failure = res.Failure
			if res.Err != nil {
				info.reason = "MTA-STS: policy of " + g.Domain + " could not be fetched: " + res.Err.Error()
			}
		}
	}
	g.Req = policy.Combine(g.Req, pub)
	return g, info
}
