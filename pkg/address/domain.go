package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// idnaProfile is UTS #46 processing for lookup (RFC 5891 §5): fullwidth
// forms, ideographic full stops and upper case are mapped, then each label
// is checked and converted to its A-label.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.StrictDomainName(true),
	idna.VerifyDNSLength(true),
)

// maxDomain is the longest domain name in text form: 255 octets on the
// wire (RFC 1035 §2.3.4, RFC 5321 §4.5.3.1.2) less the length octets.
const maxDomain = 253

// CanonicalDomain is the one form of a domain name the relay works with:
// UTS #46 mapped, lower-case A-labels (RFC 5890), a single trailing dot
// (the root) removed. Policy lookup, MX lookup, the audit log and DSNs all
// see this form, so two spellings of one domain can never be treated as
// two domains. Anything that is not a host name by RFC 5321 §4.1.2
// (sub-domain = Let-dig [Ldh-str]) is an error: empty labels, labels over
// 63 octets, names over 253, other characters, leading or trailing
// hyphens, A-labels that do not decode. Address literals are not domain
// names; Parse handles those.
func CanonicalDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty domain")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("domain is not valid UTF-8")
	}
	if s[0] == '[' {
		return "", errors.New("an address literal is not a domain name")
	}
	if !IsASCII(s) {
		a, err := idnaProfile.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("bad internationalised domain %q: %v", s, err)
		}
		s = a
	}
	s = strings.ToLower(s)
	s = strings.TrimSuffix(s, ".") // only one: "a.b.." has an empty label
	if s == "" {
		return "", errors.New("domain is only a dot")
	}
	if err := checkLDH(s); err != nil {
		return "", err
	}
	return s, nil
}

// checkLDH enforces RFC 5321 §4.1.2's sub-domain syntax (RFC 1035 §2.3.1)
// on a lower-case ASCII name, and that every A-label decodes (RFC 5891
// §5.4).
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
	if len(s) > maxDomain {
		return fmt.Errorf("domain is %d octets, more than %d", len(s), maxDomain)
	}
	return nil
}

// UnicodeDomain returns the U-label form of a canonical domain, for
// display; the input itself when it has no A-label or does not decode.
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

// IsASCII reports whether s is 7-bit: what needs no SMTPUTF8 (RFC 6531).
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
