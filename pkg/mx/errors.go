package mx

import (
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// ErrNullMX says the domain publishes the RFC 7505 null MX "0 .": it
// accepts no mail. Senders must not try (RFC 7505 §3) and the relay
// returns the message with 556 5.1.10 (RFC 7505 §4.2, RFC 7504).
var ErrNullMX = errors.New("domain accepts no mail (null MX, RFC 7505)")

// ErrNoAddress says a name exists but has neither A nor AAAA records.
var ErrNoAddress = errors.New("no A or AAAA record")

// ErrCNAMELoop says a CNAME chain was longer than maxCNAME or looped.
var ErrCNAMELoop = errors.New("CNAME chain too long or looping")

// Error is a failed DNS step: which lookup, of which name, what went
// wrong, and whether trying again later could help. Like maddy's
// exterrors, the temporary-ness travels with the error so that a
// SERVFAIL can never turn into a bounce by accident.
type Error struct {
	// Step is the record type asked for: "MX", "A", "AAAA", "TXT", "TLSA".
	Step string
	// Name is the name whose lookup failed (after any CNAMEs).
	Name string
	// Rcode is the DNS response code (dns.RcodeNameError, ...), or -1
	// when no answer arrived at all.
	Rcode int
	// Temporary: SERVFAIL, REFUSED, timeouts and network errors are
	// worth retrying (RFC 5321 §5.1: a transient DNS error defers);
	// NXDOMAIN, a null MX and a name without addresses are not.
	Temporary bool
	Err       error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	return fmt.Sprintf("%s lookup of %s: %v (%s)", e.Step, e.Name, e.Err, kind)
}

func (e *Error) Unwrap() error { return e.Err }

// rcodeError is the error for a DNS response code that is not NOERROR.
type rcodeError int

func (r rcodeError) Error() string {
	if s, ok := dns.RcodeToString[int(r)]; ok {
		return s
	}
	return fmt.Sprintf("RCODE %d", int(r))
}

// IsTemporary reports whether err is a DNS failure worth retrying. Errors
// that are not from this package count as temporary: when unsure, defer
// rather than bounce.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	return err != nil
}

// IsNotFound reports whether err is an NXDOMAIN answer: the name does not
// exist at all.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Rcode == dns.RcodeNameError
}
