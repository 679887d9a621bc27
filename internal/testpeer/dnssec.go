package testpeer

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is one zone served by StartSignedDNS.
type Zone struct {
	// Name is the zone apex, e.g. "dane.test".
	Name string
	// Records are zone-file lines (presentation format). Owner names may be
	// relative to Name ("_25._tcp.mx 300 IN TLSA 3 1 1 ..."), absolute
	// ("mx.dane.test. IN A 127.64.0.1") or "@"; a missing TTL means 300.
	// The SOA, the NS and the name server's address are added.
	Records []string
	// Unsigned serves the zone without DNSSEC: the resolver has no trust
	// anchor for it and treats its answers as insecure (no AD bit).
	Unsigned bool
	// Bogus are owner names (absolute, or relative to Name) whose
	// signatures are corrupted after signing, so the validating resolver
	// answers SERVFAIL for their records while the rest of the zone stays
	// secure. Ignored for unsigned zones.
	Bogus []string
}

// SignedDNS is a real DNSSEC setup: nsd serving the zones (signed by
// ldns-signzone) and unbound validating them with each signed zone's KSK as
// its trust anchor. Both run on port 53 of their own loopback address and
// are stopped (by PID) in t.Cleanup.
type SignedDNS struct {
	// ResolverIP is where unbound, the validating resolver, listens.
	ResolverIP net.IP
	// AuthIP is where nsd, the authoritative server, listens.
	AuthIP net.IP
	// Dir holds the zone files, keys, configurations and logs.
	Dir string
	// StartupTime is how long signing and starting both servers took.
	StartupTime time.Duration

	unboundLog, nsdLog string
	t                  testing.TB
	keys               map[string][2]string // zone → KSK, ZSK base paths
	procs              []daemon
}

// Addr is the validating resolver's "IP:53", for mx.NewResolver or a relay's
// --resolver. It is on loopback, so pkg/mx trusts its AD bit.
func (s *SignedDNS) Addr() string { return net.JoinHostPort(s.ResolverIP.String(), "53") }

// Logs returns the end of unbound's and nsd's log files, for failure messages.
func (s *SignedDNS) Logs() string {
	return "--- unbound:\n" + tail(s.unboundLog) + "\n--- nsd:\n" + tail(s.nsdLog)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// RequireSignedDNS skips (fails in CI) unless nsd, unbound and the ldns
// tools are installed and we are root (both servers bind port 53).
func RequireSignedDNS(t testing.TB) {
	t.Helper()
	for _, b := range []string{"nsd", "unbound", "ldns-keygen", "ldns-signzone"} {
		RequireBinary(t, b)
	}
	RequireRoot(t)
}

// StartSignedDNS signs the zones that are not Unsigned (fresh ECDSA P-256
// KSK and ZSK per zone, RFC 6605), serves all of them with nsd and starts
// unbound as a validating resolver for them. It returns once unbound
// answers every zone's SOA, with AD for the signed ones. Names outside the
// zones get SERVFAIL quickly: unbound never leaves loopback.
func StartSignedDNS(t testing.TB, zones ...Zone) *SignedDNS {
	t.Helper()
	RequireSignedDNS(t)
	begin := time.Now()
	dir, err := os.MkdirTemp("", "tp-dns-")
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SignedDNS{
		AuthIP:     FreeLoopbackIP(t),
		ResolverIP: FreeLoopbackIP(t),
		Dir:        dir,
		unboundLog: filepath.Join(dir, "unbound.log"),
		nsdLog:     filepath.Join(dir, "nsd.log"),
		t:          t,
		keys:       map[string][2]string{},
	}
	// Registered after the directory's removal, so it runs before it.
	t.Cleanup(s.stop)
	s.start(zones)
	s.StartupTime = time.Since(begin)
	t.Logf("testpeer: nsd on %s and validating unbound on %s started in %v, dir %s",
		s.AuthIP, s.Addr(), s.StartupTime.Round(time.Millisecond), dir)
	return s
}

// Update replaces the served zones, e.g. to publish a new MTA-STS policy
// id or to make a TLSA record bogus mid-test: zones are re-signed (with the
// keys they had, so trust anchors stay), and nsd and unbound restarted on
// the same addresses, which also empties unbound's cache. It returns once
// the new zones are answered.
func (s *SignedDNS) Update(zones ...Zone) {
	s.t.Helper()
	s.stop()
	s.start(zones)
}

func (s *SignedDNS) start(zones []Zone) {
	t := s.t
	t.Helper()
	dir := s.Dir
	var nsdZones, unboundZones strings.Builder
	for _, z := range zones {
		name := strings.ToLower(strings.TrimSuffix(z.Name, "."))
		if name == "" {
			t.Fatal("testpeer: StartSignedDNS: a zone without a name")
		}
		file := filepath.Join(dir, name+".zone")
		writeFile(t, file, []byte(s.zoneText(name, z.Records)), 0o644)
		if !z.Unsigned {
			keys, ok := s.keys[name]
			if !ok {
				keys = newZoneKeys(t, dir, name)
				s.keys[name] = keys
			}
			file = signZone(t, dir, name, file, keys)
			corrupt(t, file, name, z.Bogus)
			fmt.Fprintf(&unboundZones, "server:\n  trust-anchor-file: %q\n", keys[0]+".ds")
		} else {
			// No trust anchor covers it, and this says so explicitly even
			// when it is below a signed zone (no insecure delegation proof).
			fmt.Fprintf(&unboundZones, "server:\n  domain-insecure: %q\n", name)
		}
		fmt.Fprintf(&nsdZones, "zone:\n  name: %q\n  zonefile: %q\n", name, file)
		fmt.Fprintf(&unboundZones, "stub-zone:\n  name: %q\n  stub-addr: %s\n", name, s.AuthIP)
	}

	nsdConf := filepath.Join(dir, "nsd.conf")
	writeFile(t, nsdConf, []byte(fmt.Sprintf(`server:
  ip-address: %s
  port: 53
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonesdir: %q
  zonelistfile: %q
  xfrdfile: %q
  xfrdir: %q
  pidfile: %q
  logfile: %q
  verbosity: 1
remote-control:
  control-enable: no
%s`, s.AuthIP, dir, filepath.Join(dir, "zone.list"), filepath.Join(dir, "xfrd.state"), dir,
		filepath.Join(dir, "nsd.pid"), s.nsdLog, nsdZones.String())), 0o644)

	unboundConf := filepath.Join(dir, "unbound.conf")
	writeFile(t, unboundConf, []byte(fmt.Sprintf(`server:
  interface: %s
  port: 53
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: %q
  pidfile: %q
  logfile: %q
  use-syslog: no
  verbosity: 1
  val-log-level: 2
  log-servfail: yes
  do-daemonize: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  # unbound answers .test names itself unless told not to (RFC 6761).
  local-zone: "test." nodefault
remote-control:
  control-enable: no
# Everything outside the zones goes to nsd, which refuses it: the resolver
# never reaches for the internet's root servers.
stub-zone:
  name: "."
  stub-addr: %s
%s`, s.ResolverIP, dir, filepath.Join(dir, "unbound.pid"), s.unboundLog, s.AuthIP, unboundZones.String())), 0o644)

	s.startDaemon("nsd", "-d", "-c", nsdConf)
	s.startDaemon("unbound", "-d", "-c", unboundConf)
	s.waitReady(zones)
}

// zoneText is the zone file: SOA, NS and the name server's address, then
// the caller's records.
func (s *SignedDNS) zoneText(name string, records []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s.\n$TTL 300\n", name)
	fmt.Fprintf(&b, "@ IN SOA ns.testpeer-auth. hostmaster.%s. 1 3600 600 86400 300\n", name)
	fmt.Fprintf(&b, "@ IN NS ns.testpeer-auth.\n")
	for _, r := range records {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return b.String()
}

// newZoneKeys makes a KSK and a ZSK for name and returns their base paths;
// the KSK's DS record is in <KSK>.ds, the resolver's trust anchor.
func newZoneKeys(t testing.TB, dir, name string) [2]string {
	t.Helper()
	keygen := RequireBinary(t, "ldns-keygen")
	return [2]string{
		ldnsKey(t, dir, keygen, "-a", "ECDSAP256SHA256", "-k", name),
		ldnsKey(t, dir, keygen, "-a", "ECDSAP256SHA256", name),
	}
}

// signZone signs file with keys (NSEC) and returns the signed file.
func signZone(t testing.TB, dir, name, file string, keys [2]string) string {
	t.Helper()
	// Signatures valid from an hour ago, so clock skew never makes them
	// "not yet valid", for a week.
	now := time.Now().UTC()
	ts := func(t time.Time) string { return t.Format("20060102150405") }
	out, code := runIn(t, dir, RequireBinary(t, "ldns-signzone"),
		"-i", ts(now.Add(-time.Hour)), "-e", ts(now.AddDate(0, 0, 7)),
		"-o", name, file, keys[0], keys[1])
	if code != 0 {
		t.Fatalf("testpeer: ldns-signzone %s: exit %d\n%s", name, code, out)
	}
	return file + ".signed"
}

// ldnsKey runs ldns-keygen in dir and returns the key's base path.
func ldnsKey(t testing.TB, dir, keygen string, args ...string) string {
	t.Helper()
	out, code := runIn(t, dir, keygen, args...)
	base := strings.TrimSpace(out)
	if code != 0 || base == "" || strings.ContainsAny(base, " \n") {
		t.Fatalf("testpeer: ldns-keygen %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return filepath.Join(dir, base)
}

func runIn(t testing.TB, dir, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("testpeer: %s: %v", bin, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// corrupt flips a byte in every signature over the records owned by the
// bogus names (except the NSEC chain), leaving the records themselves as
// they were: what a forged answer or a broken signer looks like to a
// validator (RFC 4035 §5.3).
func corrupt(t testing.TB, file, origin string, bogus []string) {
	t.Helper()
	if len(bogus) == 0 {
		return
	}
	want := map[string]bool{}
	for _, b := range bogus {
		if !dns.IsFqdn(b) {
			if b == "@" {
				b = origin
			} else {
				b += "." + origin
			}
		}
		want[canon(b)] = true
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	zp := dns.NewZoneParser(f, dns.Fqdn(origin), file)
	var out strings.Builder
	hit := map[string]bool{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if sig, isSig := rr.(*dns.RRSIG); isSig && want[canon(sig.Hdr.Name)] && sig.TypeCovered != dns.TypeNSEC {
			raw, err := base64.StdEncoding.DecodeString(sig.Signature)
			if err != nil || len(raw) == 0 {
				t.Fatalf("testpeer: signature of %s: %v", sig.Hdr.Name, err)
			}
			raw[len(raw)/2] ^= 0xff
			sig.Signature = base64.StdEncoding.EncodeToString(raw)
			hit[canon(sig.Hdr.Name)] = true
		}
		out.WriteString(rr.String())
		out.WriteByte('\n')
	}
	f.Close()
	if err := zp.Err(); err != nil {
		t.Fatalf("testpeer: reading %s: %v", file, err)
	}
	for n := range want {
		if !hit[n] {
			t.Fatalf("testpeer: bogus name %s has no signed records in zone %s", n, origin)
		}
	}
	writeFile(t, file, []byte(out.String()), 0o644)
}

// startDaemon runs a server in the foreground; stop ends exactly that
// process.
func (s *SignedDNS) startDaemon(name string, args ...string) {
	t := s.t
	t.Helper()
	cmd := exec.Command(RequireBinary(t, name), args...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("testpeer: %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.procs = append(s.procs, daemon{cmd, exited})
	// A daemon that exits at once (bad config, port taken) fails here
	// rather than as a readiness timeout.
	select {
	case <-exited:
		t.Fatalf("testpeer: %s %s exited at once:\n%s\n%s", name, strings.Join(args, " "), out.String(), s.Logs())
	case <-time.After(20 * time.Millisecond):
	}
}

type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// stop ends the processes started by startDaemon, newest first: SIGTERM,
// so nsd also ends its own children, then SIGKILL if one lingers.
func (s *SignedDNS) stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		d := s.procs[i]
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	s.procs = nil
}

// waitReady polls the resolver until it answers every zone's SOA, with AD
// for the signed ones: then nsd serves and unbound validates.
func (s *SignedDNS) waitReady(zones []Zone) {
	t := s.t
	t.Helper()
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(15 * time.Second)
	for _, z := range zones {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(z.Name), dns.TypeSOA)
		q.SetEdns0(1232, true)
		q.AuthenticatedData = true
		for {
			r, _, err := c.Exchange(q, s.Addr())
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 && r.AuthenticatedData == !z.Unsigned {
				break
			}
			if time.Now().After(deadline) {
				got := fmt.Sprint(err)
				if r != nil {
					got = fmt.Sprintf("rcode %s, AD %v, %d answers", dns.RcodeToString[r.Rcode], r.AuthenticatedData, len(r.Answer))
				}
				t.Fatalf("testpeer: resolver %s not ready for zone %s (signed %v): %s\n%s", s.Addr(), z.Name, !z.Unsigned, got, s.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
