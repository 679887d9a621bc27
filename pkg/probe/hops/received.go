package hops

import (
	"net"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
)

// token is a word or a comment of a Received: header value.
type token struct {
	text    string
	comment bool
}

// tokenize splits a Received: value (without the date) into words and
// comments (RFC 5322 §3.2.2): comments nest and may contain quoted-pairs;
// an unclosed comment runs to the end. It is total: any string yields
// some tokens.
func tokenize(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth, j := 0, i
			var b strings.Builder
			for ; j < len(s); j++ {
				ch := s[j]
				if ch == '\\' && j+1 < len(s) {
					if depth > 0 {
						b.WriteByte(s[j+1])
					}
					j++
					continue
				}
				if ch == '(' {
					depth++
					if depth == 1 {
						continue
					}
				} else if ch == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
				b.WriteByte(ch)
			}
			toks = append(toks, token{text: collapse(b.String()), comment: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n(", rune(s[j])) {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks
}

// collapse turns every run of white space into one space.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// splitDate splits a Received: value at its last ";" outside comments
// (RFC 5321 §4.4: the date-time follows the last semicolon).
func splitDate(s string) (clauses, date string, ok bool) {
	depth, last := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
			}
		case ';':
			if depth == 0 {
				last = i
			}
		}
	}
	if last < 0 {
		return s, "", false
	}
	return s[:last], strings.TrimSpace(s[last+1:]), true
}

// clause is one "from"/"by"/"via"/"with"/"id"/"for" part and the
// comments that follow it.
type clause struct {
	words    []string
	comments []string
}

var clauseKeywords = map[string]bool{"from": true, "by": true, "via": true, "with": true, "id": true, "for": true}

// clauses groups tokens by keyword (RFC 5321 §4.4 Stamp). Text before
// the first keyword goes to "" (qmail's "(qmail 123 invoked by uid 0)").
// A repeated keyword's words are appended, so nothing is lost.
func clauses(toks []token) map[string]*clause {
	m := map[string]*clause{"": {}}
	cur := m[""]
	for _, t := range toks {
		if !t.comment {
			if kw := strings.ToLower(t.text); clauseKeywords[kw] {
				if m[kw] == nil {
					m[kw] = &clause{}
				}
				cur = m[kw]
				continue
			}
			cur.words = append(cur.words, t.text)
			continue
		}
		cur.comments = append(cur.comments, t.text)
	}
	return m
}

func (c *clause) first() string {
	if c == nil || len(c.words) == 0 {
		return ""
	}
	return c.words[0]
}

// allComments returns every comment in the header, in order.
func allComments(toks []token) []string {
	var out []string
	for _, t := range toks {
		if t.comment {
			out = append(out, t.text)
		}
	}
	return out
}

var (
	// Postfix smtpd_tls_received_header: "using TLSv1.3 with cipher
	// TLS_AES_256_GCM_SHA384 (256/256 bits)". The bits comment is nested,
	// so the tokenizer keeps its parentheses in the text.
	postfixTLS = regexp.MustCompile(`(?i)^using (\S+) with cipher (\S+)(?: \((\d+)/(\d+) bits\))?`)
	// Exim before 4.92: "(TLSv1.2:ECDHE-RSA-AES256-GCM-SHA384:256)" with
	// OpenSSL, "(TLS1.2:ECDHE_RSA_AES_256_GCM_SHA384:256)" with GnuTLS.
	eximOldTLS = regexp.MustCompile(`(?i)^((?:TLS|SSL)v?[0-9._]+):([^: ]+):(\d+)$`)
	// Exim 4.92+: "(TLS1.3)" then "tls TLS_AES_256_GCM_SHA384".
	versionOnly = regexp.MustCompile(`(?i)^(?:TLS|SSL)v?[0-9._]+$`)
	// Sendmail/Gmail/Exchange: key=value pairs separated by spaces or
	// commas.
	keyValue = regexp.MustCompile(`(?i)\b(version|cipher|bits|verify)=([^\s,]+)`)
	// Sendmail's by-comment: "(8.15.2/8.15.2)", "(8.17.1/8.17.1/Submit)".
	sendmailVersion = regexp.MustCompile(`^\d+\.\d+\.\d+[^ ]*/\d+\.\d+`)
	bitsPair        = regexp.MustCompile(`^(\d+)(?:/(\d+))?$`)
)

// ParseVersion reads a protocol version as MTAs write it: "TLSv1.2"
// (OpenSSL), "TLS1.2" (GnuTLS, Exim), "TLS1_2" (Exchange, Gmail),
// "TLSv1" (old OpenSSL), "SSLv3".
//
// Old Sendmail writes "TLSv1/SSLv3" (the suite's protocol family, not the
// negotiated version); an ambiguous version counts as the lowest it
// names, so it can never pass a min-tls it might not meet.
func ParseVersion(s string) (uint16, bool) {
	if strings.Contains(s, "/") {
		lowest, ok := uint16(0), false
		for _, part := range strings.Split(s, "/") {
			v, vok := ParseVersion(part)
			if !vok {
				return 0, false
			}
			if !ok || v < lowest {
				lowest, ok = v, true
			}
		}
		return lowest, ok
	}
	u := strings.ToUpper(strings.TrimSpace(s))
	if len(u) < 3 {
		return 0, false
	}
	ssl := strings.HasPrefix(u, "SSL")
	if !ssl && !strings.HasPrefix(u, "TLS") {
		return 0, false
	}
	n := strings.ReplaceAll(strings.TrimPrefix(u[3:], "V"), "_", ".")
	if ssl {
		if n == "3" || n == "3.0" {
			return 0x0300, true
		}
		return 0, false
	}
	switch n {
	case "1", "1.0":
		return 0x0301, true
	case "1.1":
		return 0x0302, true
	case "1.2":
		return 0x0303, true
	case "1.3":
		return 0x0304, true
	}
	return 0, false
}

// tlsKeywords are "with" protocol types that mean TLS was used (RFC 3848
// §2 ESMTPS/ESMTPSA and the LMTP variants; RFC 6531 §3.7.3 UTF8SMTPS/
// UTF8SMTPSA; "SMTPS", which Gmail writes for its internal encrypted
// hops).
var tlsKeywords = map[string]bool{
	"ESMTPS": true, "ESMTPSA": true, "UTF8SMTPS": true, "UTF8SMTPSA": true,
	"LMTPS": true, "LMTPSA": true, "UTF8LMTPS": true, "UTF8LMTPSA": true,
	"SMTPS": true,
}

// internalProtocols are hand-offs inside one system, not network hops
// between organisations: local delivery and pickup, LMTP to the mailbox
// store, Exchange's mapi store submission, HTTP(S) webmail submission.
var internalProtocols = map[string]bool{
	"LOCAL": true, "LMTP": true, "LMTPA": true, "LMTPS": true, "LMTPSA": true,
	"UTF8LMTP": true, "UTF8LMTPA": true, "UTF8LMTPS": true, "UTF8LMTPSA": true,
	"MAPI": true, "HTTP": true, "HTTPS": true, "LOCAL-ESMTP": true, "LOCAL-SMTP": true,
	"LOCAL-BSMTP": true, "SPOOL": true,
}

// parseReceived parses one unfolded Received: value into a Hop (without
// the grading). It never fails: what it cannot read stays empty.
func parseReceived(value string) Hop {
	h := Hop{Raw: collapse(value), HeaderBits: -1}
	body, date, hasDate := splitDate(value)
	if hasDate {
		h.DateRaw = collapse(date)
		if t, err := mail.ParseDate(h.DateRaw); err == nil {
			h.Date = t
		} else if t, err := mail.ParseDate(stripTrailingComment(h.DateRaw)); err == nil {
			h.Date = t
		}
	}
	toks := tokenize(body)
	cl := clauses(toks)

	h.From = cl["from"].first()
	if ip := bracketIP(h.From); ip != "" {
		h.FromIP = ip
	}
	if c := cl["from"]; c != nil {
		for _, com := range c.comments {
			h.fromComment(com)
		}
	}
	h.By = cl["by"].first()
	h.Via = strings.Join(cl["via"].wordsOrNil(), " ")
	h.ID = cl["id"].first()
	h.For = strings.Trim(cl["for"].first(), "<>")

	with := cl["with"]
	if with != nil && len(with.words) > 0 {
		// Exchange: "with Microsoft SMTP Server"; Exim: "with esmtps
		// tls TLS_AES_...". The protocol is the words up to "tls".
		var proto []string
		for i, w := range with.words {
			if strings.EqualFold(w, "tls") && i+1 < len(with.words) {
				h.Cipher = with.words[i+1]
				h.TLS = true
				break
			}
			proto = append(proto, w)
		}
		h.With = strings.Join(proto, " ")
	}
	if tlsKeywords[strings.ToUpper(h.With)] {
		h.TLS = true
	}

	comments := allComments(toks)
	for _, com := range comments {
		h.tlsComment(com)
	}
	h.MTA = detectMTA(h, cl, comments)
	h.resolveStrength()
	return h
}

func (c *clause) wordsOrNil() []string {
	if c == nil {
		return nil
	}
	return c.words
}

// stripTrailingComment drops a trailing "(PDT)"-style zone comment that
// some date parsers choke on.
func stripTrailingComment(s string) string {
	if i := strings.LastIndexByte(s, '('); i > 0 && strings.HasSuffix(s, ")") {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// bracketIP returns the address in "[192.0.2.1]", "[IPv6:2001:db8::1]"
// or "192.0.2.1" form, or "".
func bracketIP(s string) string {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "["), "]")
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		s = s[5:]
	}
	if i := strings.IndexByte(s, '%'); i >= 0 { // zone, as in Exchange's "[fe80::1%6]"
		s = s[:i]
	}
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return ""
}

// fromComment reads the from-clause comment: Postfix/Sendmail/Gmail
// "(rdns [ip])", Exim "([ip] helo=name)" or "(helo=name)", Exchange
// "(ip)", qmail "(HELO name)". "(may be forged)" and similar are ignored.
func (h *Hop) fromComment(com string) {
	f := strings.Fields(com)
	for i := 0; i < len(f); i++ {
		w := f[i]
		switch {
		case bracketIP(w) != "" && h.FromIP == "":
			h.FromIP = bracketIP(w)
		case strings.HasPrefix(strings.ToLower(w), "helo="):
			h.Helo = w[5:]
		case strings.EqualFold(w, "HELO") && i+1 < len(f):
			h.Helo = f[i+1]
			i++
		case i == 0 && h.FromRDNS == "" && strings.Contains(w, ".") && !strings.Contains(w, "="):
			h.FromRDNS = strings.TrimSuffix(w, ".")
		case i == 0 && strings.EqualFold(w, "unknown"):
			h.FromRDNS = "unknown"
		}
	}
}

// tlsComment reads TLS details from one comment, in whichever MTA's form
// it is.
func (h *Hop) tlsComment(com string) {
	if m := postfixTLS.FindStringSubmatch(com); m != nil {
		h.TLS = true
		h.TLSVersionRaw, h.Cipher = m[1], m[2]
		if m[3] != "" {
			h.HeaderBits, _ = strconv.Atoi(m[3])
		}
		return
	}
	if m := eximOldTLS.FindStringSubmatch(com); m != nil {
		h.TLS = true
		h.TLSVersionRaw, h.Cipher = m[1], m[2]
		h.HeaderBits, _ = strconv.Atoi(m[3])
		return
	}
	if versionOnly.MatchString(com) {
		h.TLS = true
		h.TLSVersionRaw = com
		return
	}
	if strings.EqualFold(com, "TLS") { // Exchange: "with Microsoft SMTP Server (TLS)"
		h.TLS = true
		return
	}
	if strings.EqualFold(com, "Google Transport Security") {
		h.TLS = true
		return
	}
	kv := keyValue.FindAllStringSubmatch(com, -1)
	for _, m := range kv {
		switch strings.ToLower(m[1]) {
		case "version":
			h.TLS = true
			h.TLSVersionRaw = m[2]
		case "cipher":
			h.TLS = true
			h.Cipher = m[2]
		case "bits":
			if b := bitsPair.FindStringSubmatch(m[2]); b != nil {
				h.HeaderBits, _ = strconv.Atoi(b[1])
			}
		case "verify":
			h.Verify = m[2]
		}
	}
}

func detectMTA(h Hop, cl map[string]*clause, comments []string) string {
	for _, c := range cl["by"].commentsOrNil() {
		if strings.HasPrefix(c, "Postfix") {
			return "postfix"
		}
		if sendmailVersion.MatchString(c) {
			return "sendmail"
		}
	}
	for _, c := range comments {
		if strings.HasPrefix(c, "Exim ") {
			return "exim"
		}
		if strings.EqualFold(c, "Google Transport Security") {
			return "gmail"
		}
		if strings.HasPrefix(c, "qmail ") {
			return "qmail"
		}
	}
	switch {
	case strings.HasPrefix(strings.ToLower(h.With), "microsoft smtp server"), strings.EqualFold(h.With, "mapi"):
		return "exchange"
	case strings.HasSuffix(strings.ToLower(h.By), ".google.com"):
		return "gmail"
	}
	return ""
}

func (c *clause) commentsOrNil() []string {
	if c == nil {
		return nil
	}
	return c.comments
}

// resolveStrength turns the written version, cipher and bits into what
// the grading uses.
func (h *Hop) resolveStrength() {
	h.Bits = -1
	if !h.TLS {
		h.Bits = 0
		return
	}
	if v, ok := ParseVersion(h.TLSVersionRaw); ok {
		h.TLSVersion = v
	}
	if h.Cipher != "" {
		if id, ok := SuiteByName(h.Cipher); ok {
			h.CipherID, h.CipherKnown = id, true
		}
	}
	suiteBits := -1
	if h.CipherKnown {
		suiteBits = suiteBitsOf(h.CipherID)
		// A TLS 1.3 suite says the version even when the header does not.
		if h.TLSVersion == 0 && isTLS13(h.CipherID) {
			h.TLSVersion = 0x0304
		}
	}
	switch {
	case suiteBits >= 0 && h.HeaderBits >= 0:
		// Both known: the lower, so a header cannot talk a weak suite up.
		h.Bits = min(suiteBits, h.HeaderBits)
	case suiteBits >= 0:
		h.Bits = suiteBits
	case h.HeaderBits >= 0:
		h.Bits = h.HeaderBits
	}
}
