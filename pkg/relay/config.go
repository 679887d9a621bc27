package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/delivery"
	"github.com/smgctl/smgctl/pkg/relay/inbound"
	"github.com/smgctl/smgctl/pkg/units"
)

// Config is everything `smgctl relay` can be told. DefaultConfig is a
// working relay for a single host: loopback in, loopback clients only.
type Config struct {
	Listen   string // inbound SMTP address
	Hostname string // EHLO/greeting name, DSN Reporting-MTA; "" = os.Hostname()
	Spool    string // spool directory
	Policy   string // policy file
	AuditLog string // audit log file
	// Allow lists client networks that may relay without AUTH.
	Allow   []netip.Prefix
	TLSCert string // PEM certificate (chain) for inbound STARTTLS
	TLSKey  string // PEM private key for inbound STARTTLS
	// AuthFile lists "user:bcrypt-hash" lines (pkg/relay/authfile) that
	// may relay from anywhere after AUTH over TLS; "" = no AUTH.
	AuthFile string
	// Admin is the address of /healthz and /metrics; "" = off. It must
	// be a loopback address unless AdminPublic says otherwise.
	Admin string
	// AdminPublic allows a non-loopback Admin address (the endpoints
	// have no authentication).
	AdminPublic bool
	MaxSize     int64 // bytes per message (SIZE)
	// MaxConnections bounds concurrent inbound sessions (more get 421);
	// MaxRecipients bounds RCPTs per message (more get 452 4.5.3).
	MaxConnections int
	MaxRecipients  int
	// MaxConnectionsPerIP bounds connections from one address outside
	// Allow (IPv6: one /64); MaxOutsideConnections those of all clients
	// outside Allow that have not authenticated (pkg/relay/inbound); 0
	// means half of MaxConnections.
	MaxConnectionsPerIP   int
	MaxOutsideConnections int
	// IdleTimeout, CommandTimeout and DataTimeout bound the wait for a
	// command, a command line once begun, and one DATA body or BDAT
	// chunk; no octet resets them.
	IdleTimeout    time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	QueueLifetime  time.Duration
	DelayWarning   time.Duration
	Resolver       string // DNS server host:port; "" = /etc/resolv.conf
	MXPort         int    // port for MX hosts (labs); 25 in production
	CAFile         string // extra trust anchors for verify=cert
	// Routes: domain → host:port, overriding MX lookup (like Postfix's
	// transport map); a route also covers the domain's subdomains.
	Routes map[string]string
	// ShutdownTimeout bounds the graceful stop after SIGTERM.
	ShutdownTimeout time.Duration
	// AuditMaxSize and AuditMaxAge rotate the audit log (0: no limit);
	// the chain continues across rotated files (pkg/audit).
	AuditMaxSize int64
	AuditMaxAge  time.Duration
	// TLSRPT turns on the daily TLS-RPT reports (RFC 8460) to the
	// partner domains of the day before (pkg/relay/tlsrpt);
	// TLSRPTOrganization and TLSRPTContact name the submitter in them
	// ("" = the relay's host name, postmaster@ the host name).
	TLSRPT             bool
	TLSRPTOrganization string
	TLSRPTContact      string
	// PublishedPolicies applies what partner domains publish, MTA-STS
	// (RFC 8461) and DANE (RFC 7672), beside the list; false (labs,
	// emergencies) ignores both and the audit says so. MTA-STS policies
	// are cached in <spool>/mta-sts.
	PublishedPolicies bool
	// DNSTrusted believes the resolver's AD bit (DNSSEC, for DANE) even
	// when it is not on loopback: the path to it is trusted.
	DNSTrusted bool

	// origins says where each key that is not at its default was set:
	// "FILE:LINE", "env SMGCTL_X" or "flag --x" (smgctl config show).
	origins map[string]string
	// defaultPolicyPath stands in for DefaultPolicy, the one policy path
	// that may be missing at start (a fresh install), in tests that
	// cannot use /etc; "" = DefaultPolicy.
	defaultPolicyPath string
	// tlsrptMaxDelay bounds the random delay before the TLS-RPT pass
	// (tests; 0 = the sender's default).
	tlsrptMaxDelay time.Duration
	// tlsrptNow is the TLS-RPT sender's clock (tests that report on
	// today; nil = time.Now).
	tlsrptNow func() time.Time
}

// defaultPolicy is the policy path that may be missing at start.
func (c *Config) defaultPolicy() string {
	if c.defaultPolicyPath != "" {
		return c.defaultPolicyPath
	}
	return DefaultPolicy
}

// SetFrom is Set that also records where the value came from.
func (c *Config) SetFrom(key, value, origin string) error {
	if err := c.Set(key, value); err != nil {
		return err
	}
	if c.origins == nil {
		c.origins = map[string]string{}
	}
	c.origins[key] = origin
	return nil
}

// Origin says where key's value came from: "FILE:LINE", "env SMGCTL_X",
// "flag --x", or "default".
func (c *Config) Origin(key string) string {
	if o, ok := c.origins[key]; ok {
		return o
	}
	return "default"
}

// Documented defaults (docs/relay.md).
const (
	DefaultListen          = "127.0.0.1:2525"
	DefaultSpool           = "/var/spool/smgctl"
	DefaultAuditLog        = "/var/log/smgctl/audit.log"
	DefaultPolicy          = "/etc/smgctl/policy.conf"
	DefaultMaxSize         = 50 << 20
	DefaultShutdownTimeout = 30 * time.Second
	DefaultAuditMaxSize    = 100 << 20
)

// DefaultConfig is the configuration with nothing given.
func DefaultConfig() Config {
	return Config{
		Listen:              DefaultListen,
		Spool:               DefaultSpool,
		Policy:              DefaultPolicy,
		AuditLog:            DefaultAuditLog,
		Allow:               []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxSize:             DefaultMaxSize,
		MaxConnections:      inbound.DefaultMaxConnections,
		MaxRecipients:       inbound.DefaultMaxRecipients,
		MaxConnectionsPerIP: inbound.DefaultMaxConnectionsPerIP,
		IdleTimeout:         inbound.DefaultIdleTimeout,
		CommandTimeout:      inbound.DefaultCommandTimeout,
		DataTimeout:         inbound.DefaultDataTimeout,
		QueueLifetime:       delivery.DefaultQueueLifetime,
		DelayWarning:        delivery.DefaultDelayWarning,
		MXPort:              25,
		Routes:              map[string]string{},
		ShutdownTimeout:     DefaultShutdownTimeout,
		AuditMaxSize:        DefaultAuditMaxSize,
		TLSRPT:              true,
		PublishedPolicies:   true,
	}
}

// Keys are the configuration keys, the same in the config file, as
// SMGCTL_<KEY> environment variables (upper case, '-' as '_') and as
// --<key> flags.
var Keys = []string{
	"listen", "hostname", "spool", "policy", "audit-log", "allow", "tls-cert", "tls-key", "auth-file",
	"admin", "admin-public", "max-size", "max-connections", "max-connections-per-ip", "max-connections-outside",
	"idle-timeout", "command-timeout", "data-timeout", "max-recipients", "queue-lifetime", "delay-warning", "resolver", "mx-port", "ca-file", "route",
	"shutdown-timeout", "audit-max-size", "audit-max-age", "tlsrpt", "tlsrpt-organization", "tlsrpt-contact",
	"published-policies", "dns-trusted",
}

// EnvName is the environment variable of a key: "audit-log" →
// SMGCTL_AUDIT_LOG.
func EnvName(key string) string {
	return "SMGCTL_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// Set applies one key = value. "route" adds a route (and accepts a
// comma-separated list); "allow" replaces the list.
func (c *Config) Set(key, value string) error {
	value = strings.TrimSpace(value)
	var err error
	switch key {
	case "listen":
		c.Listen = value
	case "hostname":
		c.Hostname = value
	case "spool":
		c.Spool = value
	case "policy":
		c.Policy = value
	case "audit-log":
		c.AuditLog = value
	case "allow":
		c.Allow, err = ParseAllow(value)
	case "tls-cert":
		c.TLSCert = value
	case "tls-key":
		c.TLSKey = value
	case "auth-file":
		c.AuthFile = value
	case "admin":
		c.Admin = value
	case "admin-public":
		c.AdminPublic, err = strconv.ParseBool(value)
	case "max-size":
		c.MaxSize, err = units.ParseSize(value)
		if err == nil && c.MaxSize <= 0 {
			err = fmt.Errorf("must be positive")
		}
	case "max-connections":
		c.MaxConnections, err = positiveInt(value)
	case "max-recipients":
		c.MaxRecipients, err = positiveInt(value)
	case "max-connections-per-ip":
		c.MaxConnectionsPerIP, err = positiveInt(value)
	case "max-connections-outside":
		c.MaxOutsideConnections, err = strconv.Atoi(value)
		if err == nil && c.MaxOutsideConnections < 0 {
			err = fmt.Errorf("must be 0 (half of max-connections) or positive")
		}
	case "idle-timeout":
		c.IdleTimeout, err = positiveDuration(value)
	case "command-timeout":
		c.CommandTimeout, err = positiveDuration(value)
	case "data-timeout":
		c.DataTimeout, err = positiveDuration(value)
	case "queue-lifetime":
		c.QueueLifetime, err = positiveDuration(value)
	case "delay-warning":
		c.DelayWarning, err = units.ParseDuration(value)
	case "shutdown-timeout":
		c.ShutdownTimeout, err = positiveDuration(value)
	case "audit-max-size":
		c.AuditMaxSize, err = units.ParseSize(value)
		if err == nil && c.AuditMaxSize < 0 {
			err = fmt.Errorf("must be 0 (no limit) or positive")
		}
	case "audit-max-age":
		c.AuditMaxAge, err = units.ParseDuration(value)
		if err == nil && c.AuditMaxAge < 0 {
			err = fmt.Errorf("must be 0 (no limit) or positive")
		}
	case "tlsrpt":
		c.TLSRPT, err = strconv.ParseBool(value)
	case "tlsrpt-organization":
		c.TLSRPTOrganization = value
	case "tlsrpt-contact":
		c.TLSRPTContact = value
	case "published-policies":
		c.PublishedPolicies, err = strconv.ParseBool(value)
	case "dns-trusted":
		c.DNSTrusted, err = strconv.ParseBool(value)
	case "resolver":
		c.Resolver = value
	case "mx-port":
		c.MXPort, err = strconv.Atoi(value)
		if err == nil && (c.MXPort < 1 || c.MXPort > 65535) {
			err = fmt.Errorf("want 1-65535")
		}
	case "ca-file":
		c.CAFile = value
	case "route":
		if c.Routes == nil {
			c.Routes = map[string]string{}
		}
		for r := range strings.SplitSeq(value, ",") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			d, hp, rerr := delivery.ParseRoute(r)
			if rerr != nil {
				return rerr
			}
			c.Routes[d] = hp
		}
	default:
		return fmt.Errorf("unknown key %q (known: %s)", key, strings.Join(Keys, ", "))
	}
	if err != nil {
		return fmt.Errorf("%s = %q: %v", key, value, err)
	}
	return nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := units.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("must be positive")
	}
	return d, err
}

// ParseAllow reads a comma-separated list of CIDRs or single addresses.
func ParseAllow(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// FileError names the config file line that is wrong.
type FileError struct {
	File string
	Line int
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// ApplyFile reads a config file: one "key = value" per line, '#' starts a
// comment line, blank lines ignored; "route" may repeat. Keys are those of
// Keys; values are taken literally (no quoting).
func (c *Config) ApplyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return c.applyFile(path, data)
}

func (c *Config) applyFile(name string, data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	seen := map[string]int{}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return &FileError{name, n, fmt.Errorf("want key = value, got %q", line)}
		}
		k = strings.TrimSpace(k)
		if first, dup := seen[k]; dup && k != "route" {
			return &FileError{name, n, fmt.Errorf("%s set again (first on line %d)", k, first)}
		}
		seen[k] = n
		if err := c.SetFrom(k, v, fmt.Sprintf("%s:%d", name, n)); err != nil {
			return &FileError{name, n, err}
		}
	}
	if err := sc.Err(); err != nil {
		return &FileError{name, n + 1, err}
	}
	return nil
}

// ApplyEnv applies SMGCTL_<KEY> variables found by lookup (os.LookupEnv).
// "policy" is left to the caller, which shares SMGCTL_POLICY with every
// other command.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	for _, k := range Keys {
		if k == "policy" {
			continue
		}
		if v, ok := lookup(EnvName(k)); ok {
			if err := c.SetFrom(k, v, "env "+EnvName(k)); err != nil {
				return fmt.Errorf("%s: %w", EnvName(k), err)
			}
		}
	}
	return nil
}

// Check reports what cannot work before anything is opened.
func (c *Config) Check() error {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "listen address is empty")
	}
	if c.Spool == "" {
		errs = append(errs, "spool directory is empty")
	}
	if c.AuditLog == "" {
		errs = append(errs, "audit log path is empty")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, "tls-cert and tls-key go together")
	}
	// RFC 4954 §4: AUTH is offered only after STARTTLS, so without a
	// certificate an auth file would silently do nothing.
	if c.AuthFile != "" && c.TLSCert == "" {
		errs = append(errs, "auth-file needs tls-cert and tls-key: AUTH is offered only over TLS")
	}
	// The outside share must leave room for the allowed networks.
	if c.MaxOutsideConnections > 0 && c.MaxOutsideConnections >= c.MaxConnections {
		errs = append(errs, fmt.Sprintf("max-connections-outside (%d) must be below max-connections (%d): the difference is what stays for the allowed networks", c.MaxOutsideConnections, c.MaxConnections))
	}
	// /healthz and /metrics have no authentication: ":9025" would quietly
	// publish them on every interface.
	if c.Admin != "" && !c.AdminPublic {
		if lo, err := inbound.IsLoopbackAddr(c.Admin); err != nil {
			errs = append(errs, "admin: "+err.Error())
		} else if !lo {
			errs = append(errs, fmt.Sprintf("admin = %q is not a loopback address: /healthz and /metrics have no authentication; use 127.0.0.1:PORT, or set admin-public = true to publish them", c.Admin))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func positiveInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err == nil && n <= 0 {
		err = fmt.Errorf("must be positive")
	}
	return n, err
}
