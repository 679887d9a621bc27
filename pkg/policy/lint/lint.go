// Package lint finds what is wrong, or probably unintended, in a policy
// file: errors the relay would refuse the file for, and warnings about
// entries that do nothing or do more than their author may think.
package lint

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Severity tells errors (the file is refused) from warnings.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Check names for findings; stable, for JSON output and for scripts.
const (
	CheckParse          = "parse"           // the file does not parse; the relay would refuse it
	CheckRedundant      = "redundant"       // a broader entry with the same options already covers it
	CheckExemptsNothing = "exempts-nothing" // mode=off with nothing broader to exempt from
	CheckCatchAll       = "catch-all"       // the catch-all applies to every recipient domain
	CheckPublicSuffix   = "public-suffix"   // an entry for a TLD or registry suffix
	CheckWeakBits       = "weak-bits"       // below RFC 9325's 112-bit floor
	CheckRouteUnused    = "route-unused"    // on-fail=route on an entry that never refuses a hop
)

// Finding is one problem, at one line of the file.
type Finding struct {
	Line     int      `json:"line"`
	Col      int      `json:"col,omitempty"`
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Target   string   `json:"target,omitempty"`
	Message  string   `json:"message"`
}

// Lint parses data as the policy file name and checks it. A parse error
// is the one error finding (the parser stops at the first); otherwise
// the findings are warnings, in line order.
func Lint(name string, data []byte) []Finding {
	f, err := policy.Parse(name, data)
	if err != nil {
		var pe *policy.ParseError
		if errors.As(err, &pe) {
			return []Finding{{Line: pe.Line, Col: pe.Col, Severity: Error, Check: CheckParse, Message: pe.Msg}}
		}
		return []Finding{{Severity: Error, Check: CheckParse, Message: err.Error()}}
	}
	return Entries(f.Entries())
}

// Entries checks parsed entries.
func Entries(entries []*policy.Entry) []Finding {
	p := policy.New(entries)
	var out []Finding
	add := func(e *policy.Entry, check, format string, args ...any) {
		out = append(out, Finding{Line: e.Line, Severity: Warning, Check: check,
			Target: e.Target.Key(), Message: fmt.Sprintf(format, args...)})
	}
	for _, e := range entries {
		broader := broaderEntry(p, e)
		switch {
		case e.Options.Mode == policy.ModeOff && e.Target.Kind == policy.KindCatchAll:
			add(e, CheckExemptsNothing, "the catch-all * has mode=off, which exempts nothing: it is the same as no catch-all")
		case e.Options.Mode == policy.ModeOff && broader == nil:
			add(e, CheckExemptsNothing, "%s has mode=off but no broader entry (parent domain or catch-all) applies, so it exempts it from nothing",
				describe(e))
		case e.Options.Mode == policy.ModeOff && broader.Options.Mode == policy.ModeOff:
			add(e, CheckRedundant, "%s has mode=off, and %s already exempts it", describe(e), describe(broader))
		case broader != nil && broader.Options == e.Options:
			add(e, CheckRedundant, "%s has the same options as %s, which already covers it", describe(e), describe(broader))
		}
		if e.Target.Kind == policy.KindCatchAll {
			switch e.Options.Mode {
			case policy.ModeEnforce:
				add(e, CheckCatchAll, "the catch-all * requires TLS with every recipient domain: mail to any domain that cannot meet it is %s",
					map[policy.OnFail]string{policy.OnFailBounce: "bounced", policy.OnFailDefer: "deferred, then bounced"}[e.Options.OnFail])
			case policy.ModeTesting:
				add(e, CheckCatchAll, "the catch-all * (mode=testing) records a would-be bounce for every recipient domain without sufficient TLS")
			}
		}
		if e.Target.Kind == policy.KindDomain {
			if suffix, _ := publicsuffix.PublicSuffix(e.Target.Domain); suffix == e.Target.Domain {
				add(e, CheckPublicSuffix, "%s is a public suffix (a top-level domain or registry): the entry covers every domain registered under it", e.Target.Display())
			}
		}
		if e.Options.OnFail == policy.OnFailRoute && e.Options.Mode != policy.ModeEnforce {
			add(e, CheckRouteUnused, "%s has mode=%s, which never refuses an MX host, so its on-fail=route:%s is never used",
				e.Target.Display(), e.Options.Mode, e.Options.Route)
		}
		if e.Options.Mode != policy.ModeOff && e.Options.Bits < policy.DefaultBits {
			add(e, CheckWeakBits, "%s accepts %d-bit encryption, below RFC 9325's floor of %d bits", e.Target.Display(), e.Options.Bits, policy.DefaultBits)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int { return a.Line - b.Line })
	return out
}

// broaderEntry is the entry that would apply to e's recipients if e were
// not there: for an address its domain's, for a domain its parent's, and
// the catch-all last. nil for the catch-all itself or when none exists.
func broaderEntry(p *policy.Policy, e *policy.Entry) *policy.Entry {
	switch e.Target.Kind {
	case policy.KindAddress:
		return p.Lookup(e.Target.Domain).Entry
	case policy.KindDomain:
		if _, parent, ok := strings.Cut(e.Target.Domain, "."); ok {
			return p.Lookup(parent).Entry
		}
		return p.Lookup("*").Entry // no parent: only the catch-all is broader
	}
	return nil
}

func describe(e *policy.Entry) string {
	if e.Target.Kind == policy.KindCatchAll {
		return fmt.Sprintf("the catch-all * (line %d)", e.Line)
	}
	return fmt.Sprintf("%s (line %d)", e.Target.Display(), e.Line)
}

// Failed reports whether findings fail a lint run: any error, or with
// strict any warning.
func Failed(findings []Finding, strict bool) bool {
	for _, f := range findings {
		if f.Severity == Error || strict {
			return true
		}
	}
	return false
}
