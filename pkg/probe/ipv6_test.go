package probe

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

// SPEC §3: every address of every MX host, IPv6 included. One Postfix
// listens on its 127.x address and on [::1]:25; the host has an A and an
// AAAA record, and both sessions must be made and graded.
func TestProbeIPv6(t *testing.T) {
	testpeer.RequirePostfix(t)
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		if testpeer.InCI() {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		ln.Close()
	}
	ca := testpeer.NewCA(t)
	pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{
		TLS: testpeer.TLSModern, CA: ca,
		Main:   map[string]string{"inet_protocols": "all"},
		Master: []string{"[::1]:25 inet n - y - - smtpd"},
	})
	d := testpeer.StartDNS(t)
	d.AddMX("v6.test", 10, pf.Hostname)
	d.AddA(pf.Hostname, pf.IP.String())
	d.AddAAAA(pf.Hostname, "::1")
	res, err := mx.NewResolver(d.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Resolver: res, Timeout: 5 * time.Second, HeloName: "probe.test", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	reports := p.Probe(context.Background(), []string{"v6.test"})
	if len(reports) != 1 || len(reports[0].Hosts) != 1 {
		t.Fatalf("reports %+v", reports)
	}
	seen := map[string]bool{}
	for _, at := range reports[0].Hosts[0].Attempts {
		seen[at.Addr] = true
		if !at.Connected || !at.TLS || !at.Met || !at.Verified {
			t.Errorf("%s: connected=%v tls=%v met=%v verified=%v error=%q", at.Addr, at.Connected, at.TLS, at.Met, at.Verified, at.Error)
		}
	}
	if !seen["[::1]:25"] || !seen[pf.Addr()] {
		t.Fatalf("attempted %v, want both [::1]:25 and %s", seen, pf.Addr())
	}
	if !reports[0].Pass {
		t.Fatalf("verdict %+v", reports[0])
	}
}
