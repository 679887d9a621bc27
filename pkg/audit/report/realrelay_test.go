package report_test

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	"github.com/smgctl/smgctl/pkg/audit/report"
	"github.com/smgctl/smgctl/pkg/audit/trace"
	"github.com/smgctl/smgctl/pkg/relay"
)

// The report and the trace are judged on an audit log that a real relay
// wrote while delivering to real Postfix MX hosts: one with modern TLS,
// one without STARTTLS.
const labPolicy = `good.test
plain.test
testing.test     mode=testing
defer.test       on-fail=defer
`

type relayLab struct {
	relay *relay.Relay
	log   string
}

func startLab(t *testing.T) *relayLab {
	t.Helper()
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	dns := testpeer.StartDNS(t)
	ca := testpeer.NewCA(t)
	modern := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca,
		Domains: []string{"good.test", "strong.test", "corp.test"}})
	none := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone,
		Domains: []string{"plain.test", "clear.test", "testing.test", "defer.test"}})
	for _, p := range []*testpeer.Postfix{modern, none} {
		dns.AddA(p.Hostname, p.IP.String())
	}
	for _, d := range []string{"good.test", "strong.test", "corp.test"} {
		dns.AddMX(d, 10, modern.Hostname)
	}
	for _, d := range []string{"plain.test", "clear.test", "testing.test", "defer.test"} {
		dns.AddMX(d, 10, none.Hostname)
	}
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "relay.corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Policy = filepath.Join(dir, "policy.conf")
	cfg.Resolver = dns.Addr()
	cfg.CAFile = ca.CertFile()
	cfg.DelayWarning = 0
	if err := os.WriteFile(cfg.Policy, []byte(labPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	})
	return &relayLab{relay: r, log: cfg.AuditLog}
}

// send submits one message with swaks and returns its queue ID.
func (l *relayLab) send(t *testing.T, msgID string, to ...string) string {
	t.Helper()
	out, code := testpeer.Swaks(t, "--server", l.relay.Addr().String(), "--from", "alice@corp.test",
		"--to", strings.Join(to, ","), "--helo", "client.corp.test",
		"--header", "Message-Id: "+msgID, "--body", "audit report test\n")
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	m := regexp.MustCompile(`queued as ([0-9A-Z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no queue ID in swaks output:\n%s", out)
	}
	return m[1]
}

// waitFor waits until the log holds an event for each recipient.
func (l *relayLab) waitFor(t *testing.T, want map[string]audit.Event) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]audit.Event{}
		if f, err := os.Open(l.log); err == nil {
			audit.Scan(f, func(r audit.Record) error { got[r.Recipient] = r.Event; return nil })
			f.Close()
		}
		ok := true
		for rcpt, ev := range want {
			ok = ok && got[rcpt] == ev
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(l.log)
			t.Fatalf("audit log lacks %v after 60s:\n%s", want, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReportFromRealRelay(t *testing.T) {
	l := startLab(t)
	qGood := l.send(t, "<good@corp.test>", "bob@good.test", "carol@good.test")
	l.send(t, "<strong@corp.test>", "xavier@strong.test")
	qPlain := l.send(t, "<plain@corp.test>", "yves@plain.test")
	l.send(t, "<clear@corp.test>", "zoe@clear.test")
	l.send(t, "<testing@corp.test>", "tom@testing.test")
	qDefer := l.send(t, "<defer@corp.test>", "dan@defer.test")
	l.waitFor(t, map[string]audit.Event{
		"bob@good.test": audit.Delivered, "carol@good.test": audit.Delivered, "xavier@strong.test": audit.Delivered,
		"yves@plain.test": audit.Bounced, "zoe@clear.test": audit.Delivered, "tom@testing.test": audit.WouldBounce,
		"dan@defer.test": audit.Deferred,
		// The NDR for yves goes back to alice at corp.test over TLS.
		"alice@corp.test": audit.Delivered,
	})

	files, err := logset.Files(l.log)
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Build(context.Background(), files, report.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const weak = "503 5.7.0 encryption too weak 0 less than 112"
	tot := r.Total
	if r.Records != 8 || tot.Messages != 7 || tot.Delivered != 6 || tot.DeliveredTLS != 4 || tot.Bounced != 1 ||
		tot.Deferrals != 1 || tot.WouldBounce != 1 || *tot.WeakestBits != 0 || *tot.StrongestBits < 128 || r.Unreadable != 0 {
		t.Errorf("totals: records %d %+v", r.Records, tot)
	}
	dom := map[string]report.Group{}
	for _, g := range r.Domains {
		dom[g.Name] = g
	}
	if g := dom["good.test"]; g.Messages != 2 || g.TLSShare != 1 || !g.Listed || g.Entry != "good.test" || *g.WeakestBits < 128 ||
		g.Versions["TLSv1.3"]+g.Versions["TLSv1.2"] != 2 {
		t.Errorf("good.test: %+v", g)
	}
	if g := dom["plain.test"]; g.Messages != 1 || g.Bounced != 1 || g.Bounces[weak] != 1 || g.Delivered != 0 || g.WeakestBits != nil {
		t.Errorf("plain.test: %+v", g)
	}
	if g := dom["testing.test"]; g.WouldBounce != 1 || g.WouldBounces[weak] != 1 || g.Delivered != 1 || g.TLSShare != 0 || g.Versions["none"] != 1 {
		t.Errorf("testing.test: %+v", g)
	}
	if g := dom["clear.test"]; g.Listed || g.DeliveredCleartext != 1 || g.Entry != "" {
		t.Errorf("clear.test: %+v", g)
	}
	if g := dom["defer.test"]; g.Deferrals != 1 || g.Messages != 0 {
		t.Errorf("defer.test: %+v", g)
	}
	if got := r.ListedWithFailures; !slices.Equal(got, []string{"defer.test", "plain.test", "testing.test"}) {
		t.Errorf("listed with failures: %q", got)
	}
	if got := r.Cleartext; !slices.Equal(got, []string{"clear.test"}) {
		t.Errorf("cleartext: %q", got)
	}
	if got := r.Candidates; !slices.Equal(got, []string{"corp.test", "strong.test"}) {
		t.Errorf("candidates: %q", got)
	}
	ent := map[string]report.Group{}
	for _, g := range r.Entries {
		ent[g.Name] = g
	}
	if g := ent["testing.test"]; g.Line != 3 || g.Requirement == nil || g.Requirement.Mode != "testing" || g.WouldBounces[weak] != 1 {
		t.Errorf("entry testing.test: %+v", g)
	}
	if g := ent["good.test"]; g.Line != 1 || g.Messages != 2 {
		t.Errorf("entry good.test: %+v", g)
	}
	if g := ent[report.NoEntry]; g.Messages != 3 || g.Delivered != 3 || g.DeliveredTLS != 2 {
		t.Errorf("no entry: %+v", g)
	}
	// --domain keeps the domain and its subdomains only.
	if rd, err := report.Build(context.Background(), files, report.Options{Domain: "GOOD.test."}); err != nil || rd.Records != 2 || len(rd.Domains) != 1 {
		t.Errorf("--domain good.test: %v %+v", err, rd)
	}
	// A window after every record is empty.
	if rw, err := report.Build(context.Background(), files, report.Options{From: time.Now().Add(time.Hour)}); err != nil || rw.Records != 0 {
		t.Errorf("future window: %v %+v", err, rw)
	}

	t.Run("trace", func(t *testing.T) {
		for _, tc := range []struct {
			id, rcpt, final string
		}{
			{qGood, "carol@good.test", "delivered"},
			{"<plain@corp.test>", "yves@plain.test", "bounced"},
			{"plain@corp.test", "yves@plain.test", "bounced"},
			{qPlain, "yves@plain.test", "bounced"},
			{qDefer, "dan@defer.test", trace.Pending},
		} {
			tr, err := trace.Find(context.Background(), files, tc.id)
			if err != nil || tr == nil {
				t.Fatalf("trace %s: %v %v", tc.id, tr, err)
			}
			var rc *trace.Recipient
			for i := range tr.Recipients {
				if tr.Recipients[i].Address == tc.rcpt {
					rc = &tr.Recipients[i]
				}
			}
			if rc == nil || rc.Final != tc.final || len(rc.Attempts) != 1 {
				t.Fatalf("trace %s: %+v", tc.id, tr)
			}
			a := rc.Attempts[0]
			switch tc.final {
			case "delivered":
				if !a.TLS || a.TLSVersion == "" || a.Cipher == "" || a.Bits < 128 || a.MX == "" || a.IP == "" ||
					a.PolicyTarget != "good.test" || a.PolicyLine != 1 || !strings.HasPrefix(a.Reply, "250") || len(tr.Recipients) != 2 {
					t.Errorf("delivered attempt: %+v", a)
				}
			case "bounced":
				if a.TLS || a.Diagnostic != weak || a.PolicyLine != 2 || a.MX == "" {
					t.Errorf("bounced attempt: %+v", a)
				}
			default:
				if a.Event != audit.Deferred || a.Diagnostic != weak || a.Requirement.OnFail != "defer" {
					t.Errorf("deferred attempt: %+v", a)
				}
			}
		}
		if tr, err := trace.Find(context.Background(), files, "NOSUCHQUEUEID"); err != nil || tr != nil {
			t.Errorf("unknown ID: %+v %v", tr, err)
		}
	})

	t.Run("html in headless chromium", func(t *testing.T) {
		var page bytes.Buffer
		if err := report.WriteHTML(&page, r, time.Now()); err != nil {
			t.Fatal(err)
		}
		checkSelfContained(t, page.String())
		dom, shot := chromium(t, page.Bytes())
		for _, want := range []string{
			`id="records">8<`, `id="messages">7<`, `id="delivered">6<`, `id="tls-share">66.7%<`,
			`id="bounced" class="bad">1<`, `id="deferrals">1<`, `id="would-bounce" class="warn">1<`,
			`<li class="bad">clear.test</li>`, `<li class="good">strong.test</li>`, `<li class="bad">testing.test</li>`,
			`data-domain="good.test"`, weak, `<svg id="chart-domains"`,
		} {
			if !strings.Contains(dom, want) {
				t.Errorf("rendered DOM lacks %q", want)
			}
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 1600 {
			t.Errorf("screenshot is %v", b)
		}
	})
}

// checkSelfContained refuses anything that would make the browser fetch:
// the page must work offline and attached to a ticket.
func checkSelfContained(t *testing.T, page string) {
	t.Helper()
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "//"} {
		s := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		if strings.Contains(s, bad) {
			t.Errorf("the HTML report contains %q: not self-contained", bad)
		}
	}
}

// chromium renders page with a real headless Chromium, its network cut
// off (an unreachable proxy, every name unresolvable), and returns the
// DOM it built and a screenshot.
func chromium(t *testing.T, page []byte) (string, []byte) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if testpeer.InCI() {
			t.Fatal("chromium not installed (CI=true, so this is fatal); .ci/run installs it")
		}
		t.Skip("chromium not installed; .ci/run installs it")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) []byte {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
			"--window-size=1200,1600"}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "file://"+file)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return out
	}
	dom := string(run("--dump-dom"))
	shotFile := filepath.Join(dir, "report.png")
	run("--screenshot=" + shotFile)
	shot, err := os.ReadFile(shotFile)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if keep := os.Getenv("SMGCTL_KEEP_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, shot, 0o644)
	}
	return dom, shot
}
