package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// A new operator's first question after `smgctl relay` is whether it does
// anything yet. The relay answers at every start, in plain words: what it
// enforces, where its files are, and how to send a test message.

// missingDirs returns those of dirs that do not exist yet, so that the
// relay can say which ones it created.
func missingDirs(dirs ...string) []string {
	var missing []string
	for _, d := range dirs {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, d)
		}
	}
	return missing
}

// logCreated names the directories of created that exist now.
func (r *Relay) logCreated(what string, created []string) {
	for _, d := range created {
		if _, err := os.Stat(d); err == nil {
			r.log.Info(fmt.Sprintf("created the %s directory %s", what, d))
		}
	}
}

// logStartNotes says what the relay enforces, where its files are and how
// to send a test, once it listens.
func (r *Relay) logStartNotes() {
	c := r.cfg
	policyFlag := ""
	if c.Policy != DefaultPolicy {
		policyFlag = " --policy " + c.Policy
	}
	addHint := "to require TLS for a partner: smgctl policy add" + policyFlag + " partner.example"
	others := "every domain gets opportunistic TLS unless it publishes MTA-STS or DANE"
	if !c.PublishedPolicies {
		others = "every domain gets opportunistic TLS"
	}
	n := r.watcher.Stats().Entries
	_, statErr := os.Stat(c.Policy)
	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		r.log.Info(fmt.Sprintf("nothing is enforced: the policy file %s does not exist, so %s; %s", c.Policy, others, addHint))
	case n == 0:
		r.log.Info(fmt.Sprintf("nothing is enforced: the policy file %s has no entries, so %s; %s", c.Policy, others, addHint))
	default:
		r.log.Info(fmt.Sprintf("enforcing %d %s from %s", n, plural(n, "policy entry", "policy entries"), c.Policy))
	}
	if !c.PublishedPolicies {
		r.log.Warn("published policies are ignored (published-policies = false): MTA-STS and DANE of partner domains are not applied, and every audit record says so")
	}
	r.log.Info(fmt.Sprintf("files: spool %s, audit log %s, policy %s", c.Spool, c.AuditLog, c.Policy))
	test := []string{"smgctl sendtest --to someone@partner.example --via", testAddr(r.ln.Addr())}
	if c.AuditLog != DefaultAuditLog {
		test = append(test, "--audit-log", c.AuditLog)
	}
	r.log.Info("to send a test message: " + strings.Join(test, " "))
}

// testAddr is where a local sendtest reaches the listener: a wildcard
// listen address (0.0.0.0:25, [::]:25) is named by its loopback address.
func testAddr(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	switch {
	case ap.Addr().Is4() && ap.Addr().IsUnspecified():
		ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
	case ap.Addr().IsUnspecified():
		ap = netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// auditDir is the directory the audit log is created in.
func auditDir(path string) string { return filepath.Dir(path) }
