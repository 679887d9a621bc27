package testpeer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TLSMode selects what an instance's smtpd offers after EHLO.
type TLSMode int

const (
	// TLSNone offers no STARTTLS at all.
	TLSNone TLSMode = iota
	// TLSModern offers TLS 1.2 and 1.3 with a certificate from the test CA.
	TLSModern
	// TLSSelfSigned is TLSModern with a self-signed certificate.
	TLSSelfSigned
	// TLS10Only accepts exactly TLS 1.0 (OpenSSL security level 0).
	TLS10Only
	// TLSNullOnly accepts only NULL (unencrypted) cipher suites, TLS <= 1.2.
	TLSNullOnly
)

func (m TLSMode) String() string {
	switch m {
	case TLSNone:
		return "none"
	case TLSModern:
		return "modern"
	case TLSSelfSigned:
		return "self-signed"
	case TLS10Only:
		return "tls1.0-only"
	case TLSNullOnly:
		return "null-only"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// PostfixOptions configure StartPostfix. The zero value is a receive-only
// MX without STARTTLS on a fresh loopback address that stores nothing.
type PostfixOptions struct {
	// IP to listen on (port 25); default FreeLoopbackIP(t).
	IP net.IP
	// Hostname is myhostname, the banner/EHLO name and the certificate's
	// first name; default "mx-127-x-y-z.testpeer.test".
	Hostname string
	TLS      TLSMode
	// CA issues the server certificate for TLSModern, TLS10Only and
	// TLSNullOnly; default a new CA (see Postfix.CA).
	CA *CA
	// CertNames are extra names for the server certificate (the hostname
	// and IP are always included).
	CertNames []string
	// SendCA serves the CA certificate after the server's own, as a
	// DANE-TA "2 1 x" record (a digest of the CA) needs: the client can
	// only match a trust anchor that is in the chain (RFC 7671 §5.2.2).
	SendCA bool
	// Domains get one maildir each (virtual_mailbox_domains).
	Domains []string
	// RelayHost "host:port" makes this an internal company server: mail
	// from loopback clients to any other domain goes to [host]:port, with
	// opportunistic TLS. Without it, nothing ever leaves the instance.
	RelayHost string
	// Discard drops every message after it was accepted (a fast sink).
	Discard bool
	// Main holds extra main.cf parameters; they override the defaults.
	Main map[string]string
	// Master holds extra master.cf lines (e.g. a tlsproxy service).
	Master []string
}

// Postfix is a running, private Postfix instance.
type Postfix struct {
	IP       net.IP
	Hostname string
	Dir      string // instance root: conf/, queue/, data/, mail/, maillog
	ConfDir  string // for postfix -c / postconf -c
	// CA issued Certs (nil for TLSNone and TLSSelfSigned).
	CA *CA
	// Certs are the served certificates: ECDSA first, then RSA. smtpd picks
	// the one matching the client's suites.
	Certs []*Leaf
	// StartupTime is how long StartPostfix took from writing the config to
	// the first banner.
	StartupTime time.Duration

	t       testing.TB
	postfix string
}

// masterServices are the internal services every instance needs; nothing is
// chrooted, so no files have to be copied into the queue directory.
var masterServices = []string{
	"pickup    unix  n - n 60    1 pickup",
	"cleanup   unix  n - n -     0 cleanup",
	"qmgr      unix  n - n 300   1 qmgr",
	"tlsmgr    unix  - - n 1000? 1 tlsmgr",
	"rewrite   unix  - - n -     - trivial-rewrite",
	"bounce    unix  - - n -     0 bounce",
	"defer     unix  - - n -     0 bounce",
	"trace     unix  - - n -     0 bounce",
	"verify    unix  - - n -     1 verify",
	"flush     unix  n - n 1000? 0 flush",
	"proxymap  unix  - - n -     - proxymap",
	"proxywrite unix - - n -     1 proxymap",
	"smtp      unix  - - n -     - smtp",
	"relay     unix  - - n -     - smtp",
	"showq     unix  n - n -     - showq",
	"error     unix  - - n -     - error",
	"retry     unix  - - n -     - error",
	"discard   unix  - - n -     - discard",
	"local     unix  - n n -     - local",
	"virtual   unix  - n n -     - virtual",
	"lmtp      unix  - - n -     - lmtp",
	"anvil     unix  - - n -     1 anvil",
	"scache    unix  - - n -     1 scache",
	"postlog   unix-dgram n - n - 1 postlogd",
}

// StartPostfix starts a Postfix instance listening on IP:25 and registers
// its shutdown (postfix stop, then the directory is removed) with t.Cleanup.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	pfBin := RequirePostfix(t)
	begin := time.Now()

	ip := opts.IP
	if ip == nil {
		ip = FreeLoopbackIP(t)
	}
	ip = ip.To4()
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("testpeer: StartPostfix: %v is not an IPv4 loopback address", opts.IP)
	}
	p := &Postfix{IP: ip, Hostname: opts.Hostname, t: t, postfix: pfBin}
	if p.Hostname == "" {
		p.Hostname = "mx-" + strings.ReplaceAll(ip.String(), ".", "-") + ".testpeer.test"
	}

	// Our own short directory under /tmp instead of t.TempDir(): unix
	// socket paths are limited to 108 bytes, long test names would exceed
	// it, and the maildirs' parents must be traversable by uid 65534.
	dir, err := os.MkdirTemp("", "tp-pf-")
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	p.Dir = dir
	p.ConfDir = filepath.Join(dir, "conf")
	started := false
	t.Cleanup(func() {
		if started {
			p.stop()
		}
		os.RemoveAll(dir)
	})
	if err := p.layout(); err != nil {
		t.Fatalf("testpeer: postfix directories: %v", err)
	}
	p.certs(t, opts)
	if err := p.writeConfig(opts); err != nil {
		t.Fatalf("testpeer: postfix config: %v", err)
	}

	// quick-start (created by layout) skips postfix-script's slow
	// integrity checks, which would only re-create what layout made.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pfBin, "-c", p.ConfDir, "start")
	cmd.WaitDelay = time.Second // never hang on a pipe a daemon inherited
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.startFailed(fmt.Sprintf("postfix start: %v\n%s", err, out))
	}
	started = true
	if err := waitBanner(p.Addr(), 15*time.Second); err != nil {
		p.startFailed(fmt.Sprintf("waiting for the banner on %s: %v", p.Addr(), err))
	}
	p.StartupTime = time.Since(begin)
	t.Logf("testpeer: postfix %s (%s) on %s started in %v, dir %s", p.Hostname, opts.TLS, p.Addr(), p.StartupTime.Round(time.Millisecond), dir)
	return p
}

func (p *Postfix) startFailed(msg string) {
	p.t.Helper()
	check, _ := exec.Command(p.postfix, "-c", p.ConfDir, "check").CombinedOutput()
	p.t.Fatalf("testpeer: postfix instance in %s failed to start: %s\n--- postfix check -c %s:\n%s\n--- maillog:\n%s",
		p.Dir, msg, p.ConfDir, check, p.Maillog())
}

func (p *Postfix) stop() {
	out, err := exec.Command(p.postfix, "-c", p.ConfDir, "stop").CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("not running")) {
		p.t.Logf("testpeer: postfix -c %s stop: %v\n%s", p.ConfDir, err, out)
	}
}

// layout creates the queue and data directories the way Postfix's
// post-install would, then the quick-start marker.
func (p *Postfix) layout() error {
	owner, err := user.Lookup("postfix")
	if err != nil {
		return err
	}
	grp, err := user.LookupGroup("postdrop")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(grp.Gid)
	q := filepath.Join(p.Dir, "queue")
	type d struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}
	dirs := []d{
		{p.Dir, 0o755, 0, 0},
		{p.ConfDir, 0o755, 0, 0},
		{q, 0o755, 0, 0},
		{filepath.Join(q, "pid"), 0o755, 0, 0},
		{filepath.Join(q, "maildrop"), 0o730, uid, gid},
		{filepath.Join(q, "public"), 0o710, uid, gid},
		{filepath.Join(p.Dir, "data"), 0o700, uid, 0},
		{filepath.Join(p.Dir, "mail"), 0o755, 65534, 65534},
	}
	for _, n := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, d{filepath.Join(q, n), 0o700, uid, 0})
	}
	for _, x := range dirs {
		if err := os.MkdirAll(x.path, x.mode); err != nil {
			return err
		}
		if err := os.Chown(x.path, x.uid, x.gid); err != nil {
			return err
		}
		if err := os.Chmod(x.path, x.mode); err != nil { // umask-proof
			return err
		}
	}
	return os.WriteFile(filepath.Join(q, "quick-start"), nil, 0o644)
}

func (p *Postfix) certs(t testing.TB, opts PostfixOptions) {
	t.Helper()
	if opts.TLS == TLSNone {
		return
	}
	names := append([]string{p.Hostname, p.IP.String()}, opts.CertNames...)
	if opts.TLS == TLSSelfSigned {
		p.Certs = []*Leaf{SelfSigned(t, names...), SelfSignedOpts(t, LeafOptions{KeyType: RSA}, names...)}
		return
	}
	p.CA = opts.CA
	if p.CA == nil {
		p.CA = NewCA(t)
	}
	p.Certs = []*Leaf{p.CA.Issue(t, names...), p.CA.IssueRSA(t, names...)}
}

func (p *Postfix) writeConfig(opts PostfixOptions) error {
	conf := func(name string) string { return filepath.Join(p.ConfDir, name) }
	m := map[string]string{
		"compatibility_level":   "3.6",
		"queue_directory":       filepath.Join(p.Dir, "queue"),
		"data_directory":        filepath.Join(p.Dir, "data"),
		"maillog_file":          filepath.Join(p.Dir, "maillog"),
		"maillog_file_prefixes": p.Dir,
		"myhostname":            p.Hostname,
		"mydomain":              "testpeer.test",
		"myorigin":              "$myhostname",
		"mydestination":         "",
		"local_recipient_maps":  "",
		"alias_maps":            "",
		"alias_database":        "",
		"biff":                  "no",
		"append_dot_mydomain":   "no",
		// The real listener is the IP:25 line in master.cf; Postfix
		// refuses interfaces that are not configured, like 127.64.x.y.
		"inet_interfaces": "127.0.0.1",
		"inet_protocols":  "ipv4",
		// No reverse DNS of clients: the system resolver is not loopback.
		"smtpd_peername_lookup":     "no",
		"smtpd_banner":              "$myhostname ESMTP testpeer",
		"in_flow_delay":             "0",
		"smtpd_error_sleep_time":    "0",
		"smtp_connect_timeout":      "5s",
		"queue_run_delay":           "1s",
		"minimal_backoff_time":      "1s",
		"maximal_backoff_time":      "10s",
		"smtpd_tls_received_header": "yes",
		"smtpd_tls_loglevel":        "1",
		"mynetworks":                "",
		// Fail closed: unless a relayhost is configured, nothing may ever
		// leave this instance for a real address.
		"default_transport": "error:5.7.1 testpeer: no outbound delivery",
		"relay_transport":   "error:5.7.1 testpeer: no outbound delivery",
	}
	if opts.RelayHost != "" {
		host, port, err := net.SplitHostPort(opts.RelayHost)
		if err != nil {
			return fmt.Errorf("RelayHost %q: %v", opts.RelayHost, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("RelayHost %q: must be a loopback IP", opts.RelayHost)
		}
		m["relayhost"] = "[" + host + "]:" + port
		m["mynetworks"] = "127.0.0.0/8"
		m["default_transport"] = "smtp"
		m["relay_transport"] = "relay"
		m["smtp_tls_security_level"] = "may"
		m["smtp_tls_loglevel"] = "1"
	}
	if len(opts.Domains) > 0 {
		var vmb strings.Builder
		var doms []string
		for _, d := range opts.Domains {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			doms = append(doms, d)
			fmt.Fprintf(&vmb, "@%s %s/\n", d, d) // trailing slash: maildir
		}
		if err := os.WriteFile(conf("vmailbox"), []byte(vmb.String()), 0o644); err != nil {
			return err
		}
		m["virtual_mailbox_domains"] = strings.Join(doms, ", ")
		m["virtual_mailbox_base"] = filepath.Join(p.Dir, "mail")
		m["virtual_mailbox_maps"] = "texthash:" + conf("vmailbox")
		m["virtual_uid_maps"] = "static:65534"
		m["virtual_gid_maps"] = "static:65534"
		m["virtual_mailbox_limit"] = "0"
	}
	if opts.Discard {
		// Our own smtpd always adds a Received: header, so this drops all.
		if err := os.WriteFile(conf("header_checks"), []byte("/^Received:/ DISCARD testpeer sink\n"), 0o644); err != nil {
			return err
		}
		m["header_checks"] = "regexp:" + conf("header_checks")
	}
	if opts.TLS != TLSNone {
		var chains []string
		for i, l := range p.Certs {
			f := conf(fmt.Sprintf("chain%d.pem", i))
			pem := append(append([]byte{}, l.KeyPEM...), l.CertPEM...)
			if opts.SendCA && p.CA != nil {
				pem = append(pem, p.CA.CertPEM...)
			}
			if err := os.WriteFile(f, pem, 0o600); err != nil {
				return err
			}
			chains = append(chains, f)
		}
		m["smtpd_tls_security_level"] = "may"
		m["smtpd_tls_chain_files"] = strings.Join(chains, ", ")
	}
	switch opts.TLS {
	case TLSNone:
		m["smtpd_tls_security_level"] = "none"
	case TLSModern, TLSSelfSigned:
		m["smtpd_tls_protocols"] = ">=TLSv1.2"
		m["smtpd_tls_mandatory_protocols"] = ">=TLSv1.2"
	case TLS10Only:
		// OpenSSL 3 refuses TLS 1.0 (SHA-1 signatures) above level 0.
		m["smtpd_tls_protocols"] = ">=TLSv1 <=TLSv1"
		m["smtpd_tls_mandatory_protocols"] = ">=TLSv1 <=TLSv1"
		m["tls_medium_cipherlist"] = "DEFAULT:@SECLEVEL=0"
		m["tls_high_cipherlist"] = "DEFAULT:@SECLEVEL=0"
	case TLSNullOnly:
		// TLS 1.3 has no NULL suites, so cap at 1.2.
		m["smtpd_tls_protocols"] = ">=TLSv1 <=TLSv1.2"
		m["smtpd_tls_mandatory_protocols"] = ">=TLSv1 <=TLSv1.2"
		m["smtpd_tls_ciphers"] = "null"
		m["smtpd_tls_mandatory_ciphers"] = "null"
		m["tls_null_cipherlist"] = "eNULL:!aNULL:@SECLEVEL=0"
	default:
		return fmt.Errorf("unknown TLSMode %d", opts.TLS)
	}
	for k, v := range opts.Main {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var mainCF strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&mainCF, "%s = %s\n", k, m[k])
	}
	if err := os.WriteFile(conf("main.cf"), []byte(mainCF.String()), 0o644); err != nil {
		return err
	}
	master := append([]string{p.IP.String() + ":25 inet n - n - - smtpd"}, masterServices...)
	master = append(master, opts.Master...)
	if err := os.WriteFile(conf("master.cf"), []byte(strings.Join(master, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	// The postfix command sleeps in 300 ms steps (1-2 s in all) while
	// main.cf is younger than a second or so; backdate the files.
	ents, err := os.ReadDir(p.ConfDir)
	if err != nil {
		return err
	}
	old := time.Now().Add(-time.Minute)
	for _, e := range ents {
		if err := os.Chtimes(conf(e.Name()), old, old); err != nil {
			return err
		}
	}
	return nil
}

// waitBanner dials addr until the SMTP greeting arrives.
func waitBanner(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		last = readBanner(addr)
		if last == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return last
}

func readBanner(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading banner: %v", err)
		}
		if !strings.HasPrefix(line, "220") {
			return fmt.Errorf("unexpected banner %q", line)
		}
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return nil
}

// Addr is "IP:25".
func (p *Postfix) Addr() string { return net.JoinHostPort(p.IP.String(), "25") }

// Maillog returns the instance's log so far.
func (p *Postfix) Maillog() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// Message is one delivered message from a maildir.
type Message struct {
	Path   string
	Raw    []byte // as stored: LF line endings, Return-Path and Delivered-To added
	Header mail.Header
	Body   []byte
}

// Received returns the message's Received: headers, newest first.
func (m Message) Received() []string { return m.Header["Received"] }

// Messages returns the messages delivered so far to domain's maildir (new/
// and cur/), oldest first.
func (p *Postfix) Messages(domain string) []Message {
	p.t.Helper()
	base := filepath.Join(p.Dir, "mail", strings.ToLower(strings.TrimSuffix(domain, ".")))
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(base, sub))
		if err != nil {
			continue // not created until the first delivery
		}
		for _, e := range ents {
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			files = append(files, file{filepath.Join(base, sub, e.Name()), info.ModTime()})
		}
	}
	slices.SortStableFunc(files, func(a, b file) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(filepath.Base(a.path), filepath.Base(b.path))
	})
	var msgs []Message
	for _, f := range files {
		raw, err := os.ReadFile(f.path)
		if err != nil {
			p.t.Fatalf("testpeer: %v", err)
		}
		msg := Message{Path: f.path, Raw: raw}
		if pm, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
			msg.Header = pm.Header
			msg.Body, _ = io.ReadAll(pm.Body)
		} else {
			p.t.Errorf("testpeer: %s: %v", f.path, err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// WaitMessages waits until domain's maildir holds at least n messages and
// returns them; on timeout the test fails with the maillog.
func (p *Postfix) WaitMessages(t testing.TB, domain string, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := p.Messages(domain)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("testpeer: %s: %d of %d messages for %s after %v\n--- maillog:\n%s",
				p.Hostname, len(msgs), n, domain, timeout, p.Maillog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
