package probe

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/probe/deep"
)

// The what-if flags (--min-tls, --verify) replace the policy with the
// default entry so changed, like --require-bits; --deep's enumeration
// names the NULL suites a host accepts as a risk, without grading the
// hop on them. Real Postfix MX hosts: TLS 1.0 only, and NULL suites only.
func TestProbeWhatIfAndWeakSuites(t *testing.T) {
	testpeer.RequirePostfix(t)
	ca := testpeer.NewCA(t)
	var old, null *testpeer.Postfix
	done := make(chan bool, 2)
	go func() {
		old = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLS10Only, CA: ca})
		done <- true
	}()
	go func() {
		null = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNullOnly, CA: ca})
		done <- true
	}()
	<-done
	<-done
	if old == nil || null == nil {
		t.Fatal("a Postfix instance did not start")
	}
	d := testpeer.StartDNS(t)
	for _, pf := range []*testpeer.Postfix{old, null} {
		d.AddA(pf.Hostname, pf.IP.String())
	}
	d.AddMX("weak.test", 10, old.Hostname)
	d.AddMX("nulls.test", 10, null.Hostname)
	d.AddA("implicit.test", old.IP.String())
	res, err := mx.NewResolver(d.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// weak.test is listed with 128 bits; the what-if flags ignore that.
	pf, err := policy.Parse("policy.conf", []byte("weak.test bits=128\n"))
	if err != nil {
		t.Fatal(err)
	}
	probe := func(cfg Config, target string) *Report {
		t.Helper()
		cfg.Resolver, cfg.Policy, cfg.Timeout, cfg.HeloName, cfg.RootCAs = res, pf.Compile(), 10*time.Second, "probe.test", ca.Pool()
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p.ProbeTarget(context.Background(), target)
	}

	// The policy's entry: TLS 1.0 with 128+ bits passes, deprecated.
	r := probe(Config{}, "weak.test")
	if !r.Pass || r.Requirement.Source != "policy" || !strings.Contains(strings.Join(r.Risks, "\n"), "negotiated TLSv1.0, deprecated") {
		t.Fatalf("policy: %+v", r)
	}
	// What if it required TLS 1.2: the relay would bounce.
	r = probe(Config{MinTLS: tls.VersionTLS12}, "weak.test")
	if r.Pass || r.Verdict != VerdictBounce || r.Diagnostic != "503 5.7.0 protocol too old TLSv1.0 less than TLSv1.2" ||
		r.Requirement.Source != "flag" || r.Requirement.Bits != policy.DefaultBits || r.Requirement.MinTLS != "TLSv1.2" {
		t.Fatalf("--min-tls 1.2: %+v %+v", r.Requirement, r)
	}
	// What if it required a verified certificate: the certificate names
	// the Postfix host, not implicit.test.
	cert := policy.VerifyCert
	r = probe(Config{Verify: &cert}, "implicit.test")
	if r.Pass || !strings.HasPrefix(r.Diagnostic, "503 5.7.0 certificate not verified: ") || r.Requirement.Verify != "cert" {
		t.Fatalf("--verify cert: %+v", r)
	}
	none := policy.VerifyNone
	if r = probe(Config{Verify: &none}, "implicit.test"); !r.Pass || r.Requirement.Source != "flag" {
		t.Fatalf("--verify none: %+v", r)
	}

	// --deep: the NULL-only host is named with every NULL suite; the hop
	// itself fails for what the relay gets (no common suite), not for them.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deepCfg := Config{Deep: func(ctx context.Context, host, addr string) (any, error) {
		return deep.Enumerate(ctx, deep.STARTTLS(addr, "probe.test", 10*time.Second), deep.Options{ServerName: host, Timeout: 10 * time.Second}, log)
	}}
	r = probe(deepCfg, "nulls.test")
	risks := strings.Join(r.Risks, "\n")
	if want := "MX " + null.Hostname + " [" + null.Addr() + "] accepts weak suites: TLS_RSA_WITH_NULL_MD5 (0 bits), TLS_RSA_WITH_NULL_SHA (0 bits), "; !strings.Contains(risks, want) {
		t.Fatalf("risks lack %q:\n%s", want, risks)
	}
	if !strings.Contains(risks, "TLS_RSA_WITH_NULL_SHA256 (0 bits)") {
		t.Fatalf("risks lack the TLS 1.2 NULL suite:\n%s", risks)
	}
	// TLS 1.0 with AES only: nothing weak to name.
	r = probe(deepCfg, "weak.test")
	if strings.Contains(strings.Join(r.Risks, "\n"), "weak suites") || !r.Pass {
		t.Fatalf("weak.test named weak suites or failed: %+v", r)
	}
}
