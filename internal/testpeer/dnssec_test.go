package testpeer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestSignedDNS: nsd serves a signed and an unsigned zone, unbound
// validates: AD for the signed zone, SERVFAIL for a name made bogus on
// purpose (the rest of its zone still AD), no AD for the unsigned zone.
func TestSignedDNS(t *testing.T) {
	ca := NewCA(t)
	leaf := ca.Issue(t, "mx.dane.test")
	s := StartSignedDNS(t,
		Zone{Name: "dane.test", Records: []string{
			"mx IN A 127.64.0.1",
			TLSARecord("mx.dane.test", 25, leaf.TLSA()),
			TLSARecord("bad.dane.test", 25, ca.TLSA()),
		}, Bogus: []string{"_25._tcp.bad"}},
		Zone{Name: "plain.test", Unsigned: true, Records: []string{"mx 300 IN A 127.64.0.2"}},
		// Unsigned below a signed zone: insecure, not bogus.
		Zone{Name: "plain.dane.test", Unsigned: true, Records: []string{"mx 300 IN A 127.64.0.3"}},
	)
	q := func(name string, qt uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.SetEdns0(1232, true)
		m.AuthenticatedData = true
		r, err := dns.Exchange(m, s.Addr())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	if r := q("_25._tcp.mx.dane.test", dns.TypeTLSA); r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData || len(r.Answer) == 0 {
		t.Errorf("signed TLSA: %v", r)
	}
	if r := q("_25._tcp.bad.dane.test", dns.TypeTLSA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("bogus TLSA: %v", r)
	}
	if r := q("mx.plain.test", dns.TypeA); r.Rcode != dns.RcodeSuccess || r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("unsigned A: %v", r)
	}
	if r := q("mx.plain.dane.test", dns.TypeA); r.Rcode != dns.RcodeSuccess || r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("unsigned A below a signed zone: %v", r)
	}
	if r := q("nowhere.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("outside: %v", r)
	}
}

// TestMTASTSHost: the policy host's records, published in a signed zone,
// lead an HTTPS client trusting only the test CA to the policy; the host
// can be swapped to another handler, stopped (connections refused) and
// started again.
func TestMTASTSHost(t *testing.T) {
	ca := NewCA(t)
	policy := MTASTSPolicy("enforce", 86400, "mx.sts.test", "*.sts.test")
	host := StartMTASTSHost(t, ca, "sts.test", policy)
	s := StartSignedDNS(t, Zone{Name: "sts.test", Records: host.MTASTSRecords("sts.test", "20261204")})

	lookup := func(name string, qt uint16) dns.RR {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.SetEdns0(1232, true)
		r, err := dns.Exchange(m, s.Addr())
		if err != nil || !r.AuthenticatedData {
			t.Fatalf("%s: %v %v", name, r, err)
		}
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == qt {
				return rr
			}
		}
		t.Fatalf("%s: no %s in %v", name, dns.TypeToString[qt], r)
		return nil
	}
	if txt := lookup("_mta-sts.sts.test", dns.TypeTXT).(*dns.TXT).Txt; len(txt) != 1 || txt[0] != "v=STSv1; id=20261204" {
		t.Fatalf("TXT %q", txt)
	}
	ip := lookup("mta-sts.sts.test", dns.TypeA).(*dns.A).A.String()

	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ip, port))
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := "https://mta-sts.sts.test" + MTASTSPath
	get := func() (*http.Response, string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	resp, body, err := get()
	if err != nil || resp.StatusCode != 200 || body != policy || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("policy: %v %q %v", resp, body, err)
	}

	host.SetHandler(http.RedirectHandler("https://elsewhere.test/", http.StatusMovedPermanently))
	if resp, _, err := get(); err != nil || resp.StatusCode != http.StatusMovedPermanently {
		t.Fatalf("redirect: %v %v", resp, err)
	}

	host.Stop()
	if _, _, err := get(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("stopped host: %v, want connection refused", err)
	}
	host.SetHandler(MTASTSHandler(policy))
	host.Start()
	if resp, body, err := get(); err != nil || body != policy {
		t.Fatalf("restarted: %v %q %v", resp, body, err)
	}
	if n := host.Requests(); n != 3 {
		t.Errorf("Requests() = %d, want 3", n)
	}
}

// TestDANEPeers: the pieces a DANE test puts together agree with each
// other. A Postfix MX serving its certificate and the CA (SendCA), a signed
// zone publishing its MX, address and TLSA records (Leaf.TLSA 3 1 1 for
// both served keys, CA.TLSA 2 1 1): the validated TLSA records match what
// the MX really serves over STARTTLS.
func TestDANEPeers(t *testing.T) {
	ca := NewCA(t)
	mx := StartPostfix(t, PostfixOptions{TLS: TLSModern, CA: ca, Hostname: "mx.dane.test", SendCA: true})
	s := StartSignedDNS(t, Zone{Name: "dane.test", Records: []string{
		"@ IN MX 10 mx",
		"mx IN A " + mx.IP.String(),
		TLSARecord("mx.dane.test", 25, mx.Certs[0].TLSA()),
		TLSARecord("mx.dane.test", 25, mx.Certs[1].TLSA()),
		TLSARecord("mx.dane.test", 25, ca.TLSA()),
	}})

	m := new(dns.Msg)
	m.SetQuestion("_25._tcp.mx.dane.test.", dns.TypeTLSA)
	m.SetEdns0(1232, true)
	r, err := dns.Exchange(m, s.Addr())
	if err != nil || !r.AuthenticatedData {
		t.Fatalf("TLSA: %v %v", r, err)
	}
	published := map[string]bool{}
	for _, rr := range r.Answer {
		if tlsa, ok := rr.(*dns.TLSA); ok {
			published[fmt.Sprintf("%d %d %d %s", tlsa.Usage, tlsa.Selector, tlsa.MatchingType, tlsa.Certificate)] = true
		}
	}
	if len(published) != 3 {
		t.Fatalf("published TLSA %v, want 3", published)
	}

	offered, st, err := startTLS(t, mx.Addr(), &tls.Config{InsecureSkipVerify: true, ServerName: "mx.dane.test"})
	if !offered || err != nil {
		t.Fatalf("STARTTLS: offered %v, %v", offered, err)
	}
	chain := st.PeerCertificates
	if len(chain) != 2 {
		t.Fatalf("served chain has %d certificates, want leaf and CA", len(chain))
	}
	if ee := TLSAData(TLSADANEEE, TLSASPKI, TLSASHA256, chain[0]); !published[ee] {
		t.Errorf("served leaf %s is not published", ee)
	}
	if ta := TLSAData(TLSADANETA, TLSASPKI, TLSASHA256, chain[1]); !published[ta] {
		t.Errorf("served CA %s is not published", ta)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "mx.dane.test", Roots: ca.Pool()}); err != nil {
		t.Errorf("leaf does not chain to the CA for mx.dane.test: %v", err)
	}
}

// TestSignedDNSCleanup: when the test ends, nsd and unbound are gone
// (their ports free again) and so is their directory.
func TestSignedDNSCleanup(t *testing.T) {
	var s *SignedDNS
	t.Run("running", func(t *testing.T) {
		s = StartSignedDNS(t, Zone{Name: "gone.test"})
	})
	for _, ip := range []net.IP{s.AuthIP, s.ResolverIP} {
		addr := net.JoinHostPort(ip.String(), "53")
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			t.Errorf("%s still taken after the test: %v", addr, err)
			continue
		}
		pc.Close()
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", s.Dir, err)
	}
}

// TestSignedDNSUpdate: Update serves new zone contents at once (a new
// MTA-STS id, a TLSA made bogus), still validated with the old keys.
func TestSignedDNSUpdate(t *testing.T) {
	zone := func(id string, bogus ...string) Zone {
		return Zone{Name: "upd.test", Bogus: bogus, Records: []string{
			`_mta-sts 300 IN TXT "v=STSv1; id=` + id + `"`,
			"_25._tcp.mx 300 IN TLSA 3 1 1 " + strings.Repeat("ab", 32),
		}}
	}
	s := StartSignedDNS(t, zone("1"))
	q := func(name string, qt uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.SetEdns0(1232, true)
		r, err := dns.Exchange(m, s.Addr())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	txt := func() string {
		t.Helper()
		r := q("_mta-sts.upd.test", dns.TypeTXT)
		for _, rr := range r.Answer {
			if x, ok := rr.(*dns.TXT); ok && r.AuthenticatedData {
				return strings.Join(x.Txt, "")
			}
		}
		t.Fatalf("TXT: %v", r)
		return ""
	}
	if got := txt(); got != "v=STSv1; id=1" {
		t.Fatalf("before: %q", got)
	}
	if r := q("_25._tcp.mx.upd.test", dns.TypeTLSA); r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData {
		t.Fatalf("TLSA before: %v", r)
	}
	s.Update(zone("2", "_25._tcp.mx"))
	if got := txt(); got != "v=STSv1; id=2" {
		t.Errorf("after: %q", got)
	}
	if r := q("_25._tcp.mx.upd.test", dns.TypeTLSA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("TLSA made bogus: %v", r)
	}
}
