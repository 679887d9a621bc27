// Package hops reads the Received: chain of a message and grades each hop
// for TLS (SPEC §3 "probe hops", B8: every hop of the partner's inbound
// path matters, not only its MX).
//
// It understands what Postfix (smtpd_tls_received_header), Exim (old and
// 4.92+ received_header_text), Sendmail, Microsoft 365/Exchange and Gmail
// write, and grades each hop with policy.Evaluate — the same judgment the
// relay and the probe use — from an Outcome built out of the header:
//
//   - TLS is true when the hop shows TLS: details in a comment, or a
//     "with" keyword that means TLS (RFC 3848 ESMTPS/ESMTPSA, RFC 6531
//     UTF8SMTPS/UTF8SMTPSA, Gmail's SMTPS, Exchange's "(TLS)").
//   - The strength is the suite's (pkg/policy's table, by IANA or OpenSSL
//     name) and, when the header also states bits, the lower of the two.
//     With only bits, a representative suite of that strength stands in
//     (see suiteWithBits). With neither — TLS without details — the
//     strength is unknown and judged as 0 bits: fail closed.
//   - The version is the written one; a TLS 1.3 suite implies TLS 1.3.
//     An unknown version fails any min-tls requirement.
//
// Received: headers are written by each receiving server about its
// client, newest on top, and nothing stops a sender from writing false
// ones below its own. Only headers written by the recipient's own servers
// are trustworthy; see Trace.FirstTrusted for the heuristic.
package hops

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Hop is one Received: header: one server handing the message to the next.
type Hop struct {
	// Index counts hops in the order the message travelled: 1 is the
	// oldest (lowest) Received: header.
	Index int
	// Raw is the unfolded header value with white space collapsed.
	Raw string

	From     string // as written after "from": usually the HELO name
	FromRDNS string // the receiver's reverse-DNS name for the client, if written
	FromIP   string
	Helo     string // an explicit helo=/HELO, if written
	By       string
	Via      string
	With     string // protocol as written: "ESMTPS", "esmtpsa", "Microsoft SMTP Server", "mapi"
	ID       string
	For      string
	Date     time.Time // zero when missing or unreadable
	DateRaw  string
	// MTA that wrote the header, when recognisable: postfix, exim,
	// sendmail, exchange, gmail, qmail; "" otherwise.
	MTA string

	TLS           bool
	TLSVersion    uint16 // 0 when not written
	TLSVersionRaw string
	Cipher        string // as written
	CipherID      uint16
	CipherKnown   bool
	// HeaderBits are the bits the header states; -1 when it states none.
	HeaderBits int
	// Bits is the strength the hop is judged by; -1 when unknown (TLS
	// without details), 0 without TLS.
	Bits   int
	Verify string // Sendmail/Gmail verify=, as written

	// Internal marks a hand-off inside one system rather than a network
	// hop; InternalReason says why. Internal hops are shown, not graded.
	Internal       bool
	InternalReason string
	// Trusted marks headers written by the recipient's own servers (see
	// Trace.FirstTrusted).
	Trusted bool
	// Graded is true for every non-internal hop; Verdict is then
	// policy.Evaluate's judgment.
	Graded  bool
	Verdict policy.Verdict
}

// Outcome is the policy.Outcome this hop's header describes.
func (h Hop) Outcome() policy.Outcome {
	if !h.TLS {
		return policy.Outcome{Failure: "no TLS recorded in Received: header"}
	}
	out := policy.Outcome{TLS: true, Version: h.TLSVersion}
	switch {
	case h.CipherKnown && suiteBitsOf(h.CipherID) == h.Bits:
		out.CipherSuite = h.CipherID
	case h.Bits >= 0:
		out.CipherSuite = suiteWithBits(h.Bits)
	default:
		// Unknown strength: 0 bits (TLS_NULL_WITH_NULL_NULL) so the
		// requirement is not met — when unsure, it is not met.
		out.CipherSuite = 0x0000
	}
	return out
}

// Passed reports whether the hop needs no attention: internal, or graded
// and met.
func (h Hop) Passed() bool { return !h.Graded || h.Verdict.Met }

// Note explains the hop's grade in words, for tables and JSON.
func (h Hop) Note() string {
	switch {
	case h.Internal:
		return "internal: " + h.InternalReason
	case !h.TLS:
		return "no TLS"
	case h.Bits < 0:
		return "TLS, cipher not recorded: strength unknown, judged as 0 bits"
	case !h.CipherKnown && h.Cipher != "":
		return "cipher name unknown; judged by the " + fmt.Sprint(h.HeaderBits) + " bits the header states"
	}
	return ""
}

func suiteBitsOf(id uint16) int { return policy.CipherBits(id) }

func isTLS13(id uint16) bool {
	s, ok := policy.LookupSuite(id)
	return ok && s.TLS13
}

// Trace is a message's Received: chain, graded.
type Trace struct {
	// Hops, oldest first.
	Hops []Hop
	// RecipientDomain is where the message was addressed (Delivered-To,
	// X-Original-To, a Received: "for", or a single To:); "" if unknown.
	RecipientDomain string
	// FirstTrusted is the Index of the oldest hop written by the
	// recipient's servers; hops below it could have been forged by anyone
	// on the path. 0 when there are no hops.
	FirstTrusted int
	Requirement  policy.Requirement
	// Skipped counts header lines that could not be read as headers.
	Skipped int
}

// Failed returns the graded hops that did not meet the requirement.
func (t *Trace) Failed() []Hop {
	var out []Hop
	for _, h := range t.Hops {
		if !h.Passed() {
			out = append(out, h)
		}
	}
	return out
}

// ForgeryWarning is the plain statement every report prints.
func (t *Trace) ForgeryWarning() string {
	if t.FirstTrusted <= 1 {
		return "Received: headers are written by each server about the previous one; only hops written by the recipient's own servers can be trusted."
	}
	if t.FirstTrusted == 2 {
		return "Hop 1 was written before the message reached the recipient's servers (first trusted hop: 2); it can be forged by a sender."
	}
	return fmt.Sprintf("Hops 1-%d were written before the message reached the recipient's servers (first trusted hop: %d); any of them can be forged by a sender.", t.FirstTrusted-1, t.FirstTrusted)
}

// Limits on input, so a hostile file cannot exhaust memory.
const (
	maxHeaderBytes = 8 << 20
	maxLineBytes   = 1 << 20
)

// ErrNoReceived means the message has no Received: header at all.
var ErrNoReceived = errors.New("no Received: headers in message")

// Analyze reads a message (only its header section is read) and grades
// every hop against req.
func Analyze(r io.Reader, req policy.Requirement) (*Trace, error) {
	fields, skipped, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	t := &Trace{Requirement: req, Skipped: skipped}
	var received []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "Received") {
			received = append(received, f.value)
		}
	}
	if len(received) == 0 {
		return nil, ErrNoReceived
	}
	// Headers are prepended as the message travels (RFC 5321 §4.4), so
	// the last one in the file is the first hop.
	for i := len(received) - 1; i >= 0; i-- {
		h := parseReceived(received[i])
		h.Index = len(t.Hops) + 1
		t.Hops = append(t.Hops, h)
	}
	t.RecipientDomain = recipientDomain(fields, t.Hops)
	for i := range t.Hops {
		markInternal(&t.Hops[i])
	}
	t.FirstTrusted = firstTrusted(t.Hops, t.RecipientDomain)
	for i := range t.Hops {
		h := &t.Hops[i]
		h.Trusted = h.Index >= t.FirstTrusted
		if !h.Internal {
			h.Graded = true
			h.Verdict = policy.Evaluate(req, h.Outcome())
		}
	}
	return t, nil
}

type field struct{ name, value string }

// readHeader reads the header section (RFC 5322 §2.2): up to the first
// empty line or EOF, unfolding continuation lines (§2.2.3). Lines that are
// neither a field nor a continuation (an mbox "From " line, garbage) are
// skipped and counted. Both CRLF and bare LF line ends are accepted.
func readHeader(r io.Reader) ([]field, int, error) {
	br := bufio.NewReader(r)
	var fields []field
	skipped, total := 0, 0
	for {
		line, err := readLine(br)
		total += len(line)
		if total > maxHeaderBytes {
			return nil, 0, fmt.Errorf("header section larger than %d bytes", maxHeaderBytes)
		}
		if err != nil && err != io.EOF {
			return nil, 0, err
		}
		if len(line) == 0 && err == nil {
			break // end of header section
		}
		if len(line) > 0 {
			switch {
			case line[0] == ' ' || line[0] == '\t':
				if n := len(fields); n > 0 {
					fields[n-1].value += string(line)
				} else {
					skipped++
				}
			default:
				name, value, ok := bytes.Cut(line, []byte{':'})
				if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
					skipped++
					break
				}
				fields = append(fields, field{string(name), string(value)})
			}
		}
		if err == io.EOF {
			break
		}
	}
	return fields, skipped, nil
}

// readLine returns one line without its line end, truncating lines over
// maxLineBytes (the rest is discarded), so the reader is total.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	truncated := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !truncated && len(out)+len(chunk) <= maxLineBytes {
			out = append(out, chunk...)
		} else {
			truncated = true
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		out = bytes.TrimRight(out, "\r\n")
		if err == io.EOF && len(out) == 0 {
			return nil, io.EOF
		}
		if err != nil && err != io.EOF {
			return out, err
		}
		if err == io.EOF {
			return out, io.EOF
		}
		return out, nil
	}
}

// recipientDomain finds where the message was addressed: Delivered-To
// and X-Original-To (written by the final MTA), then the newest
// Received: "for", then To: when it holds exactly one address.
func recipientDomain(fields []field, hops []Hop) string {
	for _, name := range []string{"Delivered-To", "X-Original-To"} {
		for _, f := range fields {
			if strings.EqualFold(f.name, name) {
				if d := domainOf(f.value); d != "" {
					return d
				}
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if d := domainOf(hops[i].For); d != "" {
			return d
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, "To") {
			if list, err := mail.ParseAddressList(f.value); err == nil && len(list) == 1 {
				return domainOf(list[0].Address)
			}
		}
	}
	return ""
}

func domainOf(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// markInternal flags hand-offs inside one system: no "from" (locally
// submitted, e.g. Postfix pickup or Gmail's "by 2002:... with SMTP"),
// local/LMTP/mapi/HTTP protocols, or a server handing to itself (same
// name, or a client at 127.0.0.1/::1) — which is how Exchange's "via Frontend
// Transport" hop between its own services looks. A Frontend Transport
// hop from another host is the one where mail entered Exchange Online
// from outside, and is graded.
func markInternal(h *Hop) {
	proto := strings.ToUpper(h.With)
	switch {
	case h.From == "" && h.FromIP == "":
		h.Internal, h.InternalReason = true, "no sending host (local submission)"
	case internalProtocols[proto]:
		h.Internal, h.InternalReason = true, "protocol "+h.With
	case h.By != "" && (strings.EqualFold(hostName(h.From), hostName(h.By)) || strings.EqualFold(h.FromRDNS, hostName(h.By))):
		h.Internal, h.InternalReason = true, "same host"
	case h.FromIP == "127.0.0.1" || h.FromIP == "::1":
		// A server re-injecting to itself (content filter on
		// 127.0.0.1:10025). Only the canonical loopback addresses: labs
		// and tests run whole mail systems on other 127/8 addresses.
		h.Internal, h.InternalReason = true, "loopback client"
	}
}

func hostName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// orgDomain is a host's registrable domain (public suffix + 1), "" for IP
// literals and single-label names.
// Hosted-mail providers spread one organisation over several
// registrable domains; their hops are one organisation's.
func orgDomain(host string) string {
	host = hostName(host)
	if host == "" || bracketIP(host) != "" || !strings.Contains(host, ".") {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return ""
	}
	if p, ok := providerOrgs[d]; ok {
		return p
	}
	return d
}

// providerOrgs folds the domains of the big hosted-mail providers into
// one name each: Exchange Online's servers are under outlook.com and
// office365.com, Gmail's under google.com for gmail.com mailboxes.
var providerOrgs = map[string]string{
	"outlook.com": "microsoft", "office365.com": "microsoft", "hotmail.com": "microsoft",
	"live.com": "microsoft", "microsoft.com": "microsoft",
	"google.com": "google", "gmail.com": "google", "googlemail.com": "google",
}

// firstTrusted finds the oldest hop written by the recipient's servers.
// The newest Received: header was written by whoever stored the message,
// which is the recipient's side by definition; the recipient's
// organisations are the registrable domain of the recipient address and
// of the newest named "by" host (for hosted mail: outlook.com,
// google.com). Walking down from the top, hops whose "by" host belongs to
// one of them — or has no registrable name, like Gmail's "by 2002:..."
// and internal single-label hosts — are the recipient's; the first other
// "by" ends the walk. This is a heuristic: a recipient that forwards
// through a third party is cut at the forwarder.
func firstTrusted(hops []Hop, rcptDomain string) int {
	if len(hops) == 0 {
		return 0
	}
	orgs := map[string]bool{}
	if d := orgDomain(rcptDomain); d != "" {
		orgs[d] = true
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if d := orgDomain(hops[i].By); d != "" {
			orgs[d] = true
			break
		}
	}
	first := len(hops)
	for i := len(hops) - 1; i >= 0; i-- {
		d := orgDomain(hops[i].By)
		if d != "" && !orgs[d] {
			break
		}
		first = i + 1
	}
	return first
}

// MarshalJSON writes the documented schema (docs/probe-deep-hops.md).
func (h Hop) MarshalJSON() ([]byte, error) {
	type grade struct {
		Met        bool   `json:"met"`
		Diagnostic string `json:"diagnostic,omitempty"`
		Bits       int    `json:"bits"`
	}
	var g *grade
	if h.Graded {
		g = &grade{h.Verdict.Met, h.Verdict.Diagnostic, h.Verdict.Bits}
	}
	var date *time.Time
	if !h.Date.IsZero() {
		date = &h.Date
	}
	version := ""
	if h.TLSVersion != 0 {
		version = policy.VersionNumber(policy.VersionName(h.TLSVersion))
	}
	var cipherID string
	if h.CipherKnown {
		cipherID = fmt.Sprintf("0x%04x", h.CipherID)
	}
	var hdrBits, bits *int
	if h.HeaderBits >= 0 {
		hdrBits = &h.HeaderBits
	}
	if h.Bits >= 0 {
		bits = &h.Bits
	}
	return json.Marshal(struct {
		Index          int        `json:"index"`
		From           string     `json:"from,omitempty"`
		FromRDNS       string     `json:"from_rdns,omitempty"`
		FromIP         string     `json:"from_ip,omitempty"`
		Helo           string     `json:"helo,omitempty"`
		By             string     `json:"by,omitempty"`
		Via            string     `json:"via,omitempty"`
		With           string     `json:"with,omitempty"`
		ID             string     `json:"id,omitempty"`
		For            string     `json:"for,omitempty"`
		Date           *time.Time `json:"date,omitempty"`
		DateRaw        string     `json:"date_raw,omitempty"`
		MTA            string     `json:"mta,omitempty"`
		TLS            bool       `json:"tls"`
		TLSVersion     string     `json:"tls_version,omitempty"`
		Cipher         string     `json:"cipher,omitempty"`
		CipherID       string     `json:"cipher_id,omitempty"`
		HeaderBits     *int       `json:"header_bits,omitempty"`
		Bits           *int       `json:"bits"`
		Verify         string     `json:"verify,omitempty"`
		Internal       bool       `json:"internal"`
		InternalReason string     `json:"internal_reason,omitempty"`
		Trusted        bool       `json:"trusted"`
		Grade          *grade     `json:"grade,omitempty"`
		Note           string     `json:"note,omitempty"`
		Raw            string     `json:"raw"`
	}{h.Index, h.From, h.FromRDNS, h.FromIP, h.Helo, h.By, h.Via, h.With, h.ID, h.For, date, h.DateRaw, h.MTA,
		h.TLS, version, h.Cipher, cipherID, hdrBits, bits, h.Verify, h.Internal, h.InternalReason, h.Trusted, g, h.Note(), h.Raw})
}
