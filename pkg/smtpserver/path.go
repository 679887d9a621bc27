package smtpserver

import (
	"errors"
	"strings"

	"github.com/smgctl/smgctl/pkg/address"
)

// Path is a reverse-path or forward-path of MAIL or RCPT (RFC 5321
// §4.1.2), parsed. The mailbox is pkg/address's value: the local part
// unquoted, the domain in its one canonical form (lower-case A-labels, or
// a canonical address literal). A source route (@a,@b:) is accepted and
// dropped, as RFC 5321 §4.1.1.3 and Appendix C tell servers to do.
type Path struct {
	// Mailbox is zero for the null reverse-path <>; its Domain is "" for
	// the special recipient <Postmaster> (§4.1.1.3).
	address.Mailbox
	nonASCII bool // the path as sent held UTF-8 (RFC 6531 §3.2)
}

// IsNull reports whether p is the null reverse-path <> (RFC 5321 §4.5.5).
func (p Path) IsNull() bool { return p.Local == "" && p.Domain == "" }

// ASCII reports whether the path as the client sent it was all ASCII, as
// it must be without SMTPUTF8 (RFC 6531 §3.2), its domain included.
func (p Path) ASCII() bool { return !p.nonASCII }

// String is the mailbox as it goes between the angle brackets of a
// command, the local part quoted only when it must be; "" for <>.
func (p Path) String() string {
	if p.IsNull() {
		return ""
	}
	if p.Domain == "" {
		return p.Local
	}
	return p.Mailbox.String()
}

var errPathSyntax = errors.New("bad path syntax")

// parsePath reads "<" [source-route ":"] Mailbox ">" or "<>" from the
// start of s and returns what follows the ">".
func parsePath(s string) (Path, string, error) {
	if !strings.HasPrefix(s, "<") {
		return Path{}, "", errPathSyntax
	}
	s = s[1:]
	if strings.HasPrefix(s, ">") {
		return Path{}, s[1:], nil
	}
	if strings.HasPrefix(s, "@") {
		// A-d-l = At-domain *( "," At-domain ), then ":".
		end := strings.IndexByte(s, ':')
		if end < 0 {
			return Path{}, "", errPathSyntax
		}
		for hop := range strings.SplitSeq(s[:end], ",") {
			d, ok := strings.CutPrefix(hop, "@")
			if _, err := address.CanonicalDomain(d); !ok || err != nil {
				return Path{}, "", errPathSyntax
			}
		}
		s = s[end+1:]
	}
	end := closingBracket(s)
	if end < 0 {
		return Path{}, "", errPathSyntax
	}
	m, err := address.Parse(s[:end])
	if err != nil {
		return Path{}, "", err
	}
	return Path{Mailbox: m, nonASCII: !address.IsASCII(s[:end])}, s[end+1:], nil
}

// closingBracket finds the ">" that ends a path, skipping a Quoted-string
// local part, which may hold ">" (RFC 5321 §4.1.2).
func closingBracket(s string) int {
	i := 0
	if strings.HasPrefix(s, `"`) {
		for i = 1; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				i++
				break
			}
		}
		if i > len(s) {
			return -1
		}
	}
	j := strings.IndexByte(s[i:], '>')
	if j < 0 {
		return -1
	}
	return i + j
}
