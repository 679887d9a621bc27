package inbound

import (
	"bytes"
	"strings"
)

// tlsRequiredNo reports whether the message's own header section (hdr,
// up to its blank line) carries RFC 8689 §3's "TLS-Required: No": the
// sender asks that recipient-side policies (MTA-STS, DANE) not stop this
// message (RFC 8689 §4.2.2). The field name and "No" are matched without
// regard to case (RFC 5322 §1.2.2, RFC 8689 §3's ABNF is a quoted,
// case-insensitive string), surrounding white space and folding are
// ignored. A field with any other value, or a second field that does not
// say "No", makes the answer false: a relaxation is taken only when the
// message asks for it plainly. Only the top-level header section counts;
// the same text in the body or in an attached message's header is
// content, not a request.
func tlsRequiredNo(hdr []byte) bool {
	found := false
	for len(hdr) > 0 {
		line, rest := cutLine(hdr)
		hdr = rest
		if len(line) == 0 {
			break // the end of the header section
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("TLS-Required")) {
			continue
		}
		v := append([]byte(nil), value...)
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') { // folded (RFC 5322 §2.2.3)
			var cont []byte
			cont, hdr = cutLine(hdr)
			v = append(v, cont...)
		}
		if !strings.EqualFold(strings.TrimSpace(string(v)), "No") {
			return false
		}
		found = true
	}
	return found
}
