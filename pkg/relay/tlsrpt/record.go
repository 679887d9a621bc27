// Package tlsrpt sends the relay's daily TLS-RPT reports (RFC 8460): once
// a day, shortly after midnight UTC, it builds the reports on the day
// before from the audit log (pkg/audit/tlsrpt), looks up each policy
// domain's _smtp._tls record, and sends the report to every rua: by mail
// through the relay's own queue, or by HTTPS POST.
package tlsrpt

import (
	"errors"
	"net/url"
	"strings"
)

// RUA is one reporting address of a TLS-RPT record.
type RUA struct {
	// Scheme is "mailto" or "https".
	Scheme string
	// Address is the mailbox (mailto) or the whole URL (https).
	Address string
}

func (r RUA) String() string {
	if r.Scheme == "mailto" {
		return "mailto:" + r.Address
	}
	return r.Address
}

// ErrNoRecord: the domain publishes no usable TLS-RPT record.
var ErrNoRecord = errors.New("no TLS-RPT record")

// ParseRecords picks the TLS-RPT record among a name's TXT records and
// returns its rua URIs. RFC 8460 §3: records not starting with
// "v=TLSRPTv1" are ignored, and unless exactly one is left the domain
// has no TLS-RPT policy. URIs of schemes other than mailto and https are
// skipped (the RFC defines only these two).
func ParseRecords(txts []string) ([]RUA, error) {
	var rec string
	n := 0
	for _, t := range txts {
		v, _, _ := strings.Cut(t, ";")
		if strings.TrimSpace(v) == "v=TLSRPTv1" {
			rec = t
			n++
		}
	}
	if n != 1 {
		return nil, ErrNoRecord
	}
	var ruas []RUA
	for field := range strings.SplitSeq(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for u := range strings.SplitSeq(v, ",") {
			u = strings.TrimSpace(u)
			switch {
			case strings.HasPrefix(strings.ToLower(u), "mailto:"):
				// RFC 8460 §3: commas and semicolons in a URI are
				// percent-encoded; decode the mailbox.
				addr, err := url.PathUnescape(u[len("mailto:"):])
				if err == nil && strings.Contains(addr, "@") {
					ruas = append(ruas, RUA{Scheme: "mailto", Address: addr})
				}
			case strings.HasPrefix(strings.ToLower(u), "https://"):
				if p, err := url.Parse(u); err == nil && p.Host != "" {
					ruas = append(ruas, RUA{Scheme: "https", Address: u})
				}
			}
		}
	}
	if len(ruas) == 0 {
		return nil, ErrNoRecord
	}
	return ruas, nil
}
