package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
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
	return Target{Kind: KindAddress, Local: strings.ToLower(local), Domain: d}, nil
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

var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// NormalizeDomain returns the lower-case A-label form of a domain name,
// without a trailing dot, or says what is wrong with it.
func NormalizeDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty domain")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("domain is not valid UTF-8")
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("domain is only a dot")
	}
	if strings.HasPrefix(s, "[") {
		return "", errors.New("address literals are not policy targets; use the domain")
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idnaProfile.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("bad internationalised domain %q: %v", s, err)
		}
		s = a
	}
	s = strings.ToLower(s)
	if err := checkLDH(s); err != nil {
		return "", err
	}
	return s, nil
}

// checkLDH enforces RFC 1035 §2.3.1 / RFC 5890 host name syntax on an
// ASCII name, and that any A-label decodes.
func checkLDH(s string) error {
	// Labels first: an over-long label is the more specific complaint.
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return fmt.Errorf("empty label in %q", s)
		}
		if len(label) > 63 {
			return fmt.Errorf("label of %d octets in domain, more than 63", len(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed in domain %q", c, s)
			}
		}
		if strings.HasPrefix(label, "xn--") {
			if _, err := idnaProfile.ToUnicode(label); err != nil {
				return fmt.Errorf("bad A-label %q: %v", label, err)
			}
		}
	}
	if len(s) > 253 {
		return fmt.Errorf("domain is %d octets, more than 253", len(s))
	}
	return nil
}

// UnicodeDomain returns the U-label form of an A-label domain for display;
// the input itself when it has none or does not decode.
func UnicodeDomain(d string) string {
	if !strings.Contains(d, "xn--") {
		return d
	}
	u, err := idna.Display.ToUnicode(d)
	if err != nil {
		return d
	}
	return u
}
