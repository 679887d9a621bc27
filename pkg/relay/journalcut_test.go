package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// TestJournalCutAfterKill9 is the hostile test's case: 40 messages get a
// 250 while their MX is unreachable, the relay is killed with SIGKILL, and
// its journal segment is cut in the middle. The restarted relay delivers
// what is left to a real Postfix MX, and the loss is loud: an ERROR with
// the counts, the segment kept in corrupt/, /healthz degraded, and
// `smgctl queue list` warning with exit 1.
func TestJournalCutAfterKill9(t *testing.T) {
	testpeer.RequirePostfix(t)
	const total = 40
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: []string{"crash.test"}})
	bin := filepath.Join(t.TempDir(), "smgctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/smgctl/smgctl/cmd/smgctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(dir, "spool")
	listen, admin := closedPort(t), closedPort(t)
	g := startGate(t, mx.Addr()) // never opened: the messages stay queued
	r := &crashRelay{t: t, bin: bin, listen: listen, stderr: &lockedWriter{w: &bytes.Buffer{}}}
	base := []string{"relay", "--listen", listen, "--admin", admin, "--hostname", "relay.corp.test",
		"--spool", spoolDir, "--audit-log", filepath.Join(dir, "audit.log"),
		"--policy", filepath.Join(dir, "policy.conf"), "--log-level", "info"}
	r.args = append(slices.Clip(base), "--route", "crash.test="+g.ln.Addr().String())
	t.Cleanup(func() {
		r.kill9()
		if t.Failed() {
			t.Logf("relay stderr:\n%s", r.stderr.String())
		}
	})
	r.start()
	sub := &crashSubmitter{addr: listen, acked: map[string]string{}}
	if err := sub.session(context.Background(), total); err != nil || sub.ackedCount() != total {
		t.Fatalf("%d acknowledged: %v", sub.ackedCount(), err)
	}
	// The relay notes a segment's acknowledged length within 50 ms of
	// the sync; the hostile test killed it seconds later.
	time.Sleep(300 * time.Millisecond)
	r.kill9()

	segs, _ := filepath.Glob(filepath.Join(spoolDir, "journal", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("journal segments: %v", segs)
	}
	st, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	cut := st.Size() / 2
	if err := os.Truncate(segs[0], cut); err != nil {
		t.Fatal(err)
	}
	t.Logf("segment cut to %d of %d bytes", cut, st.Size())

	r.args = append(slices.Clip(base), "--route", "crash.test="+mx.Addr())
	r.start()
	logs := r.stderr.String()
	m := regexp.MustCompile(`level=ERROR msg="journal segment lost acknowledged mail; kept for inspection"(?: part=\S+)? path=(\S+) reason="segment cut short: ` +
		strconv.FormatInt(cut, 10) + ` bytes, ` + strconv.FormatInt(st.Size(), 10) + ` were acknowledged" records_recovered=(\d+) live_recovered=\d+ bytes_unaccounted=(\d+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no ERROR with the counts in the log:\n%s", logs)
	}
	recovered, _ := strconv.Atoi(m[2])
	if recovered == 0 || recovered >= total || m[3] == "0" {
		t.Errorf("records_recovered=%s bytes_unaccounted=%s of %d messages", m[2], m[3], total)
	}
	if _, err := os.Stat(m[1]); err != nil || filepath.Dir(m[1]) != filepath.Join(spoolDir, "corrupt") {
		t.Errorf("segment not kept in corrupt/: %s: %v", m[1], err)
	}
	// What was left is delivered, exactly.
	mx.WaitMessages(t, "crash.test", recovered, 30*time.Second)

	resp, err := http.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status   string
		Problems []struct{ Part, Reason string }
	}
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.Status != "degraded" || len(h.Problems) != 1 || h.Problems[0].Part != "spool-journal" ||
		!strings.Contains(h.Problems[0].Reason, "bytes unaccounted for: mail may be lost") {
		t.Errorf("healthz: %+v", h)
	}
	out, err := exec.Command(bin, "queue", "list", "--spool", spoolDir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 ||
		!strings.Contains(string(out), "warning: damaged journal segment "+m[1]) ||
		!strings.Contains(string(out), m[3]+" acknowledged bytes unaccounted for") {
		t.Errorf("queue list: %v\n%s", err, out)
	}
}
