package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// TestProbeCommand runs "smgctl probe" end to end against a real Postfix
// MX with and without STARTTLS, through an in-process DNS server.
func TestProbeCommand(t *testing.T) {
	testpeer.RequirePostfix(t)
	ca := testpeer.NewCA(t)
	modern := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca})
	plain := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone})
	d := testpeer.StartDNS(t)
	for _, pf := range []*testpeer.Postfix{modern, plain} {
		d.AddA(pf.Hostname, pf.IP.String())
	}
	d.AddMX("good.test", 10, modern.Hostname)
	d.AddMX("plain.test", 10, plain.Hostname)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.conf")
	os.WriteFile(pol, []byte("good.test bits=128 verify=cert\n"), 0o644)
	targets := filepath.Join(dir, "targets.txt")
	os.WriteFile(targets, []byte("# partners\nplain.test   # no TLS\n\n"), 0o644)

	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		t.Setenv("NO_COLOR", "1")
		code := Main(append([]string{"--policy", pol}, args...), strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	common := []string{"--resolver", d.Addr(), "--ca-file", ca.CertFile(), "--timeout", "5s", "--helo", "probe.test"}

	code, out, errs := run(append([]string{"probe", "good.test"}, common...)...)
	t.Logf("table:\n%s", out)
	if code != 0 || errs != "" {
		t.Fatalf("good.test: exit %d, stderr %q\n%s", code, errs, out)
	}
	for _, want := range []string{"PASS", "128 bits, verified (good.test, line 1)", "TLSv1.3", "verified", modern.Hostname} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatal("colour codes in non-terminal output")
	}

	code, out, _ = run(append([]string{"probe", "good.test", "-f", targets}, common...)...)
	t.Logf("table:\n%s", out)
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out, "encryption too weak 0 less than 112") {
		t.Fatalf("plain.test: exit %d\n%s", code, out)
	}

	code, out, _ = run(append([]string{"probe", "plain.test", "good.test", "--output", "json"}, common...)...)
	validateJSON(t, "probe", out) // a real certificate, TLS session and timings
	var doc struct {
		Pass    bool `json:"pass"`
		Targets []struct {
			Target     string `json:"target"`
			Pass       bool   `json:"pass"`
			Diagnostic string `json:"diagnostic"`
			Hosts      []struct {
				Attempts []struct {
					Version string `json:"tls_version"`
					Bits    int    `json:"bits"`
				} `json:"attempts"`
			} `json:"hosts"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code != 1 || doc.Pass || len(doc.Targets) != 2 || doc.Targets[0].Target != "plain.test" ||
		doc.Targets[0].Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" || !doc.Targets[1].Pass ||
		doc.Targets[1].Hosts[0].Attempts[0].Bits < 128 || doc.Targets[1].Hosts[0].Attempts[0].Version != "1.3" {
		t.Fatalf("exit %d json %+v", code, doc)
	}

	// --deep adds the enumeration of pkg/probe/deep under each hop.
	code, out, _ = run(append([]string{"probe", "good.test", "--deep"}, common...)...)
	if code != 0 || !strings.Contains(out, "Deep: good.test "+modern.Hostname) || !strings.Contains(out, "weakest:") {
		t.Fatalf("--deep: exit %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"probe", "good.test", "--deep", "--output", "json"}, common...)...)
	if code != 0 || !strings.Contains(out, `"deep": {`) || !strings.Contains(out, `"version": "1.3"`) {
		t.Fatalf("--deep JSON: exit %d\n%s", code, out)
	}
	validateJSON(t, "probe", out) // a real enumeration under attempts[].deep

	// What if: the default entry with the flags' changes, not the policy.
	code, out, _ = run(append([]string{"probe", "good.test", "--min-tls", "1.3", "--verify", "none"}, common...)...)
	if code != 0 || !strings.Contains(out, "112 bits, TLSv1.3+ (--min-tls, --verify)") || strings.Contains(out, "line 1") {
		t.Fatalf("--min-tls --verify: exit %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"probe", "plain.test", "--verify", "cert", "--require-bits", "1"}, common...)...)
	if code != 1 || !strings.Contains(out, "1 bits, verified (--require-bits, --verify)") {
		t.Fatalf("--verify cert: exit %d\n%s", code, out)
	}
	for _, bad := range [][]string{{"--min-tls", "1.4"}, {"--verify", "maybe"}} {
		code, _, errs = run(append([]string{"probe", "good.test"}, bad...)...)
		if code != 2 || !strings.Contains(errs, bad[0]+" \""+bad[1]+"\"") {
			t.Fatalf("%v: exit %d stderr %q", bad, code, errs)
		}
	}

	// DANE through a resolver that sets AD (trusted on loopback): the MX's
	// certificate matches no TLSA record, so the probe defers, naming
	// DANE; --ignore-published grades as the relay with published
	// policies off and says DANE was ignored.
	sd := testpeer.StartDNS(t)
	sd.SetAD(true)
	sd.AddA("mx.dane-bad.test", modern.IP.String())
	sd.AddMX("dane-bad.test", 10, "mx.dane-bad.test")
	sd.AddTLSA("_25._tcp.mx.dane-bad.test", 3, 1, 1, strings.Repeat("00", 32))
	sd.AddA(modern.Hostname, modern.IP.String())
	sd.AddMX("dane-ok.test", 10, modern.Hostname)
	for _, leaf := range modern.Certs {
		sd.AddRR(testpeer.TLSARecord(modern.Hostname, 25, leaf.TLSA()))
	}
	dane := []string{"--resolver", sd.Addr(), "--ca-file", ca.CertFile(), "--timeout", "5s", "--helo", "probe.test"}
	code, out, _ = run(append([]string{"probe", "dane-bad.test"}, dane...)...)
	if code != 1 || !strings.Contains(out, "DANE mx.dane-bad.test usable") || !strings.Contains(out, "DANE: certificate of mx.dane-bad.test matches no usable TLSA record") {
		t.Fatalf("DANE mismatch: exit %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"probe", "dane-bad.test", "--ignore-published"}, dane...)...)
	if code != 0 || !strings.Contains(out, "DANE mx.dane-bad.test usable ignored: published policies off") {
		t.Fatalf("--ignore-published: exit %d\n%s", code, out)
	}
	// The relay's configuration: published-policies = false judges as
	// --ignore-published; its resolver is asked when --resolver is not
	// given. published-policies = true does not undo --ignore-published.
	conf := filepath.Join(dir, "relay.conf")
	os.WriteFile(conf, []byte("published-policies = false\nresolver = "+sd.Addr()+"\n"), 0o644)
	fromConfig := []string{"--config", conf, "--ca-file", ca.CertFile(), "--timeout", "5s", "--helo", "probe.test"}
	code, out, _ = run(append([]string{"probe", "dane-bad.test"}, fromConfig...)...)
	if code != 0 || !strings.Contains(out, "DANE mx.dane-bad.test usable ignored: published policies off") {
		t.Fatalf("published-policies = false: exit %d\n%s", code, out)
	}
	os.WriteFile(conf, []byte("published-policies = true\nresolver = "+sd.Addr()+"\n"), 0o644)
	code, out, _ = run(append([]string{"probe", "dane-bad.test"}, fromConfig...)...)
	if code != 1 || !strings.Contains(out, "DANE: certificate of mx.dane-bad.test matches no usable TLSA record") {
		t.Fatalf("published-policies = true: exit %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"probe", "dane-bad.test", "--ignore-published"}, fromConfig...)...)
	if code != 0 || !strings.Contains(out, "ignored: published policies off") {
		t.Fatalf("--ignore-published over published-policies = true: exit %d\n%s", code, out)
	}
	// ca-file, resolver and mx-port of the relay's configuration are the
	// probe's defaults: good.test (verify=cert) passes only with the test
	// CA, and an mx-port nobody listens on leaves nothing reachable.
	os.WriteFile(conf, []byte("resolver = "+d.Addr()+"\nca-file = "+ca.CertFile()+"\n"), 0o644)
	code, out, _ = run("probe", "good.test", "--config", conf, "--timeout", "5s", "--helo", "probe.test")
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("resolver and ca-file from the config: exit %d\n%s", code, out)
	}
	os.WriteFile(conf, []byte("resolver = "+d.Addr()+"\nca-file = "+ca.CertFile()+"\nmx-port = 9\n"), 0o644)
	code, out, _ = run("probe", "good.test", "--config", conf, "--timeout", "5s", "--helo", "probe.test")
	if code != 1 || !strings.Contains(out, ":9") {
		t.Fatalf("mx-port from the config: exit %d\n%s", code, out)
	}
	code, out, _ = run("probe", "good.test", "--config", conf, "--port", "25", "--timeout", "5s", "--helo", "probe.test")
	if code != 0 {
		t.Fatalf("--port over mx-port: exit %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"probe", "dane-ok.test", "--output", "json"}, dane...)...)
	validateJSON(t, "probe", out) // tlsa.state, names, attempts[].auth and tlsa
	if code != 0 || !strings.Contains(out, `"auth": "dane"`) || !strings.Contains(out, `"tlsa": "3 1 1 `) || !strings.Contains(out, `"state": "usable"`) {
		t.Fatalf("DANE JSON: exit %d\n%s", code, out)
	}

	// Input errors exit 2 and say where.
	os.WriteFile(targets, []byte("ok.test\nbad..name\n"), 0o644)
	code, _, errs = run(append([]string{"probe", "-f", targets}, common...)...)
	if code != 2 || !strings.Contains(errs, targets+":2:") {
		t.Fatalf("bad file: exit %d stderr %q", code, errs)
	}
	code, _, errs = run("probe", "good.test", "--output", "yaml")
	if code != 2 || !strings.Contains(errs, "--output") {
		t.Fatalf("bad output: exit %d stderr %q", code, errs)
	}
}

// TestProbeResolverTrust: the probe believes the AD bit of the resolver
// the relay's dns-trusted setting vouches for, as the relay does, and of
// no other server named by --resolver.
func TestProbeResolverTrust(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "relay.conf")
	trusts := func(config string, args ...string) bool {
		t.Helper()
		os.WriteFile(conf, []byte(config), 0o644)
		g := &globals{configPath: conf}
		c := newProbeCmd(g)
		if err := c.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		if err := g.loadSettings(c); err != nil {
			t.Fatal(err)
		}
		f := &probeFlags{timeout: time.Second}
		f.resolver, _ = c.Flags().GetString("resolver")
		res, err := probeResolver(c, g, f)
		if err != nil {
			t.Fatal(err)
		}
		return res.TrustsAD()
	}
	if !trusts("resolver = 192.0.2.53\ndns-trusted = true\n") {
		t.Error("dns-trusted = true: the relay's resolver's AD bit is not believed")
	}
	if trusts("resolver = 192.0.2.53\n") {
		t.Error("dns-trusted unset: a resolver off loopback is believed")
	}
	if trusts("resolver = 192.0.2.53\ndns-trusted = true\n", "--resolver", "198.51.100.53") {
		t.Error("dns-trusted believed for another server than the relay's")
	}
	if !trusts("resolver = 192.0.2.53\n", "--resolver", "127.0.0.1:5353") {
		t.Error("a loopback resolver is not believed")
	}
}
