package delivery

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// RFC 8689 §5: a REQUIRETLS message that cannot go is returned redacted,
// even with RET=FULL: the report carries the 5.7.30 status and nothing of
// the message, neither body nor headers, so it may travel without
// REQUIRETLS. Without REQUIRETLS the same envelope gets the whole message
// back, so the test sees the difference.
func TestReturnRequireTLSWithoutBody(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	diag := smtpreply.RequireTLS("mx.partner.test did not offer REQUIRETLS")
	for _, requireTLS := range []bool{true, false} {
		env := &spool.Envelope{From: "alice@corp.test", DSNRet: "FULL", RequireTLS: requireTLS,
			Recipients: []spool.Recipient{{Address: "bob@partner.test"}}}
		if err := sp.Put(env, strings.NewReader(longBody)); err != nil {
			t.Fatal(err)
		}
		d, err := ReturnToSender(sp, "gw.corp.test", env, []dsn.Recipient{{
			Address: "bob@partner.test", Action: dsn.Failed, Diagnostic: diag, LastAttempt: time.Now(),
		}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body, err := sp.Body(d.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(body)
		body.Close()
		rep := parseReport(t, string(data))
		rc := rep.rcpt(t, "bob@partner.test")
		if rc.Get("Status") != "5.7.30" || !strings.Contains(rc.Get("Diagnostic-Code"), "550 5.7.30 REQUIRETLS support required: mx.partner.test") {
			t.Errorf("REQUIRETLS %v: recipient fields %v", requireTLS, rc)
		}
		hasBody := strings.Contains(string(data), "The quarterly figures")
		if requireTLS {
			// RFC 8689 §5: redacted, nothing of the message, headers
			// included, so the report needs no REQUIRETLS of its own.
			if len(rep.parts) != 2 || hasBody || strings.Contains(string(data), "Subject: figures") {
				t.Errorf("REQUIRETLS message returned with parts %v, body %v:\n%s", rep.parts, hasBody, data)
			}
		} else if rep.parts[2] != "message/rfc822" || !hasBody {
			t.Errorf("RET=FULL without REQUIRETLS: parts %v, body %v", rep.parts, hasBody)
		}
	}
}
