package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/address"
)

// TargetKind tells the three kinds of entry apart.
type TargetKind uint8

const (
	// KindDomain matches the domain and every subdomain (B1).
	KindDomain TargetKind = iota
	// KindAddress matches one address (B2).
	KindAddress
	// KindCatchAll matches every recipient domain (B3).
	KindCatchAll
)

// Target is a normalised policy key: a domain in A-label form, an address
// with a lower-cased local part, or the catch-all.
type Target struct {
	Kind   TargetKind
	Local  string // lower-cased local part, KindAddress only
	Domain string // lower-case A-labels, no trailing dot
}

// CatchAll is the target that applies when nothing closer does.
var CatchAll = Target{Kind: KindCatchAll}

// Key is the target as written in a policy file and used in the index.
func (t Target) Key() string {
	switch t.Kind {
	case KindCatchAll:
		return "*"
	case KindAddress:
		return t.Local + "@" + t.Domain
	}
	return t.Domain
}

func (t Target) String() string { return t.Key() }

// Written is the target as a policy file line starts: the key, except
// that a local part beginning with '#' is quoted, since '#' at the start
// of a token opens a comment ("#00"@x is the mailbox #00@x, RFC 5321
// §4.1.2, and reads back as the same key).
func (t Target) Written() string {
	if t.Kind == KindAddress && strings.HasPrefix(t.Local, "#") {
		return `"` + t.Local + `"@` + t.Domain
	}
	return t.Key()
}

// Display is the key with internationalised domains also shown as U-labels:
// "xn--bcher-kva.example (bücher.example)".
func (t Target) Display() string {
	key := t.Key()
	if u := UnicodeDomain(t.Domain); u != t.Domain {
		if t.Kind == KindAddress {
			return key + " (" + t.Local + "@" + u + ")"
		}
		return key + " (" + u + ")"
	}
	return key
}

// ParseTarget normalises a policy target: "*" or "" (the catch-all), a
// domain, or local@domain.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return CatchAll, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		d, err := NormalizeDomain(s)
		if err != nil {
			return Target{}, err
		}
		return Target{Kind: KindDomain, Domain: d}, nil
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Target{}, err
	}
	d, err := NormalizeDomain(domain)
	if err != nil {
		return Target{}, err
	}
	// The local part is keyed as the relay writes it on the wire
	// (address.QuoteLocal: minimum quoting), so `"ceo"@x` and ceo@x are
	// one target, as they are one mailbox (RFC 5321 §4.1.2).
	m, err := address.Parse(local + "@" + d)
	if err != nil {
		return Target{}, fmt.Errorf("local part %q: %v", local, err)
	}
	return Target{Kind: KindAddress, Local: strings.ToLower(address.QuoteLocal(m.Local)), Domain: d}, nil
}

// checkLocal accepts an RFC 5321 local part, including UTF-8 (RFC 6531),
// but nothing that could not survive on an SMTP command line.
func checkLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part before @")
	case len(local) > 64:
		return fmt.Errorf("local part is %d octets, more than 64 (RFC 5321 §4.5.3.1.1)", len(local))
	case strings.ContainsRune(local, '@') && !strings.HasPrefix(local, `"`):
		return errors.New("more than one @ in address")
	case !utf8.ValidString(local):
		return errors.New("local part is not valid UTF-8")
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' {
			return fmt.Errorf("character %q not allowed in local part", r)
		}
	}
	return nil
}

// NormalizeDomain returns the lower-case A-label form of a domain name,
// without a trailing dot, or says what is wrong with it. It is
// address.CanonicalDomain, the form the relay computes for every recipient
// at RCPT, so a policy entry and a recipient can only ever meet in one
// spelling.
func NormalizeDomain(s string) (string, error) {
	if strings.HasPrefix(s, "[") {
		return "", errors.New("address literals are not policy targets; use the domain")
	}
	return address.CanonicalDomain(s)
}

// UnicodeDomain returns the U-label form of an A-label domain for display;
// the input itself when it has none or does not decode.
func UnicodeDomain(d string) string { return address.UnicodeDomain(d) }
