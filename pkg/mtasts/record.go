package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/smgctl/smgctl/pkg/mx"
)

// ErrNoRecord: the domain publishes no _mta-sts TXT record starting
// "v=STSv1", so it has no MTA-STS.
var ErrNoRecord = errors.New("no MTA-STS record")

// ErrInvalidRecord: the domain publishes more than one v=STSv1 record or
// an invalid one; RFC 8461 §3.1 says that too means no MTA-STS.
var ErrInvalidRecord = errors.New("invalid MTA-STS record")

// ParseRecord checks the TXT records of _mta-sts.<domain> (RFC 8461
// §3.1) and returns the policy id. Records not starting with "v=STSv1"
// are discarded; exactly one must remain, made of ";"-separated
// key=value fields with v=STSv1 first, one id of 1–32 letters and
// digits, and extension fields of the grammar's characters. No record
// wraps ErrNoRecord, every other failure ErrInvalidRecord.
func ParseRecord(txts []string) (string, error) {
	var recs []string
	for _, t := range txts {
		if rest, ok := strings.CutPrefix(t, "v=STSv1"); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t') {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", fmt.Errorf("%w: no v=STSv1 TXT record", ErrNoRecord)
	case 1:
	default:
		return "", fmt.Errorf("%w: %d v=STSv1 TXT records, want exactly one", ErrInvalidRecord, len(recs))
	}
	id := ""
	for i, f := range strings.Split(recs[0], ";") {
		f = strings.Trim(f, " \t")
		if i == 0 {
			continue // "v=STSv1", checked above
		}
		if f == "" {
			continue // the optional final ";" (and errata 6285's spaces)
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok || !validKey(k) || v == "" || strings.ContainsAny(v, " \t=") || !printableASCII(v) {
			return "", fmt.Errorf("%w: field %q is not key=value", ErrInvalidRecord, clip(f))
		}
		if k == "id" {
			if id != "" {
				return "", fmt.Errorf("%w: id given twice", ErrInvalidRecord)
			}
			id = v
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool { return r > 0x7f || !isAlnum(byte(r)) }) >= 0 {
		return "", fmt.Errorf("%w: id %q: want 1 to 32 letters and digits", ErrInvalidRecord, clip(id))
	}
	return id, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// LookupRecord asks r for _mta-sts.<domain> and returns the policy id.
// NXDOMAIN, no data and no v=STSv1 record give an error wrapping
// ErrNoRecord, a bad record one wrapping ErrInvalidRecord (both: the
// domain has no MTA-STS, IsNoPolicy); any other error is the DNS failure (an *mx.Error; mx.IsTemporary tells whether to try again).
func LookupRecord(ctx context.Context, r *mx.Resolver, domain string) (string, error) {
	txts, err := r.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if mx.IsNotFound(err) {
			return "", fmt.Errorf("%w: _mta-sts.%s does not exist", ErrNoRecord, domain)
		}
		return "", err
	}
	id, err := ParseRecord(txts)
	if err != nil {
		return "", fmt.Errorf("_mta-sts.%s: %w", domain, err)
	}
	return id, nil
}

// IsNoPolicy reports whether err from LookupRecord means the domain has
// no MTA-STS (as opposed to a DNS failure).
func IsNoPolicy(err error) bool {
	return errors.Is(err, ErrNoRecord) || errors.Is(err, ErrInvalidRecord)
}
