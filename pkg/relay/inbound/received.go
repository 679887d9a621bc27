package inbound

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
)

// trace is what the Received: header records about one message's arrival.
type trace struct {
	helo     string
	esmtp    bool // EHLO, not HELO
	addr     netip.Addr
	tls      *tls.ConnectionState // nil: clear text
	auth     bool
	smtputf8 bool
	by       string // our hostname
	id       string // queue ID
	rcpts    []string
	at       time.Time
}

// protocol is the "with" keyword: RFC 3848 (SMTP, ESMTP, ESMTPS,
// ESMTPA, ESMTPSA) and, for SMTPUTF8 transactions, RFC 6531 §3.7.3
// (UTF8SMTP...).
func (t *trace) protocol() string {
	p := "ESMTP"
	switch {
	case t.smtputf8:
		p = "UTF8SMTP"
	case !t.esmtp:
		p = "SMTP"
	}
	if t.tls != nil {
		p += "S"
	}
	if t.auth {
		p += "A"
	}
	return p
}

// tlsComment is Postfix's smtpd_tls_received_header text, so that
// `smgctl probe hops` and every tool that reads Postfix headers grade this
// hop like any other: "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
// (256/256 bits))". Postfix prints used/algorithm bits; Go serves no suite
// where the two differ (3DES, 112/168), so the policy table's bits stand
// for both.
func tlsComment(cs *tls.ConnectionState) string {
	bits := policy.CipherBits(cs.CipherSuite)
	return fmt.Sprintf("(using %s with cipher %s (%d/%d bits))",
		policy.VersionName(cs.Version), policy.SuiteName(cs.CipherSuite), bits, bits)
}

// header renders the trace field of RFC 5321 §4.4 (RFC 5322 §3.6.7), folded
// as Postfix folds it, ending in CRLF.
func (t *trace) header() string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(sanitizeHelo(t.helo))
	// TCP-info without reverse DNS: the address literal alone (§4.1.3).
	b.WriteString(" (")
	b.WriteString(addressLiteral(t.addr))
	b.WriteString(")\r\n")
	if t.tls != nil {
		b.WriteString("\t")
		b.WriteString(tlsComment(t.tls))
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "\tby %s (smgctl) with %s id %s", t.by, t.protocol(), t.id)
	// Like Postfix, name the recipient only when there is one: listing
	// all of them would show every recipient the Bcc list.
	if len(t.rcpts) == 1 && isHeaderSafe(t.rcpts[0]) {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", t.rcpts[0])
	}
	b.WriteString("; ")
	b.WriteString(t.at.UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	b.WriteString("\r\n")
	return b.String()
}

// addressLiteral is RFC 5321 §4.1.3's form: [192.0.2.1] or [IPv6:2001:db8::1].
func addressLiteral(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		return "[IPv6:" + a.WithZone("").String() + "]"
	}
	return "[" + a.String() + "]"
}

// sanitizeHelo keeps the client's EHLO argument from breaking the header's
// syntax: it is the client's claim, shown as-is where harmless.
func sanitizeHelo(h string) string {
	if h == "" {
		return "unknown"
	}
	b := []byte(h)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == ';' || c == '\\' || c == '"' {
			b[i] = '?'
		}
	}
	if len(b) > 255 {
		b = b[:255]
	}
	return string(b)
}

func isHeaderSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f || s[i] == '>' {
			return false
		}
	}
	return true
}

// messageID returns the msg-id of the first Message-ID header field in a
// header section (RFC 5322 §3.6.4), unfolded and trimmed, or "". hdr ends
// at, or before, the empty line that separates header and body.
func messageID(hdr []byte) string {
	for len(hdr) > 0 {
		line, rest := cutLine(hdr)
		hdr = rest
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Message-ID")) {
			continue
		}
		v := append([]byte(nil), value...)
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') { // folded (§2.2.3)
			var cont []byte
			cont, hdr = cutLine(hdr)
			v = append(v, cont...)
		}
		id := strings.TrimSpace(string(v))
		if i := strings.IndexByte(id, '<'); i >= 0 {
			if j := strings.IndexByte(id[i:], '>'); j > 0 {
				id = id[i : i+j+1]
			}
		}
		if len(id) > 998 || !isHeaderSafe(strings.ReplaceAll(id, ">", "")) {
			return ""
		}
		return strings.Join(strings.Fields(id), "")
	}
	return ""
}

// cutLine splits off the first line of b without its CRLF.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
}
