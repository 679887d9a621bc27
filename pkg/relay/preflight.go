package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/authfile"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Severity of a preflight finding.
type Severity string

const (
	CheckOK      Severity = "ok"
	CheckWarning Severity = "warning"
	CheckError   Severity = "error" // the relay would not start, or not work
)

// Finding is one result of Preflight.
type Finding struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Detail   string   `json:"detail"`
}

// CertExpiryWarning: a certificate that expires sooner is a warning.
const CertExpiryWarning = 30 * 24 * time.Hour

// Preflight checks what a relay started with cfg would need, the way
// `postfix check` and `nginx -t` do, without opening a listener or
// writing anything: the settings, the policy file, the certificate and
// key (and their expiry), the auth and CA files, that the spool and the
// audit log's directory can be written, and that the resolver answers.
func Preflight(ctx context.Context, cfg Config, now time.Time) []Finding {
	var out []Finding
	add := func(check string, sev Severity, format string, args ...any) {
		out = append(out, Finding{check, sev, fmt.Sprintf(format, args...)})
	}

	if err := cfg.Check(); err != nil {
		add("settings", CheckError, "%v", err)
	} else {
		name := cfg.Hostname
		if name == "" {
			name, _ = os.Hostname()
		}
		add("settings", CheckOK, "listen %s, hostname %s", cfg.Listen, name)
	}

	switch f, err := policy.ReadFile(cfg.Policy); {
	case err != nil:
		add("policy", CheckError, "%v", err)
	case len(f.Entries()) == 0:
		_, serr := os.Stat(cfg.Policy)
		switch missing := errors.Is(serr, fs.ErrNotExist); {
		case missing && cfg.Policy != cfg.defaultPolicy():
			add("policy", CheckError, "%s does not exist", cfg.Policy)
		case missing:
			add("policy", CheckWarning, "%s does not exist: nothing is enforced; add a partner with `smgctl policy add DOMAIN`", cfg.Policy)
		default:
			add("policy", CheckWarning, "%s has no entries: nothing is enforced; add a partner with `smgctl policy add DOMAIN`", cfg.Policy)
		}
	default:
		add("policy", CheckOK, "%s: %d entries", cfg.Policy, len(f.Entries()))
	}

	if cfg.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		switch {
		case err != nil:
			add("tls-cert", CheckError, "%s, %s: %v", cfg.TLSCert, cfg.TLSKey, err)
		default:
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			switch {
			case err != nil:
				add("tls-cert", CheckError, "%s: %v", cfg.TLSCert, err)
			case now.After(leaf.NotAfter):
				add("tls-cert", CheckError, "%s expired on %s", cfg.TLSCert, leaf.NotAfter.UTC().Format(time.DateOnly))
			case leaf.NotAfter.Sub(now) < CertExpiryWarning:
				add("tls-cert", CheckWarning, "%s expires on %s, in less than 30 days", cfg.TLSCert, leaf.NotAfter.UTC().Format(time.DateOnly))
			default:
				add("tls-cert", CheckOK, "%s: %s, valid until %s", cfg.TLSCert, leaf.Subject, leaf.NotAfter.UTC().Format(time.DateOnly))
			}
		}
	} else {
		add("tls-cert", CheckWarning, "none: inbound STARTTLS and AUTH are not offered")
	}
	if cfg.AuthFile != "" {
		if c, err := authfile.Load(cfg.AuthFile); err != nil {
			add("auth-file", CheckError, "%v", err)
		} else {
			add("auth-file", CheckOK, "%s: %d users", cfg.AuthFile, c.Len())
		}
	}
	if cfg.CAFile != "" {
		if _, err := smtpclient.RootPool(cfg.CAFile); err != nil {
			add("ca-file", CheckError, "%v", err)
		} else {
			add("ca-file", CheckOK, "%s", cfg.CAFile)
		}
	}

	checkWritableDir(add, "spool", cfg.Spool)
	checkWritableDir(add, "audit-log", filepath.Dir(cfg.AuditLog))
	if fi, err := os.Stat(cfg.AuditLog); err == nil && (!fi.Mode().IsRegular() || unix.Access(cfg.AuditLog, unix.W_OK) != nil) {
		add("audit-log", CheckError, "%s is not a writable regular file", cfg.AuditLog)
	}

	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		add("listen", CheckError, "%q: %v", cfg.Listen, err)
	}

	res, err := mx.NewResolver(cfg.Resolver, 3*time.Second)
	if err != nil {
		add("resolver", CheckError, "%v", err)
	} else {
		// .invalid never exists (RFC 6761 §6.4): any answer, NXDOMAIN
		// included, shows the resolver is there.
		_, err := res.LookupTXT(ctx, "smgctl-check.invalid")
		if err != nil && mx.IsTemporary(err) {
			add("resolver", CheckError, "%v does not answer: %v", res.Servers(), err)
		} else {
			add("resolver", CheckOK, "%v answers", res.Servers())
		}
		// DANE rests on the resolver's AD bit (RFC 7672 §2.1), believed
		// from loopback or when the operator says the path is trusted.
		switch trusted := res.WithTrustedAD(cfg.DNSTrusted).TrustsAD(); {
		case !cfg.PublishedPolicies:
			add("published-policies", CheckWarning, "off: MTA-STS and DANE of partner domains are ignored (audited as ignored)")
		case trusted:
			add("dane", CheckOK, "DNSSEC answers of %v are believed: TLSA records apply where the resolver validates", res.Servers())
		default:
			add("dane", CheckWarning, "%v is not on loopback and dns-trusted is false: its DNSSEC answers are not believed, so DANE never applies", res.Servers())
		}
	}
	return out
}

// checkWritableDir: dir exists and can be written, or the nearest parent
// that exists can, so that the relay can create it.
func checkWritableDir(add func(string, Severity, string, ...any), check, dir string) {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) && filepath.Dir(d) != d {
			continue
		}
		switch {
		case err != nil:
			add(check, CheckError, "%s: %v", dir, err)
		case !fi.IsDir():
			add(check, CheckError, "%s is not a directory", d)
		case unix.Access(d, unix.W_OK|unix.X_OK) != nil:
			add(check, CheckError, "%s is not writable by uid %d", d, os.Getuid())
		case d != dir:
			add(check, CheckOK, "%s does not exist yet; it will be created in %s", dir, d)
		default:
			add(check, CheckOK, "%s is writable", dir)
		}
		return
	}
}
