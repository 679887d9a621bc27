// Package tlsrpt builds SMTP TLS Reporting aggregate reports (RFC 8460
// §4) from the relay's audit log: one report per policy domain (the
// recipient domain) and UTC day.
//
// The audit log has one record per recipient per attempt; RFC 8460
// counts sessions. A session is the records of one relay's log that
// share (queue_id, attempt, mx, ip): the recipients of one message
// delivered together in one connection. A session failed when one of
// its records carries a result_type; it succeeded when TLS was
// negotiated and none does. A delivery in clear text with no
// result_type recorded counts as failed with starttls-not-supported
// (RFC 8460 §4.3.1: the recipient's MX did not offer STARTTLS, or it
// failed). A record with neither TLS nor a result type nor a delivery
// (connection refused, a 4xx before STARTTLS) is no TLS session and is
// not counted. hop-failed records (an MX host the attempt passed over
// before another carried the mail, or besides the one its outcome
// names) are sessions of their own: RFC 8460 §4 counts every session.
package tlsrpt

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	"github.com/smgctl/smgctl/pkg/audit/report"
	"github.com/smgctl/smgctl/pkg/policy"
)

// Report is an RFC 8460 §4.4 aggregate report.
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the report's period (RFC 3339, UTC).
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyResult is one policy's sessions.
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy names the published policy the sessions were held to.
type Policy struct {
	Type    string   `json:"policy-type"`
	Strings []string `json:"policy-string,omitempty"`
	Domain  string   `json:"policy-domain"`
	MXHosts []string `json:"mx-host,omitempty"`
}

// Summary counts sessions.
type Summary struct {
	Successful int `json:"total-successful-session-count"`
	Failed     int `json:"total-failure-session-count"`
}

// FailureDetail counts the failed sessions of one kind to one MX address.
type FailureDetail struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int    `json:"failed-session-count"`
	// FailureReasonCode carries the relay's diagnostic (RFC 8460 §4.4:
	// free text to help the receiver find the cause).
	FailureReasonCode string `json:"failure-reason-code,omitempty"`
}

// Options choose the day and domain and name the submitter.
type Options struct {
	// Day is any time on the UTC day reported.
	Day time.Time
	// Domain, when set, limits the reports to that policy domain.
	Domain string
	// Organization and Contact fill organization-name and contact-info.
	Organization string
	Contact      string
	// Submitter is the host name the report-id is made unique with.
	Submitter string
}

// ReportMessageIDPrefix starts the Message-ID of every report message
// the relay sends (pkg/relay/tlsrpt). Their sessions are left out of
// the reports: RFC 8460 §5.3 asks that a report's own delivery not be
// reported, so a failing rua cannot feed itself.
const ReportMessageIDPrefix = "<tlsrpt."

// Submitter is the reports' submitter host name, organization-name and
// contact-info from the relay's settings: hostname ("" = the machine's
// name), org and contact ("" = the host name, postmaster@ the host name).
func Submitter(hostname, org, contact string) (host, organization, contactInfo string) {
	host = hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	if org == "" {
		org = host
	}
	if contact == "" {
		contact = "postmaster@" + host
	}
	return host, org, contact
}

// DayStart is midnight UTC of t's UTC day.
func DayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// ReportID is the report-id of the report on domain for the day
// starting at day: the same every time it is built, so a resent report
// can be recognised by its receiver.
func ReportID(day time.Time, domain, submitter string) string {
	return fmt.Sprintf("%s_%s@%s", day.UTC().Format("2006-01-02"), domain, submitter)
}

// sessionKey identifies one SMTP session in the log.
type sessionKey struct {
	log          int
	queueID      string
	attempt      int
	mx, ip       string
	policyDigest string
}

type session struct {
	domain       string
	policy       Policy
	result       string
	reason       string
	sendingIP    string
	mx, ip       string
	success, bad bool
}

// counted says whether a record is a delivery attempt's outcome at one
// of the policy domain's MX hosts. A record with Route came from the
// entry's hand-off route, the operator's own gateway: not a session with
// the partner (whose MX hosts' sessions are the hop-failed records), and
// its name is not the partner's to read.
func counted(rec *audit.Record) bool {
	switch rec.Event {
	case audit.Delivered, audit.WouldBounce, audit.Deferred, audit.Bounced, audit.Dropped, audit.HopFailed:
		return rec.Route == "" && !strings.HasPrefix(rec.MessageID, ReportMessageIDPrefix)
	}
	return false
}

// Build reads the logs (several relays' logs count their sessions apart)
// and returns one report per policy domain that had sessions on the day,
// sorted by domain.
func Build(ctx context.Context, logs []logset.Log, opt Options) ([]Report, error) {
	if opt.Domain != "" {
		d, err := policy.NormalizeDomain(opt.Domain)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", opt.Domain, err)
		}
		opt.Domain = d
	}
	start := DayStart(opt.Day)
	end := start.Add(24 * time.Hour)
	sessions := map[sessionKey]*session{}
	var order []sessionKey
	var dec logset.Decoder
	for li, l := range logs {
		err := logset.Lines(ctx, l.Files, func(_ string, _ int, line []byte) error {
			var rec audit.Record
			if dec.Decode(line, &rec) != nil || audit.IsMark(rec.Event) || !counted(&rec) {
				return nil // unreadable lines are audit verify's business
			}
			if rec.Time.Before(start) || !rec.Time.Before(end) {
				return nil
			}
			domain := report.RecipientDomain(rec.Recipient)
			if opt.Domain != "" && domain != opt.Domain {
				return nil
			}
			pol := policyOf(&rec, domain)
			k := sessionKey{log: li, queueID: rec.QueueID, attempt: rec.Attempt, mx: rec.MX, ip: rec.IP,
				policyDigest: strings.Join([]string{pol.Type, strings.Join(pol.Strings, "\n"), strings.Join(pol.MXHosts, " "), domain}, "\x00")}
			s := sessions[k]
			if s == nil {
				s = &session{domain: domain, policy: pol, mx: rec.MX, ip: rec.IP}
				sessions[k] = s
				order = append(order, k)
			}
			s.add(&rec)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	type policyAgg struct {
		res     PolicyResult
		details map[FailureDetail]int
		mx      map[string]bool
	}
	byDomain := map[string]map[string]*policyAgg{}
	for _, k := range order {
		s := sessions[k]
		if !s.success && !s.bad {
			continue
		}
		pd := byDomain[s.domain]
		if pd == nil {
			pd = map[string]*policyAgg{}
			byDomain[s.domain] = pd
		}
		pa := pd[k.policyDigest]
		if pa == nil {
			pa = &policyAgg{res: PolicyResult{Policy: s.policy}, details: map[FailureDetail]int{}, mx: map[string]bool{}}
			pd[k.policyDigest] = pa
		}
		if s.mx != "" {
			pa.mx[s.mx] = true
		}
		if s.success {
			pa.res.Summary.Successful++
			continue
		}
		pa.res.Summary.Failed++
		pa.details[FailureDetail{ResultType: s.result, SendingMTAIP: s.sendingIP, ReceivingMXHostname: s.mx,
			ReceivingIP: s.ip, FailureReasonCode: s.reason}]++
	}
	var out []Report
	for _, domain := range slices.Sorted(maps.Keys(byDomain)) {
		r := Report{
			OrganizationName: opt.Organization,
			DateRange:        DateRange{Start: start, End: end},
			ContactInfo:      opt.Contact,
			ReportID:         ReportID(start, domain, opt.Submitter),
		}
		for _, pa := range byDomain[domain] {
			res := pa.res
			if res.Policy.Type != audit.PolicySTS {
				// mx-host of an sts policy is its mx patterns; for the
				// others, the MX hosts the sessions went to.
				res.Policy.MXHosts = slices.Sorted(maps.Keys(pa.mx))
			}
			for d, n := range pa.details {
				d.FailedSessionCount = n
				res.FailureDetails = append(res.FailureDetails, d)
			}
			slices.SortFunc(res.FailureDetails, func(a, b FailureDetail) int {
				return cmp.Or(cmp.Compare(a.ResultType, b.ResultType), cmp.Compare(a.ReceivingMXHostname, b.ReceivingMXHostname),
					cmp.Compare(a.ReceivingIP, b.ReceivingIP), cmp.Compare(a.SendingMTAIP, b.SendingMTAIP), cmp.Compare(a.FailureReasonCode, b.FailureReasonCode))
			})
			r.Policies = append(r.Policies, res)
		}
		slices.SortFunc(r.Policies, func(a, b PolicyResult) int {
			return cmp.Or(cmp.Compare(a.Policy.Type, b.Policy.Type), slices.Compare(a.Policy.Strings, b.Policy.Strings))
		})
		out = append(out, r)
	}
	return out, nil
}

// policyOf is the TLS-RPT policy a record was held to; records written
// before the relay recorded it, or without a published policy, are
// no-policy-found.
func policyOf(rec *audit.Record, domain string) Policy {
	p := Policy{Type: rec.PolicyType, Domain: domain}
	switch rec.PolicyType {
	case audit.PolicySTS:
		p.Strings = rec.PolicyStrings
		p.MXHosts = rec.STSMX
	case audit.PolicyTLSA:
		// An RRset has no order (RFC 2181 §5) and resolvers rotate it:
		// sessions held to the same TLSA records are one policy.
		p.Strings = slices.Sorted(slices.Values(rec.PolicyStrings))
	default:
		p.Type = audit.PolicyNotFound
	}
	return p
}

func (s *session) add(rec *audit.Record) {
	if s.bad {
		return // the session's failure is known
	}
	if rec.SendingIP != "" {
		s.sendingIP = rec.SendingIP
	}
	switch {
	case rec.ResultType != "":
		s.bad, s.success = true, false
		s.result = rec.ResultType
		s.reason = rec.Diagnostic
	case !rec.TLS && rec.MX != "" && (rec.Event == audit.Delivered || rec.Event == audit.WouldBounce):
		s.bad, s.success = true, false
		s.result = audit.ResultSTARTTLSNotSupported
		s.reason = rec.Diagnostic
	case rec.TLS:
		s.success = true
	}
}
