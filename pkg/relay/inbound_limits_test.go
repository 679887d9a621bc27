package relay_test

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay"
)

// ISSUE 10 #8, #9, #11: the per-address limit reaches the running relay
// from its configuration, and what it refuses is counted on /metrics, as
// are AUTH failures.
func TestRelayInboundRefusalsCounted(t *testing.T) {
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.Admin, cfg.Hostname, cfg.Resolver = "127.0.0.1:0", "127.0.0.1:0", "relay.corp.test", "127.0.0.1:53"
	cfg.Spool, cfg.AuditLog, cfg.Policy = filepath.Join(dir, "spool"), filepath.Join(dir, "audit.log"), filepath.Join(dir, "policy.conf")
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // loopback is outside
	cfg.MaxConnectionsPerIP = 2
	os.WriteFile(cfg.Policy, nil, 0o644)
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "relay.corp.test")
	cfg.TLSCert, cfg.TLSKey = leaf.CertFile, leaf.KeyFile
	cfg.AuthFile = filepath.Join(dir, "users")
	os.WriteFile(cfg.AuthFile, []byte(htpasswdLine(t, "u", "p")), 0o600)
	l := runRelay(t, nil, cfg)

	greet := func() string {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.77")}}
		c, err := d.Dial("tcp", l.relay.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for i, want := range []string{"220 ", "220 ", "421 4.7.0 relay.corp.test Error: too many connections from your address"} {
		if got := greet(); !strings.HasPrefix(got, want) {
			t.Errorf("connection %d: %q, want %q", i+1, got, want)
		}
	}
	c := dialSMTP(t, l.relay.Addr().String())
	c.cmd(t, 250, "EHLO client.test")
	c.cmd(t, 220, "STARTTLS")
	c.startTLS(t, ca, "relay.corp.test")
	c.cmd(t, 250, "EHLO client.test")
	c.cmd(t, 535, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong")))

	m := l.metrics(t)
	if v := scrape(t, m, `smgctl_relay_inbound_refused_total{limit="max_connections_per_ip"}`); v != 1 {
		t.Errorf("refused per IP = %v, want 1", v)
	}
	if v := scrape(t, m, "smgctl_relay_auth_failures_total"); v != 1 {
		t.Errorf("auth failures = %v, want 1", v)
	}
}
