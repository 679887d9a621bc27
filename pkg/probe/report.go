package probe

import (
	"time"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/policy"
)

// The JSON form of these types is documented in docs/schemas/probe.schema.json and is a
// stable interface: add fields, never rename or remove them.

// Report is everything the probe learnt about one target, and the
// verdict: what the relay would do with mail for it today.
type Report struct {
	Target string `json:"target"` // as given, normalised
	Domain string `json:"domain"` // the domain whose MX hosts were probed
	// Requirement is what the target was graded against.
	Requirement RequirementInfo `json:"requirement"`
	// Pass: the relay would deliver over a connection that meets the
	// requirement.
	Pass bool `json:"pass"`
	// Verdict is one of VerdictDeliver, VerdictBounce, VerdictDefer,
	// VerdictNoMail.
	Verdict string `json:"verdict"`
	// Summary says the verdict in a sentence.
	Summary string `json:"summary"`
	// Via is the hop the relay would deliver through (Pass only).
	Via *HopRef `json:"via,omitempty"`
	// Diagnostic is the relay's exact bounce text for the best attempt
	// when no hop meets the requirement.
	Diagnostic string `json:"diagnostic,omitempty"`
	// Route is where the relay would hand the mail off (VerdictHandOff):
	// the entry's on-fail=route, HOST or HOST:PORT.
	Route string   `json:"route,omitempty"`
	Risks []string `json:"risks"`
	// Error is a failure that stopped the probe before any host was
	// tried (DNS), "" otherwise.
	Error    string        `json:"error,omitempty"`
	MX       MXInfo        `json:"mx"`
	MTASTS   MTASTSInfo    `json:"mta_sts"`
	TLSRPT   TLSRPTInfo    `json:"tls_rpt"`
	Hosts    []HostReport  `json:"hosts"`
	Duration time.Duration `json:"duration_ns"`
}

// Verdicts.
const (
	VerdictDeliver = "deliver" // over a hop that meets the requirement
	VerdictBounce  = "bounce"  // no hop meets it; on-fail=bounce
	VerdictDefer   = "defer"   // no hop reachable, a temporary DNS failure, or on-fail=defer
	VerdictNoMail  = "no-mail" // null MX, or the domain does not exist
	// VerdictTesting: a mode=testing entry that no hop meets; the relay
	// delivers opportunistically and records a would-be bounce.
	VerdictTesting = "deliver-testing"
	// VerdictHandOff: no hop meets it and the entry has on-fail=route;
	// the relay hands the mail to that gateway (Report.Route).
	VerdictHandOff = "hand-off"
)

// RequirementInfo says what was required and why.
type RequirementInfo struct {
	// Source: "flag" (--require-bits), "policy" (an entry), or "default"
	// (no entry, or a mode=off one: graded as if listed with defaults).
	Source string              `json:"source"`
	Entry  string              `json:"entry,omitempty"` // the policy entry's target
	Line   int                 `json:"line,omitempty"`  // its line
	Bits   int                 `json:"bits"`
	MinTLS policy.VersionLabel `json:"min_tls"` // "1.2" in JSON
	Verify string              `json:"verify"`
	Mode   string              `json:"mode"`
	OnFail string              `json:"on_fail"`
	// Sources names every source of the combined requirement: the list
	// entry, the domain's MTA-STS policy, each MX host's DANE state;
	// those ignored (published policies off) say why.
	Sources []policy.Source `json:"sources"`
}

// HopRef names one MX host address.
type HopRef struct {
	Host string `json:"host"`
	Addr string `json:"addr"`
}

// MXInfo is the outcome of the MX step.
type MXInfo struct {
	Implicit bool   `json:"implicit"` // no MX: the domain's own address (RFC 5321 §5.1)
	NullMX   bool   `json:"null_mx"`  // RFC 7505
	Secure   bool   `json:"dnssec"`   // trusted AD bit on the MX answer
	Error    string `json:"error,omitempty"`
}

// MTASTSInfo is the domain's MTA-STS state (RFC 8461).
type MTASTSInfo struct {
	Present bool           `json:"present"` // a valid _mta-sts TXT record
	ID      string         `json:"id,omitempty"`
	Policy  *mtasts.Policy `json:"policy,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// TLSRPTInfo is the domain's TLS reporting record (RFC 8460).
type TLSRPTInfo struct {
	Records []string `json:"records"`
	Error   string   `json:"error,omitempty"`
}

// HostReport is one MX host with its sessions.
type HostReport struct {
	Name       string `json:"name"`
	Preference uint16 `json:"preference"`
	// Error: the host's addresses could not be found.
	Error string `json:"error,omitempty"`
	// MTASTSMatch: the host matches the MTA-STS mx patterns; nil when
	// there is no policy.
	MTASTSMatch *bool      `json:"mta_sts_match,omitempty"`
	TLSA        TLSAInfo   `json:"tlsa"`
	Attempts    []*Attempt `json:"attempts"`

	dane policy.DANEState // what the TLSA answer means for the requirement
}

// TLSAInfo is the host's DANE state as pkg/dane.Lookup finds it, the
// relay's lookup (RFC 7672 §2.2): TLSA is asked only when the MX RRset
// and the host's address records are DNSSEC-authentic, at the
// CNAME-expanded name first.
type TLSAInfo struct {
	// Name is the TLSA owner name, "_25._tcp.<host>" (or at the
	// CNAME-expanded name when the records were found there).
	Name string `json:"name"`
	// Records: the authentic TLSA records (state usable or unusable).
	Records []string `json:"records"`
	// AD and Secure: the records are DNSSEC-authentic (a trusted AD bit);
	// both equal, kept for compatibility.
	AD     bool   `json:"ad"`
	Secure bool   `json:"secure"`
	Error  string `json:"error,omitempty"` // the failed lookup (state failed)
	// State: none, usable, unusable or failed (dane.State).
	State string `json:"state"`
	// Reason says why DANE does not apply (state none), or the DANE
	// diagnostic (unusable, failed).
	Reason string `json:"reason,omitempty"`
	// Names are the names a DANE-TA leaf may carry: the MX host and its
	// CNAME-expanded form (RFC 7672 §3.2.2).
	Names []string `json:"names,omitempty"`
}

// tlsaInfo is h as the report shows it.
func tlsaInfo(h dane.Host) TLSAInfo {
	t := TLSAInfo{Name: h.Owner, Records: []string{}, State: string(h.State), Reason: h.Reason, Names: h.Names}
	for _, r := range h.Records {
		t.Records = append(t.Records, r.String())
	}
	t.AD = h.State == dane.StateUsable || h.State == dane.StateUnusable
	t.Secure = t.AD
	if h.Err != nil {
		t.Error = h.Err.Error()
	}
	return t
}

// Attempt is one SMTP session to one address of an MX host.
type Attempt struct {
	Addr string `json:"addr"` // ip:port
	// Connected: the banner was 220 and EHLO answered; Error says why not.
	Connected  bool                `json:"connected"`
	Banner     string              `json:"banner,omitempty"`
	Extensions []string            `json:"extensions,omitempty"` // from the last EHLO
	STARTTLS   bool                `json:"starttls"`             // offered before TLS
	TLS        bool                `json:"tls"`
	Version    policy.VersionLabel `json:"tls_version,omitempty"` // "1.3" in JSON
	Suite      string              `json:"cipher,omitempty"`
	Bits       int                 `json:"bits"`
	Failure    string              `json:"tls_failure,omitempty"` // why no TLS
	Cert       *CertInfo           `json:"certificate,omitempty"`
	Verified   bool                `json:"verified"` // PKIX chain and name, as the relay checks
	DANE       DANEResult          `json:"dane,omitempty"`
	// Auth is how the session authenticated the peer (TLS only): dane
	// (a usable TLSA record matched), pkix (chain and MX name) or none.
	Auth string `json:"auth,omitempty"`
	// TLSA is the record that matched ("3 1 1 ab12…"), when Auth is dane.
	TLSA       string            `json:"tlsa,omitempty"`
	Met        bool              `json:"met"`
	Diagnostic string            `json:"diagnostic,omitempty"` // the relay's words when not met
	FailedBy   string            `json:"failed_by,omitempty"`  // the source whose demand was not met: list, dane, mta-sts
	Error      string            `json:"error,omitempty"`
	Timings    map[string]Millis `json:"timings_ms"`
	// Deep holds the result of Config.Deep for this address, if set.
	Deep any `json:"deep,omitempty"`

	graded  bool           // a session reached the TLS decision, so Met means something
	verdict policy.Verdict // policy.Evaluate's, when graded
}

// CertInfo describes the peer's leaf and what the checks found.
type CertInfo struct {
	Subject       string    `json:"subject"`
	Issuer        string    `json:"issuer"`
	SANs          []string  `json:"sans"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
	ChainLength   int       `json:"chain_length"`
	ChainVerified bool      `json:"chain_verified"`
	NameMatched   bool      `json:"name_matched"`
	VerifyError   string    `json:"verify_error,omitempty"`
}

// Millis is a duration rendered as fractional milliseconds in JSON.
type Millis float64

func millis(d time.Duration) Millis { return Millis(float64(d.Microseconds()) / 1000) }

// requirement is the policy as the decision takes it (pkg/policy), nil
// when the domain has none.
func (m MTASTSInfo) requirement() *policy.STS {
	if m.Policy == nil {
		return nil
	}
	return &policy.STS{ID: m.ID, Mode: policy.STSMode(m.Policy.Mode), MX: m.Policy.MX}
}
