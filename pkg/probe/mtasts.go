package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// STSPolicy is a parsed MTA-STS policy (RFC 8461 §3.2).
type STSPolicy struct {
	Version string   `json:"version"`
	Mode    string   `json:"mode"` // enforce, testing, none
	MX      []string `json:"mx"`
	MaxAge  int      `json:"max_age"` // seconds
}

// maxSTSPolicy is the most a sender reads of a policy (RFC 8461 §3.3
// suggests 64 KiB).
const maxSTSPolicy = 64 * 1024

// maxMaxAge is RFC 8461 §3.2's upper bound: 31557600 seconds, a year.
const maxMaxAge = 31557600

// ParseSTSPolicy parses the body of mta-sts.txt. Lines are "key: value"
// ended by CRLF (LF accepted); unknown keys are ignored (§3.2). version,
// mode and max_age are required, and at least one mx unless mode is none.
func ParseSTSPolicy(body []byte) (STSPolicy, error) {
	var p STSPolicy
	seen := map[string]bool{}
	for n, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return p, fmt.Errorf("line %d: no ':' in %q", n+1, clip(line))
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key != "mx" && seen[key] {
			// §3.2: a key other than mx appears once; the first wins.
			continue
		}
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return p, fmt.Errorf("line %d: version %q, want STSv1", n+1, clip(value))
			}
			p.Version = value
		case "mode":
			switch value {
			case "enforce", "testing", "none":
				p.Mode = value
			default:
				return p, fmt.Errorf("line %d: mode %q, want enforce, testing or none", n+1, clip(value))
			}
		case "max_age":
			age, err := strconv.Atoi(value)
			if err != nil || age < 0 || age > maxMaxAge || len(value) > 10 {
				return p, fmt.Errorf("line %d: max_age %q, want 0 to %d", n+1, clip(value), maxMaxAge)
			}
			p.MaxAge = age
		case "mx":
			if !validMXPattern(value) {
				return p, fmt.Errorf("line %d: mx %q is not a host name or *.domain pattern", n+1, clip(value))
			}
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(value, ".")))
		}
	}
	switch {
	case p.Version == "":
		return p, errors.New("no version field")
	case p.Mode == "":
		return p, errors.New("no mode field")
	case !seen["max_age"]:
		return p, errors.New("no max_age field")
	case len(p.MX) == 0 && p.Mode != "none":
		return p, errors.New("no mx field")
	}
	return p, nil
}

func validMXPattern(s string) bool {
	s = strings.TrimPrefix(strings.TrimSuffix(s, "."), "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// MatchesMX reports whether host is allowed by the policy's mx patterns
// (RFC 8461 §4.1): an exact match, or "*.domain" matching exactly one
// label in front of domain.
func (p STSPolicy) MatchesMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if pat == host {
			return true
		}
	}
	return false
}

// ParseSTSRecord checks the _mta-sts TXT records (RFC 8461 §3.1): those
// not starting with "v=STSv1;" are discarded; exactly one must remain and
// carry an id of 1–32 letters and digits. It returns that id.
func ParseSTSRecord(txts []string) (string, error) {
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") || t == "v=STSv1" {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", errors.New("no v=STSv1 record")
	case 1:
	default:
		return "", fmt.Errorf("%d v=STSv1 records, want exactly one", len(recs))
	}
	id := ""
	for _, f := range strings.Split(recs[0], ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			if strings.TrimSpace(f) == "" {
				continue
			}
			return "", fmt.Errorf("field %q is not key=value", clip(f))
		}
		if k == "id" {
			id = v
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "", fmt.Errorf("id %q: want 1 to 32 letters and digits", clip(id))
	}
	return id, nil
}

// fetchSTSPolicy GETs https://mta-sts.<domain>/.well-known/mta-sts.txt
// (RFC 8461 §3.3): a valid certificate for that name, no redirects, 200
// only, text/plain, at most 64 KiB.
func fetchSTSPolicy(ctx context.Context, client *http.Client, domain string) (STSPolicy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return STSPolicy{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return STSPolicy{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// §3.3: "HTTP 3xx redirects MUST NOT be followed".
		return STSPolicy{}, fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return STSPolicy{}, fmt.Errorf("%s: Content-Type %q, want text/plain", url, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSTSPolicy+1))
	if err != nil {
		return STSPolicy{}, fmt.Errorf("%s: %v", url, err)
	}
	if len(body) > maxSTSPolicy {
		return STSPolicy{}, fmt.Errorf("%s: policy larger than %d bytes", url, maxSTSPolicy)
	}
	p, err := ParseSTSPolicy(body)
	if err != nil {
		return p, fmt.Errorf("%s: %v", url, err)
	}
	return p, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// tlsClientConfig is the HTTPS client's TLS: the certificate must verify
// for mta-sts.<domain> (RFC 8461 §3.3, RFC 6125).
func tlsClientConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// requirement is the policy as the decision takes it (pkg/policy), nil
// when the domain has none.
func (m MTASTSInfo) requirement() *policy.STS {
	if m.Policy == nil {
		return nil
	}
	return &policy.STS{ID: m.ID, Mode: policy.STSMode(m.Policy.Mode), MX: m.Policy.MX}
}
