package exchange

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// ReadSMG reads the vendor's plain list: one domain or address per line,
// each an entry with default options (B1, B2, B4). A blank line — also
// one of only white space — is the catch-all (B3: require TLS with every
// recipient domain); it is imported and noted, since a stray blank line
// in that product changed the policy for all mail. A line that is not a
// domain or address is invalid input (Note.Invalid).
func ReadSMG(data []byte) *Result {
	c := newCollector()
	for i, raw := range lines(data) {
		n := i + 1
		s := strings.TrimSpace(raw)
		if s == "" {
			c.res.note(n, false, "blank line: the catch-all * (TLS with every recipient domain)")
			c.add(n, policy.Entry{Target: policy.CatchAll, Options: policy.DefaultOptions()})
			continue
		}
		t, err := policy.ParseTarget(s)
		if err != nil {
			c.res.invalid(n, "%q is not a domain or address (%v)", s, err)
			continue
		}
		c.add(n, policy.Entry{Target: t, Options: policy.DefaultOptions()})
	}
	return c.res
}

// WriteSMG writes entries as the vendor's plain list: one target per line,
// the catch-all as a blank line. The list has no options, so an entry
// that needs them is reported: an enforced one is still written (its
// requirement becomes the default, 112 bits), a mode=testing or mode=off
// one is left out, since as a plain line it would be enforced.
func WriteSMG(w io.Writer, entries []*policy.Entry) ([]Note, error) {
	var notes []Note
	def := policy.DefaultOptions()
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		o := e.Options
		if o.Mode != policy.ModeEnforce {
			notes = append(notes, Note{Line: e.Line, Lost: true,
				Text: fmt.Sprintf("%s has mode=%s, which the plain list cannot express; left out", e.Target.Display(), o.Mode)})
			continue
		}
		if o != def {
			notes = append(notes, Note{Line: e.Line, Lost: true,
				Text: fmt.Sprintf("%s: %s cannot be expressed in the plain list; written with the defaults", e.Target.Display(), o)})
		}
		if e.Target.Kind != policy.KindCatchAll {
			bw.WriteString(e.Target.Written())
		}
		bw.WriteByte('\n')
	}
	return notes, bw.Flush()
}
