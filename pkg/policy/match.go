package policy

import (
	"strings"

	"github.com/smgctl/smgctl/pkg/address"
)

// Policy is a compiled, read-only policy: safe for concurrent lookups.
type Policy struct {
	index    map[string]*Entry // Target.Key() → entry, catch-all excluded
	catchAll *Entry
	entries  []*Entry
}

// New indexes entries. A later entry for the same target wins; Parse has
// already refused duplicates in files.
func New(entries []*Entry) *Policy {
	p := &Policy{index: make(map[string]*Entry, len(entries)), entries: entries}
	for _, e := range entries {
		if e.Target.Kind == KindCatchAll {
			p.catchAll = e
			continue
		}
		p.index[e.Target.Key()] = e
	}
	return p
}

// Entries returns the entries in file order.
func (p *Policy) Entries() []*Entry { return p.entries }

// Len is the number of entries.
func (p *Policy) Len() int { return len(p.entries) }

// Match is the result of a lookup: the entry that applies, if any, and so
// the requirement.
type Match struct {
	Entry *Entry // nil: no entry applies, opportunistic TLS
}

// Requirement is what the connection for this recipient must achieve.
func (m Match) Requirement() Requirement {
	if m.Entry == nil {
		return Requirement{Options: Options{Bits: 0, Mode: ModeOff}}
	}
	return Requirement{Options: m.Entry.Options, Target: m.Entry.Target.Key(), Line: m.Entry.Line}
}

// maxStack is the longest recipient looked up without allocating.
const maxStack = 320

// Lookup finds the entry for a recipient address or a bare domain. Order
// (Sendmail's TLS_Rcpt): local@domain, the domain, each parent domain,
// then the catch-all; the first that exists wins. It costs O(labels) map
// probes and, for ASCII input, no allocation.
func (p *Policy) Lookup(recipient string) Match {
	var buf [maxStack]byte
	var key []byte
	if len(recipient) <= maxStack && address.IsASCII(recipient) {
		key = buf[:len(recipient)]
		for i := 0; i < len(recipient); i++ {
			c := recipient[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key[i] = c
		}
		if n := len(key); n > 0 && key[n-1] == '.' {
			key = key[:n-1]
		}
	} else {
		key = []byte(normalizeSlow(recipient))
	}

	domainStart := 0
	if at := lastIndex(key, '@'); at >= 0 {
		if e := p.index[string(key)]; e != nil {
			return Match{e}
		}
		domainStart = at + 1
	}
	for i := domainStart; i < len(key); {
		if e := p.index[string(key[i:])]; e != nil {
			return Match{e}
		}
		dot := indexFrom(key, '.', i)
		if dot < 0 {
			break
		}
		i = dot + 1
	}
	if p.catchAll != nil {
		return Match{p.catchAll}
	}
	return Match{}
}

// LookupMailbox finds the entry for a recipient as the relay holds it
// (package address): its canonical domain, its local part as written on
// the wire. An address literal names no domain, so only the catch-all can
// apply to it.
func (p *Policy) LookupMailbox(m address.Mailbox) Match {
	if m.IsLiteral() {
		return Match{p.catchAll}
	}
	return p.Lookup(address.QuoteLocal(m.Local) + "@" + m.Domain)
}

// normalizeSlow lower-cases an address or domain with non-ASCII parts and
// converts its domain to A-labels, so U-label recipients match A-label
// entries. Unconvertible domains are looked up as given.
func normalizeSlow(s string) string {
	s = strings.TrimSuffix(s, ".")
	local, domain, hasAt := "", s, false
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		local, domain, hasAt = strings.ToLower(s[:at]), s[at+1:], true
	}
	if d, err := NormalizeDomain(domain); err == nil {
		domain = d
	} else {
		domain = strings.ToLower(domain)
	}
	if hasAt {
		return local + "@" + domain
	}
	return domain
}

func lastIndex(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func indexFrom(b []byte, c byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}
