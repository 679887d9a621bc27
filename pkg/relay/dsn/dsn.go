// Package dsn builds delivery status notifications: the non-delivery,
// delay and "relayed" reports the relay returns to a message's sender
// (RFC 3464, carried in a multipart/report of RFC 6522; RFC 6533's
// message/global-delivery-status for SMTPUTF8 mail).
//
// The builder is total: whatever bytes the diagnostics, addresses or the
// original headers hold, the result is a well-formed MIME message. Values
// that end up in header-like fields are made single-line and printable so a
// hostile remote reply cannot inject fields into the report.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Action is the RFC 3464 §2.3.3 action of one recipient.
type Action string

const (
	// Failed: the message could not be delivered and will not be retried.
	Failed Action = "failed"
	// Delayed: not delivered yet, still being retried.
	Delayed Action = "delayed"
	// Relayed: handed to a next hop that does not offer DSN, so no
	// further notification will come (RFC 3461 §5.2.2, RFC 3464 §2.3.3);
	// sent only when the client asked NOTIFY=SUCCESS.
	Relayed Action = "relayed"
)

// Recipient is the per-recipient part of a report.
type Recipient struct {
	Address string // the envelope recipient (Final-Recipient)
	// ORcpt is the client's ORCPT as stored, "addr-type;address" with the
	// address decoded (RFC 3461 §4.2): Original-Recipient (RFC 3464
	// §2.3.1). "" when the client sent none.
	ORcpt  string
	Action Action
	// Status is the RFC 3463 code; empty means: take it from Diagnostic's
	// enhanced status code, else from its reply code class.
	Status string
	// RemoteMTA is the host that sent the reply in Diagnostic; empty when
	// no host did: DNS, null MX, a connection failure, or the gateway's
	// own refusal (SPEC §4: Remote-MTA only for a host that replied).
	RemoteMTA string
	// Policy is set when the gateway's TLS policy refused the delivery:
	// the human part then names the entry and says the refusal was the
	// gateway's, not the partner server's.
	Policy *PolicyRefusal
	// Diagnostic is the SMTP reply (a remote's, or one of the relay's own
	// from pkg/smtpreply's codes such as EncryptionTooWeak). A Local
	// reply (no code) is reported as X-smgctl.
	Diagnostic  smtpreply.Reply
	LastAttempt time.Time
	// WillRetryUntil is reported for delayed recipients (RFC 3464 §2.3.9).
	WillRetryUntil time.Time
}

// PolicyRefusal names the policy entry whose requirement stopped a
// delivery and the host that did not meet it.
type PolicyRefusal struct {
	File  string // the policy file's name, e.g. "policy.conf"; "" if unknown
	Entry string // the entry's key ("partner.com", "*")
	Line  int    // its line in the file
	// Host is the MX host (or route) that was judged; "" if none.
	Host string
}

// Return says what of the original message a report carries.
type Return uint8

const (
	// ReturnHeaders: the header block only (RET=HDRS, or none given).
	ReturnHeaders Return = iota
	// ReturnFull: the whole message (RET=FULL, RFC 3461 §4.3).
	ReturnFull
)

// Report is everything a DSN says about one message.
type Report struct {
	// Hostname is the relay's name: Reporting-MTA and MAILER-DAEMON@.
	Hostname string
	// To is the original envelope sender, who gets the report.
	To      string
	QueueID string
	// OriginalMessageID links the report to the message (In-Reply-To).
	OriginalMessageID string
	// EnvID is the client's ENVID, decoded (RFC 3461 §4.4):
	// Original-Envelope-Id (RFC 3464 §2.2.1). "" when none.
	EnvID      string
	Arrival    time.Time
	Recipients []Recipient
	// Return selects what Original holds: with ReturnHeaders anything
	// after the header block is ignored; with ReturnFull the whole
	// message is returned (message/rfc822, RFC 6522 §3).
	Return Return
	// Original is the original message (or at least its header block).
	Original []byte
	// Redacted leaves the original out entirely, headers too: the
	// return of a REQUIRETLS message (RFC 8689 §5: a report that carries
	// none of the message need not itself travel with REQUIRETLS, which
	// the sender's own MX may not offer). The human part says so.
	Redacted bool
	// TooLarge, when not zero, says RET=FULL was asked but the message was
	// larger than this cap: only the headers are returned, and the human
	// part says so.
	TooLarge int64
	// Global: the original was sent with SMTPUTF8. The report then uses
	// RFC 6533's message/global-delivery-status and message/global(-headers)
	// so that UTF-8 addresses and headers are carried as they are.
	Global bool
	// Now is the report's Date; zero means time.Now().
	Now time.Time
}

// ErrNullSender refuses to build a report for a message that had the null
// sender (a report itself): its failures are logged, never bounced.
var ErrNullSender = errors.New("dsn: the message had the null sender; no report is sent for it")

// Message is a built report, ready to be spooled with the null sender.
type Message struct {
	Bytes     []byte
	MessageID string // without angle brackets
	// EightBit is true when the report carries 8-bit bytes (the original
	// message, UTF-8 fields of a global report), so it needs 8BITMIME
	// (RFC 6152) on the way out.
	EightBit bool
	// UTF8 is true when the recipient address is not ASCII, so the report
	// needs SMTPUTF8 (RFC 6531).
	UTF8 bool
}

// maxField bounds one report field; RFC 5322 §2.1.1 allows 998 octets per
// line, and a remote reply longer than that says nothing more useful.
const maxField = 900

// Build renders r as an RFC 3464 multipart/report.
func Build(r Report) (*Message, error) {
	if len(r.Recipients) == 0 {
		return nil, fmt.Errorf("dsn: a report needs at least one recipient")
	}
	// RFC 3464 §6.2 / RFC 5321 §4.5.5: a message with the null sender
	// gets no report, so that two MTAs never bounce reports at each other.
	if strings.TrimSpace(r.To) == "" {
		return nil, ErrNullSender
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	host := toASCII(fieldSafe(r.Hostname))
	if host == "" {
		host = "localhost"
	}
	// The From address needs a plain domain whatever the hostname holds.
	mailHost := msgIDHost(host)
	tok, err := token()
	if err != nil {
		return nil, err
	}
	msgID := fmt.Sprintf("%s.%s@%s", now.UTC().Format("20060102150405"), tok[:16], mailHost)
	boundary := "smgctl-dsn-" + tok
	m := &Message{MessageID: msgID}

	kind := kindOf(r.Recipients)
	to := fieldSafe(r.To)
	m.UTF8 = !address.IsASCII(to)

	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("From", "MAILER-DAEMON@"+mailHost+" (Mail Delivery System)")
	hdr("To", "<"+to+">")
	hdr("Subject", kind.subject())
	hdr("Message-ID", "<"+msgID+">")
	if id := fieldSafe(r.OriginalMessageID); id != "" && address.IsASCII(id) {
		id = "<" + strings.Trim(id, "<>") + ">"
		hdr("In-Reply-To", id)
		hdr("References", id)
	}
	// RFC 3834 §5: automatic responses say so, so that vacation responders
	// and other robots do not answer them.
	hdr("Auto-Submitted", "auto-replied")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n")

	// What is returned: RFC 3461 §4.3's RET=FULL gets the whole message,
	// anything else the header block; a "relayed" or "delayed" report
	// carries the headers only (RET speaks of failed DSNs).
	full := r.Return == ReturnFull && kind == reportFailed && !r.Redacted
	var orig []byte
	if full {
		orig = wholeMessage(r.Original)
	} else {
		orig = headerBlock(r.Original)
	}

	// Part 1: for the human (RFC 6522 §3: the first part).
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Description: Notification\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(humanText(r, host, kind, full), "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")

	// Part 2: for the machine (RFC 3464 §2; RFC 6533 §6 for the global
	// form, whose fields may carry UTF-8 as it is).
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Description: Delivery report\r\n")
	if r.Global {
		b.WriteString("Content-Type: message/global-delivery-status\r\n\r\n")
	} else {
		b.WriteString("Content-Type: message/delivery-status\r\n\r\n")
	}
	hdr("Reporting-MTA", "dns; "+host)
	if id := fieldSafe(r.QueueID); id != "" {
		hdr("X-Smgctl-Queue-ID", id)
	}
	if id := fieldSafe(r.EnvID); id != "" {
		// RFC 3464 §2.2.1: the ENVID as the client gave it (decoded);
		// it is printable ASCII by RFC 3461 §4.4.
		hdr("Original-Envelope-Id", toASCII(id))
	}
	if !r.Arrival.IsZero() {
		hdr("Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		b.WriteString("\r\n")
		if o := origRcptField(rc.ORcpt, r.Global); o != "" {
			hdr("Original-Recipient", o)
		}
		hdr("Final-Recipient", addressField(rc.Address, r.Global))
		hdr("Action", string(actionOf(rc)))
		hdr("Status", statusOf(rc))
		if mta := fieldSafe(rc.RemoteMTA); mta != "" {
			hdr("Remote-MTA", "dns; "+toASCII(mta))
		}
		if d := fieldSafe(rc.Diagnostic.String()); d != "" {
			hdr("Diagnostic-Code", diagnosticField(rc.Diagnostic, d))
		}
		if !rc.LastAttempt.IsZero() {
			hdr("Last-Attempt-Date", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if actionOf(rc) == Delayed && !rc.WillRetryUntil.IsZero() {
			hdr("Will-Retry-Until", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}

	// Part 3: the original (RFC 6522 §3): text/rfc822-headers or
	// message/rfc822; RFC 6533 §6's message/global-headers and
	// message/global for SMTPUTF8 mail. None when redacted (the third
	// part is optional, RFC 6522 §3).
	if r.Redacted {
		b.WriteString("\r\n--" + boundary + "--\r\n")
		m.Bytes = b.Bytes()
		m.EightBit = !isASCIIBytes(m.Bytes)
		return m, nil
	}
	b.WriteString("\r\n--" + boundary + "\r\n")
	switch {
	case full && r.Global:
		b.WriteString("Content-Description: Undelivered Message\r\n")
		b.WriteString("Content-Type: message/global\r\n")
	case full:
		b.WriteString("Content-Description: Undelivered Message\r\n")
		b.WriteString("Content-Type: message/rfc822\r\n")
	case r.Global:
		b.WriteString("Content-Description: Message Headers\r\n")
		b.WriteString("Content-Type: message/global-headers\r\n")
	default:
		b.WriteString("Content-Description: Message Headers\r\n")
		b.WriteString("Content-Type: text/rfc822-headers\r\n")
	}
	if !isASCIIBytes(orig) {
		// RFC 2045 §6.4: a message/* part is not encoded; 8bit says
		// what it carries.
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	}
	b.WriteString("\r\n")
	b.Write(orig)
	b.WriteString("\r\n--" + boundary + "--\r\n")
	m.Bytes = b.Bytes()
	m.EightBit = !isASCIIBytes(m.Bytes)
	return m, nil
}

// reportKind is what a report is about, for its subject and wording.
type reportKind uint8

const (
	reportFailed  reportKind = iota // at least one recipient failed
	reportDelayed                   // every recipient is delayed
	reportRelayed                   // every recipient was relayed
)

func kindOf(rcpts []Recipient) reportKind {
	delayed, relayed := true, true
	for _, rc := range rcpts {
		a := actionOf(rc)
		delayed = delayed && a == Delayed
		relayed = relayed && a == Relayed
	}
	switch {
	case delayed:
		return reportDelayed
	case relayed:
		return reportRelayed
	}
	return reportFailed
}

func (k reportKind) subject() string {
	switch k {
	case reportDelayed:
		return "Delayed Mail (still being retried)"
	case reportRelayed:
		return "Successful Mail Delivery Report"
	}
	return "Undelivered Mail Returned to Sender"
}

// actionOf is the recipient's action; anything unknown is "failed".
func actionOf(rc Recipient) Action {
	if rc.Action == Delayed || rc.Action == Relayed {
		return rc.Action
	}
	return Failed
}

// statusOf is the RFC 3463 code: the one given, else the diagnostic's
// enhanced status code (RFC 2034), else the reply code's class.
func statusOf(rc Recipient) string {
	if smtpreply.ValidEnhanced(rc.Status) {
		return rc.Status
	}
	code := rc.Diagnostic.Code
	if enh := rc.Diagnostic.Enhanced; enh != "" {
		return enh
	}
	switch {
	case code >= 500:
		return "5.0.0"
	case code >= 400:
		return "4.0.0"
	case code >= 200 && code < 300, rc.Action == Relayed:
		return "2.0.0"
	case rc.Action == Delayed:
		return "4.0.0"
	}
	return "5.0.0"
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// diagnosticField types the diagnostic d (rep made field-safe): "smtp"
// when it is an SMTP reply (RFC 3464 §2.3.6), an X- type for the relay's
// own words (a Local reply) otherwise.
func diagnosticField(rep smtpreply.Reply, d string) string {
	d = toASCII(d)
	if rep.Code >= 200 {
		return "smtp; " + d
	}
	return "X-smgctl; " + d
}

// addressField is "rfc822; addr" for ASCII addresses and RFC 6533's
// "utf-8; " otherwise: with \x{HEX} escapes so the field stays 7-bit,
// or as it is in a global report (RFC 6533 §3, utf-8-addr-unitext).
func addressField(a string, global bool) string {
	a = fieldSafe(a)
	switch {
	case address.IsASCII(a):
		return "rfc822; " + a
	case global:
		return "utf-8; " + a
	}
	return "utf-8; " + toASCII(a)
}

// origRcptField renders a stored ORCPT ("addr-type;address") as RFC 3464
// §2.3.1's Original-Recipient value. A non-ASCII address is given the
// utf-8 type, escaped unless the report is global (RFC 6533 §3).
func origRcptField(orcpt string, global bool) string {
	typ, addr, ok := strings.Cut(orcpt, ";")
	typ, addr = fieldSafe(typ), fieldSafe(addr)
	if !ok || !isAtom(typ) || addr == "" {
		return ""
	}
	if address.IsASCII(addr) {
		return strings.ToLower(typ) + "; " + addr
	}
	if global {
		return "utf-8; " + addr
	}
	return "utf-8; " + toASCII(addr)
}

// isAtom: an addr-type is an RFC 3461 atom of letters, digits and "-".
func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && (c|0x20 < 'a' || c|0x20 > 'z') && c != '-' {
			return false
		}
	}
	return s != ""
}

// toASCII keeps printable ASCII and writes anything else as RFC 6533's
// EmbeddedUnicodeChar \x{HEX}.
func toASCII(s string) string {
	if address.IsASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

// fieldSafe makes a value usable in one header field: line breaks and
// other controls become spaces, invalid UTF-8 becomes '?', runs of space
// collapse, and the length is bounded.
func fieldSafe(s string) string {
	s = strings.ToValidUTF8(oneLine(s), "?")
	if len(s) > maxField {
		cut := maxField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

// oneLine replaces control characters with spaces and collapses runs.
func oneLine(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
	return strings.TrimSpace(b.String())
}

// headerBlock returns the original header section with CRLF line ends, up
// to (not including) the first empty line. Bare CR and NUL are dropped:
// they have no place in RFC 5322 text.
func headerBlock(h []byte) []byte {
	var out bytes.Buffer
	lineLen := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '\n':
			if lineLen == 0 {
				return finishHeaders(&out)
			}
			out.WriteString("\r\n")
			lineLen = 0
		case c == '\r' || c == 0:
			continue
		default:
			// RFC 5322 §2.1.1: 998 octets per line at most; fold by
			// continuing on a new line that starts with a space.
			if lineLen >= 990 {
				out.WriteString("\r\n ")
				lineLen = 1
			}
			out.WriteByte(c)
			lineLen++
		}
	}
	return finishHeaders(&out)
}

// wholeMessage is the original message for a message/rfc822 part: every
// line ending made CRLF (a bare CR or LF ends a line, as the outbound
// client would send it) and NUL dropped, so the part carries nothing
// SMTP cannot.
func wholeMessage(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+2)
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		case 0:
		default:
			out = append(out, c)
		}
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

func finishHeaders(b *bytes.Buffer) []byte {
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// msgIDHost keeps the right side of a Message-ID a plain dot-atom.
func msgIDHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c < 0x80 && (isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '-' || c == '.') {
			b.WriteByte(c)
		}
	}
	s := strings.Trim(b.String(), ".")
	if s == "" {
		return "localhost"
	}
	return s
}

func token() (string, error) {
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", fmt.Errorf("dsn: random: %w", err)
	}
	return hex.EncodeToString(buf[:]), nil
}
