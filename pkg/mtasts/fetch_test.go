package mtasts

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmx: *.b.a.test\r\nmax_age: 86400\r\n"

// lab is a private DNS zone and an HTTPS policy server for a.test (and
// any other domain given) with a certificate from a test CA.
type lab struct {
	ca  *testpeer.CA
	dns *testpeer.DNS
	res *mx.Resolver
	srv *testpeer.MTASTSServer
}

func newLab(t *testing.T, handler http.Handler, domains ...string) *lab {
	t.Helper()
	return newLabTB(t, handler, domains...)
}

func newLabTB(t testing.TB, handler http.Handler, domains ...string) *lab {
	t.Helper()
	l := &lab{ca: testpeer.NewCA(t), dns: testpeer.StartDNS(t)}
	var err error
	if l.res, err = mx.NewResolver(l.dns.Addr(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	l.srv = testpeer.ServeMTASTS(t, l.ca, l.dns, handler, domains...)
	return l
}

func (l *lab) fetcher(t *testing.T, timeout time.Duration) *Fetcher {
	t.Helper()
	f, err := NewFetcher(FetcherConfig{Resolver: l.res, Roots: l.ca.Pool(), Timeout: timeout, Port: l.srv.Port})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFetch(t *testing.T) {
	serve := func(ct, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.a.test" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ct)
			w.Write([]byte(body))
		}
	}
	full := goodPolicy + strings.Repeat("x: y\r\n", (MaxPolicySize-len(goodPolicy))/6)
	full += strings.Repeat("\n", MaxPolicySize-len(full))
	if len(full) != MaxPolicySize {
		t.Fatal(len(full))
	}
	tests := []struct {
		name    string
		domain  string
		handler http.HandlerFunc
		resType string // "" for success
		errHas  string
	}{
		{name: "good policy, charset parameter", domain: "a.test", handler: serve("text/plain; charset=utf-8", goodPolicy)},
		{name: "exactly 64 KiB", domain: "a.test", handler: serve("text/plain", full)},
		{name: "redirect not followed", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				serve("text/plain", goodPolicy)(w, r)
				return
			}
			http.Redirect(w, r, "https://mta-sts.a.test/elsewhere", http.StatusFound)
		}, resType: FailureFetch, errHas: "302"},
		{name: "404", domain: "a.test", handler: http.NotFound, resType: FailureFetch, errHas: "404"},
		{name: "wrong content type", domain: "a.test", handler: serve("text/html", goodPolicy), resType: FailureFetch, errHas: "Content-Type"},
		{name: "no content type", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			w.Write([]byte(goodPolicy))
		}, resType: FailureFetch, errHas: "Content-Type"},
		{name: "65 KiB refused, not truncated", domain: "a.test", handler: serve("text/plain", goodPolicy+strings.Repeat("x: y\r\n", 65*1024/6)), resType: FailureFetch, errHas: "larger than 65536"},
		{name: "invalid policy", domain: "a.test", handler: serve("text/plain", "version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n"), resType: FailureInvalid, errHas: "no mx"},
		{name: "certificate for another name", domain: "c.test", handler: serve("text/plain", goodPolicy), resType: FailureWebPKI, errHas: "certificate"},
		{name: "no address for the policy host", domain: "nowhere.test", handler: serve("text/plain", goodPolicy), resType: FailureFetch, errHas: "mta-sts.nowhere.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.handler, "a.test")
			l.dns.AddA("mta-sts.c.test", "127.0.0.1") // served, with a.test's certificate
			p, err := l.fetcher(t, 5*time.Second).Fetch(context.Background(), tc.domain)
			if tc.resType == "" {
				if err != nil || p.Mode != ModeEnforce || !p.MatchMX("mx.a.test") || !p.MatchMX("x.b.a.test") {
					t.Fatalf("%+v %v", p, err)
				}
				return
			}
			var fe *FetchError
			if !errors.As(err, &fe) || fe.ResultType != tc.resType || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want %s with %q", err, tc.resType, tc.errHas)
			}
		})
	}
}

// A certificate the operator's CA did not issue is refused: the test CA
// is trusted only when passed in.
func TestFetchUntrustedCA(t *testing.T) {
	l := newLab(t, testpeer.MTASTSHandler(goodPolicy), "a.test")
	f, err := NewFetcher(FetcherConfig{Resolver: l.res, Roots: testpeer.NewCA(t).Pool(), Port: l.srv.Port})
	if err != nil {
		t.Fatal(err)
	}
	var fe *FetchError
	if _, err := f.Fetch(context.Background(), "a.test"); !errors.As(err, &fe) || fe.ResultType != FailureWebPKI {
		t.Fatalf("err = %v, want %s", err, FailureWebPKI)
	}
}

// A server that never answers costs the timeout, not more.
func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	l := newLab(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }), "a.test")
	defer close(release)
	start := time.Now()
	_, err := l.fetcher(t, 300*time.Millisecond).Fetch(context.Background(), "a.test")
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}
