package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
)

// DefaultFetchTimeout bounds one policy fetch, from the address lookup
// to the last byte of the body.
const DefaultFetchTimeout = 10 * time.Second

// The TLS-RPT result types (RFC 8460 §4.3.2.2) of a policy that was
// published but could not be used.
const (
	FailureFetch   = "sts-policy-fetch-error" // no HTTP 200 text/plain body within the limits
	FailureInvalid = "sts-policy-invalid"     // the body is not a valid policy
	FailureWebPKI  = "sts-webpki-invalid"     // the HTTPS certificate did not verify
)

// FetchError is a failed policy fetch. ResultType is its TLS-RPT result
// type (one of the Failure constants).
type FetchError struct {
	URL        string
	ResultType string
	Err        error
}

func (e *FetchError) Error() string { return e.URL + ": " + e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// FetcherConfig configures a Fetcher.
type FetcherConfig struct {
	// Resolver finds the policy host's addresses; required. The system
	// resolver is never used, so labs and tests see their own DNS.
	Resolver *mx.Resolver
	// Roots verify the HTTPS server (RFC 8461 §3.3: WebPKI). The relay
	// and the probe pass the system roots plus the operator's CA file
	// (smtpclient.RootPool); nil means the system roots alone.
	Roots *x509.CertPool
	// Timeout bounds one fetch; 0 means DefaultFetchTimeout.
	Timeout time.Duration
	// Port is dialled instead of 443, for labs and tests; the URL, the
	// Host header and the name checked in the certificate do not change.
	Port int
}

// Fetcher fetches policy files. It is safe for concurrent use.
type Fetcher struct {
	client *http.Client
}

// NewFetcher returns a Fetcher that dials the addresses cfg.Resolver
// gives, follows no redirects and uses no proxy.
func NewFetcher(cfg FetcherConfig) (*Fetcher, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("mtasts: no resolver")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultFetchTimeout
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("mtasts: port %d out of range", cfg.Port)
	}
	d := &net.Dialer{Timeout: cfg.Timeout}
	r := cfg.Resolver
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if cfg.Port != 0 {
				port = strconv.Itoa(cfg.Port)
			}
			addrs, err := r.LookupAddrs(ctx, host)
			if err != nil {
				return nil, err
			}
			var last error
			for _, a := range addrs {
				c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
				if err == nil {
					return c, nil
				}
				last = err
			}
			return nil, last
		},
		// RFC 8461 §3.3: the certificate must be valid for
		// mta-sts.<domain> by the WebPKI; TLS 1.2 at least, as for mail.
		TLSClientConfig:        &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		DisableKeepAlives:      true,
		Proxy:                  nil, // a proxy would resolve names itself, past Resolver
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Fetcher{client: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// URL is where domain's policy is (RFC 8461 §3.3).
func URL(domain string) string {
	return "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
}

// Fetch GETs domain's policy (RFC 8461 §3.3): HTTP 200 only (a redirect
// is a failure), Content-Type text/plain (parameters ignored), a body of
// at most MaxPolicySize bytes (a longer one is refused whole), parsed by
// ParsePolicy. Errors are *FetchError.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (Policy, error) {
	url := URL(domain)
	fail := func(kind string, err error) (Policy, error) {
		return Policy{}, &FetchError{URL: url, ResultType: kind, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(FailureFetch, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return fail(FailureWebPKI, cv)
		}
		return fail(FailureFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(FailureFetch, fmt.Errorf("HTTP %s, want 200 (redirects are not followed)", resp.Status))
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return fail(FailureFetch, fmt.Errorf("Content-Type %q, want text/plain", ct))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return fail(FailureFetch, err)
	}
	if len(body) > MaxPolicySize {
		return fail(FailureFetch, fmt.Errorf("policy larger than %d bytes", MaxPolicySize))
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return fail(FailureInvalid, err)
	}
	return p, nil
}
