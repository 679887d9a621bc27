package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/internal/testpeer"
)

func TestParseSTSPolicy(t *testing.T) {
	tests := []struct {
		name, in string
		want     STSPolicy
		errHas   string
	}{
		{name: "rfc example", in: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			want: STSPolicy{Version: "STSv1", Mode: "enforce", MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800}},
		{name: "LF and spaces, unknown key", in: "version:STSv1\nmode : testing\nmx:  MX.Example.COM. \nmax_age: 0\nextension: whatever\n",
			want: STSPolicy{Version: "STSv1", Mode: "testing", MX: []string{"mx.example.com"}, MaxAge: 0}},
		{name: "none without mx", in: "version: STSv1\nmode: none\nmax_age: 86400\n", want: STSPolicy{Version: "STSv1", Mode: "none", MaxAge: 86400}},
		{name: "first of a repeated key wins", in: "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 1\n",
			want: STSPolicy{Version: "STSv1", Mode: "enforce", MX: []string{"a.test"}, MaxAge: 1}},
		{name: "bad version", in: "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", errHas: "version"},
		{name: "bad mode", in: "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", errHas: "mode"},
		{name: "max_age too big", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", errHas: "max_age"},
		{name: "max_age negative", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", errHas: "max_age"},
		{name: "no max_age", in: "version: STSv1\nmode: enforce\nmx: a.test\n", errHas: "max_age"},
		{name: "no mx in enforce", in: "version: STSv1\nmode: enforce\nmax_age: 5\n", errHas: "mx"},
		{name: "no version", in: "mode: enforce\nmx: a.test\nmax_age: 5\n", errHas: "version"},
		{name: "bad mx", in: "version: STSv1\nmode: enforce\nmx: a b.test\nmax_age: 5\n", errHas: "mx"},
		{name: "double wildcard", in: "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 5\n", errHas: "mx"},
		{name: "no colon", in: "version STSv1\n", errHas: "no ':'"},
		{name: "html", in: "<html><body>404</body></html>", errHas: "no ':'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSTSPolicy([]byte(tc.in))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != tc.want.Version || got.Mode != tc.want.Mode || got.MaxAge != tc.want.MaxAge || strings.Join(got.MX, ",") != strings.Join(tc.want.MX, ",") {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMatchesMX(t *testing.T) {
	p := STSPolicy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":   true,
		"MAIL.example.com.":  true,
		"mx1.example.net":    true,
		"example.net":        false, // the wildcard needs one label
		"a.b.example.net":    false, // and only one (RFC 8461 §4.1)
		"mail.example.com.x": false,
		"xmail.example.com":  false,
		".example.net":       false,
	} {
		if got := p.MatchesMX(host); got != want {
			t.Errorf("MatchesMX(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseSTSRecord(t *testing.T) {
	tests := []struct {
		txts   []string
		id     string
		errHas string
	}{
		{txts: []string{"v=STSv1; id=20160831085700Z;"}, id: "20160831085700Z"},
		{txts: []string{"v=spf1 -all", "v=STSv1; id=abc"}, id: "abc"},
		{txts: []string{"v=STSv1;id=abc; ext=1"}, id: "abc"},
		{txts: []string{"v=STSv1; id=a", "v=STSv1; id=b"}, errHas: "exactly one"},
		{txts: []string{"v=STSv1; id="}, errHas: "id"},
		{txts: []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, errHas: "id"},
		{txts: []string{"v=STSv1; id=a-b"}, errHas: "id"},
		{txts: []string{"v=STSv10; id=a"}, errHas: "no v=STSv1"},
		{txts: nil, errHas: "no v=STSv1"},
	}
	for _, tc := range tests {
		id, err := ParseSTSRecord(tc.txts)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%q: err = %v, want %q", tc.txts, err, tc.errHas)
			}
			continue
		}
		if err != nil || id != tc.id {
			t.Errorf("%q: id %q err %v, want %q", tc.txts, id, err, tc.id)
		}
	}
}

// stsServer serves handler over HTTPS as mta-sts.<domain> with a
// certificate from ca, and returns a client that reaches it for any name.
func stsServer(t *testing.T, ca *testpeer.CA, domain string, handler http.HandlerFunc) *http.Client {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "mta-sts."+domain).TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	c := stsClientForTest(ca, addr)
	return c
}

func stsClientForTest(ca *testpeer.CA, addr string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig: tlsClientConfig(ca.Pool()),
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestFetchSTSPolicy(t *testing.T) {
	ca := testpeer.NewCA(t)
	good := "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 86400\r\n"
	tests := []struct {
		name    string
		domain  string
		handler http.HandlerFunc
		errHas  string
	}{
		{name: "ok", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.a.test" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(good))
		}},
		{name: "redirect not followed", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.a.test/elsewhere", http.StatusFound)
		}, errHas: "302"},
		{name: "404", domain: "a.test", handler: http.NotFound, errHas: "404"},
		{name: "wrong type", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(good))
		}, errHas: "Content-Type"},
		{name: "too big", domain: "a.test", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(good + strings.Repeat("x: y\r\n", maxSTSPolicy/6+10)))
		}, errHas: "larger than"},
		{name: "certificate for another name", domain: "b.test", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(good))
		}, errHas: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := stsServer(t, ca, "a.test", tc.handler)
			p, err := fetchSTSPolicy(context.Background(), c, tc.domain)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil || p.Mode != "enforce" || !p.MatchesMX("mx.a.test") {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
}

func FuzzParseSTSPolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: none\nmax_age: 0\n",
		"version: STSv1\nmode: testing\nmx: *.a\nmax_age: 31557600",
		"", ":", "mx: *.", "max_age: 99999999999999999999",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseSTSPolicy(body)
		if err != nil {
			return
		}
		if p.Version != "STSv1" || p.MaxAge < 0 || p.MaxAge > maxMaxAge || (p.Mode != "none" && len(p.MX) == 0) {
			t.Fatalf("accepted an invalid policy %+v from %q", p, body)
		}
		for _, m := range p.MX {
			if !validMXPattern(m) || m != strings.ToLower(m) {
				t.Fatalf("bad pattern %q accepted", m)
			}
			// A pattern matches itself when it is a plain name, and a
			// wildcard matches one label in its place.
			if rest, ok := strings.CutPrefix(m, "*."); ok {
				if !p.MatchesMX("x." + rest) {
					t.Fatalf("%q does not match x.%s", m, rest)
				}
			} else if !p.MatchesMX(m) {
				t.Fatalf("%q does not match itself", m)
			}
		}
	})
}
