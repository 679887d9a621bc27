package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/probe/deep"
)

// renderDeep writes the table view of one host's --deep enumeration
// (docs/probe-deep-hops.md). indent prefixes every line so it nests under
// the host's row in "smgctl probe".
func renderDeep(w io.Writer, pt painter, rep *deep.Report, indent string) error {
	var accepted, refused []string
	for _, v := range rep.Versions {
		name := policy.VersionName(v.Version)
		if v.Accepted {
			accepted = append(accepted, fmt.Sprintf("%s (%d suites)", name, len(v.Suites)))
		} else if v.Refusal != "" {
			refused = append(refused, name+": "+v.Refusal)
		}
	}
	line := func(label, value string) { fmt.Fprintf(w, "%s%-22s %s\n", indent, label, value) }
	if len(accepted) == 0 {
		line("versions accepted:", pt.bad("none"))
	} else {
		line("versions accepted:", strings.Join(accepted, ", "))
	}
	if len(refused) > 0 {
		line("versions refused:", pt.dim(strings.Join(refused, "; ")))
	}
	suite := func(s *deep.Suite) string {
		if s == nil {
			return "-"
		}
		text := s.String()
		if s.Bits < policy.DefaultBits {
			return pt.bad(text)
		}
		return text
	}
	line("weakest:", suite(rep.Weakest))
	line("strongest:", suite(rep.Strongest))
	line("cipher order:", string(rep.Preference))
	nego := func(n deep.Negotiation) string {
		switch {
		case n.Accepted:
			return suite(n.Suite)
		case n.Error != "":
			return pt.warn("error: " + n.Error)
		}
		return pt.bad("no common suite (" + n.Refusal + ")")
	}
	line("default OpenSSL gets:", nego(rep.OpenSSLDefault))
	line("smgctl relay gets:", nego(rep.Relay))
	line("connections:", fmt.Sprintf("%d in %v", rep.Connections, rep.Elapsed.Round(1e6)))
	for _, e := range rep.Errors {
		line("incomplete:", pt.warn(e))
	}
	var rows [][]string
	for _, s := range rep.Accepted() {
		bits := strconv.Itoa(s.Bits)
		if s.Bits < policy.DefaultBits {
			bits = pt.bad(bits)
		}
		rows = append(rows, []string{indent + policy.VersionName(s.Version), fmt.Sprintf("0x%04x", s.ID), s.Name, bits})
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return renderTable(w, []string{indent + "version", "id", "suite", "bits"}, rows)
}
