package dane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// State is what a host's TLSA records demand (RFC 7672 §2.2).
type State string

const (
	// StateNone: DANE does not apply — the MX RRset or the host's addresses
	// are not DNSSEC-authentic, or the TLSA records are absent (by
	// authenticated denial) or not authentic. The other sources decide.
	StateNone State = "none"
	// StateUsable: authentic TLSA records, some usable: TLS is required and
	// the chain must match one of them (Verify).
	StateUsable State = "usable"
	// StateUnusable: authentic TLSA records, none usable: TLS is required,
	// the server is not authenticated (RFC 7672 §3.1.3).
	StateUnusable State = "unusable"
	// StateFailed: the TLSA lookup failed (SERVFAIL — also what a validating
	// resolver answers for a bogus signature —, a timeout, a CNAME
	// loop). The host must not be used now and mail defers; never a
	// downgrade to opportunistic TLS (RFC 7672 §2.2).
	StateFailed State = "failed"
)

// Host is the DANE state of one MX host.
type Host struct {
	State State
	// Owner is the TLSA RRset's owner name, "_25._tcp.mx.example"
	// (for StateNone: at the host name).
	Owner string
	// Base is the TLSA base domain: the host name or, when its records
	// were found there, its CNAME-expanded name (RFC 7672 §2.2.2). SNI
	// should name it (RFC 7672 §8.1).
	Base string
	// Records: every record of the RRset (StateUsable, StateUnusable).
	Records []mx.TLSA
	// Names are the reference identifiers a DANE-TA leaf must carry:
	// the MX host name and its CNAME-expanded form (RFC 7672 §3.2.2).
	Names []string
	// Reason says, for StateNone, why DANE does not apply; for StateFailed and
	// StateUnusable it is the diagnostic, starting "DANE: ".
	Reason string
	// Err, for StateFailed, is an *mx.Error that is always temporary.
	Err error
}

// Verify matches chain against h's records, owner and names.
func (h Host) Verify(chain []*x509.Certificate, now time.Time) Result {
	return Verify(h.Records, chain, h.Owner, h.Names, now)
}

// Lookup finds the DANE state of host, one MX host of a domain whose MX
// RRset (or, for an implicit MX, its absence) was DNSSEC-authentic when
// mxAuthentic is true (mx.Result.AD; for a next hop not found by MX,
// whether its name is itself authentic — pass true and let host.AD
// decide). port is the SMTP port (25). RFC 7672 §2.2: TLSA records are
// asked only when the MX RRset and the host's address records were
// authentic; at the CNAME-expanded name first, then at the host name
// (§2.2.2).
func Lookup(ctx context.Context, r *mx.Resolver, mxAuthentic bool, host mx.Host, port int) Host {
	out, ok := gate(mxAuthentic, host, port)
	if !ok {
		return out
	}
	out, _ = lookupTLSA(ctx, r, out, port)
	return out
}

// gate is Lookup's first part, without DNS: the host's Names, and
// whether its TLSA records may be asked at all (ok); when not, out is the
// StateNone answer with its reason.
func gate(mxAuthentic bool, host mx.Host, port int) (out Host, ok bool) {
	names := []string{host.Name}
	if host.Canonical != "" && host.Canonical != host.Name {
		names = append(names, host.Canonical)
	}
	out = Host{State: StateNone, Names: names, Base: host.Name, Owner: owner(host.Name, port)}
	if _, err := netip.ParseAddr(host.Name); err == nil {
		out.Reason = "an address literal has no TLSA records"
		return out, false
	}
	switch {
	case !mxAuthentic:
		out.Reason = "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)"
		return out, false
	case len(host.Addrs) == 0:
		out.Reason = "no address for " + host.Name
		return out, false
	case !host.AD:
		out.Reason = "address records of " + host.Name + " not DNSSEC-authenticated (RFC 7672 §2.2.2)"
		return out, false
	}
	return out, true
}

// lookupTLSA is Lookup's second part: the TLSA records at out.Names, the
// CNAME-expanded name first. ttl is how long the state may be kept: the
// smallest TTL of the answers it was made of (0: not to be kept).
func lookupTLSA(ctx context.Context, r *mx.Resolver, out Host, port int) (_ Host, ttl time.Duration) {
	host := out.Names[0]
	ttl = -1
	for _, base := range slices.Backward(out.Names) {
		t, err := r.LookupTLSA(ctx, base, port)
		out.Base, out.Owner = base, t.Name
		if err != nil {
			out.State = StateFailed
			out.Err = temporary(err, t.Name)
			out.Reason = fmt.Sprintf("DANE: TLSA lookup of %s failed: %v", t.Name, cause(err))
			return out, 0
		}
		if ttl < 0 || t.TTL < ttl {
			ttl = t.TTL
		}
		switch {
		case len(t.Records) == 0 && t.Secure:
			out.Reason = "no TLSA records at " + t.Name + " (authenticated denial)"
			continue
		case len(t.Records) == 0:
			out.Reason = "no TLSA records at " + t.Name
			continue
		case !t.Secure:
			out.Reason = "TLSA records at " + t.Name + " not DNSSEC-authenticated: ignored (RFC 7672 §2.2)"
			continue
		}
		out.Records, out.Reason = t.Records, ""
		out.State = StateUnusable
		if slices.ContainsFunc(t.Records, Usable) {
			out.State = StateUsable
		} else {
			out.Reason = fmt.Sprintf("DANE: no usable TLSA record at %s; TLS required without authentication", t.Name)
		}
		return out, ttl
	}
	// StateNone: back to the host name as the base, as for no DANE at all.
	out.Base, out.Owner = host, owner(host, port)
	return out, max(ttl, 0)
}

func owner(host string, port int) string { return fmt.Sprintf("_%d._tcp.%s", port, host) }

// temporary makes err an *mx.Error that says "temporary": any failed
// TLSA lookup defers (RFC 7672 §2.2), a CNAME loop included.
func temporary(err error, name string) error {
	var e *mx.Error
	if errors.As(err, &e) {
		c := *e
		c.Temporary = true
		return &c
	}
	return &mx.Error{Step: "TLSA", Name: name, Rcode: -1, Temporary: true, Err: err}
}

// cause is the part of a DNS error that says what went wrong.
func cause(err error) error {
	var e *mx.Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err
	}
	return err
}

// Facts is what the host's DANE state means for the decision, in
// pkg/policy's terms (policy does not import dane): the relay's courier
// and the probe both take a hop's facts from here, so they judge alike.
// name is the hop's name as the decision knows it.
func (h Host) Facts(name string) policy.HopFacts {
	facts := policy.HopFacts{Name: name}
	switch h.State {
	case StateUsable:
		facts.DANE = policy.DANEUsable
	case StateUnusable:
		facts.DANE = policy.DANEUnusable
	case StateFailed:
		facts.DANE = policy.DANEFailed
		var e *mx.Error
		switch {
		case errors.As(h.Err, &e) && e.Err != nil:
			facts.DANEError = e.Err.Error()
		case h.Err != nil:
			facts.DANEError = h.Err.Error()
		case h.Reason != "":
			facts.DANEError = h.Reason
		default:
			facts.DANEError = "lookup failed"
		}
	}
	return facts
}
