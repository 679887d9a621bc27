package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/units"
)

func init() { subcommands = append(subcommands, newRelayCmd) }

func newRelayCmd(g *globals) *cobra.Command {
	var logLevel string
	var check bool
	def := relay.DefaultConfig()
	c := &cobra.Command{
		Use:   "relay",
		Short: "Run the enforcing outbound SMTP relay",
		Long: `Accept mail from the company's own servers and deliver it under the TLS
policy: listed recipients only over TLS that meets their entry, or the
message returns to its sender with an RFC 3464 DSN; everyone else with
opportunistic TLS, unless the domain publishes MTA-STS or DANE TLSA
records, which are honoured for every domain (--published-policies).
A message sent with REQUIRETLS leaves only over authenticated TLS to a
next hop that offers REQUIRETLS; an entry with on-fail=route:HOST hands
what no MX can take to that gateway over verified TLS. Every recipient's
outcome is written to the audit log, and partners that ask for TLS-RPT
get a daily report built from it (--tlsrpt).

Settings come from flags, then SMGCTL_<KEY> environment variables (e.g.
SMGCTL_AUDIT_LOG), then the --config file (lines "key = value"), then the
defaults. The policy file is watched and reloaded within a second of a
change, and on SIGHUP, which also re-reads the --auth-file. SIGTERM or
SIGINT stops the relay gracefully; what is not delivered stays in the
spool for the next start.`,
		Example: `  smgctl relay
  smgctl relay --listen 0.0.0.0:25 --allow 10.0.0.0/8 --hostname relay.corp.example
  smgctl relay --config /etc/smgctl/relay.conf
  smgctl relay --config /etc/smgctl/relay.conf --check
  smgctl relay --resolver 127.0.0.1:5353 --route partner.test=127.0.0.5:25`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := relayConfig(g, cmd.Flags())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if check {
				return relayCheck(cmd, cfg)
			}
			level := slog.LevelInfo
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			r, err := relay.New(cfg, log)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-hup:
						log.Info("SIGHUP: reloading the policy and the auth file")
						r.Reload()
					case <-ctx.Done():
						return
					}
				}
			}()
			if err := r.Run(ctx); err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
	f := c.Flags()
	f.String("listen", def.Listen, "SMTP listen address for the company's servers")
	f.String("hostname", "", "name in the greeting, EHLO and DSNs (default: the host name)")
	f.String("spool", def.Spool, "spool directory")
	f.String("audit-log", def.AuditLog, "audit log file (JSON lines)")
	f.Var(setting("allow", "cidrs", "127.0.0.0/8,::1/128"), "allow", "client networks that may relay, comma-separated CIDRs")
	f.String("tls-cert", "", "PEM certificate for inbound STARTTLS")
	f.String("tls-key", "", "PEM private key for inbound STARTTLS")
	f.String("auth-file", "", "file of user:bcrypt-hash lines (htpasswd -nbB) allowed to relay after AUTH over TLS")
	f.String("admin", "", "loopback address for /healthz and /metrics (default off)")
	f.Bool("admin-public", false, "allow a non-loopback --admin address (the endpoints have no authentication)")
	f.Var(setting("max-size", "size", units.FormatSize(def.MaxSize)), "max-size", "largest message accepted (e.g. 50MiB, 10MB)")
	f.Var(setting("max-connections", "int", fmt.Sprint(def.MaxConnections)), "max-connections", "concurrent inbound SMTP sessions; more are answered 421 4.7.0")
	f.Var(setting("max-connections-per-ip", "int", fmt.Sprint(def.MaxConnectionsPerIP)), "max-connections-per-ip", "concurrent sessions from one address outside --allow (IPv6: one /64)")
	f.Var(setting("max-connections-outside", "int", fmt.Sprint(def.MaxOutsideConnections)), "max-connections-outside", "concurrent sessions of all clients outside --allow until they authenticate (0: half of --max-connections)")
	f.Var(setting("idle-timeout", "duration", units.FormatDuration(def.IdleTimeout)), "idle-timeout", "how long the server waits for a command")
	f.Var(setting("command-timeout", "duration", units.FormatDuration(def.CommandTimeout)), "command-timeout", "how long a command line may take from its first octet")
	f.Var(setting("data-timeout", "duration", units.FormatDuration(def.DataTimeout)), "data-timeout", "how long one DATA body or BDAT chunk may take, in total")
	f.Var(setting("max-recipients", "int", fmt.Sprint(def.MaxRecipients)), "max-recipients", "recipients per message; more are answered 452 4.5.3")
	f.Var(setting("queue-lifetime", "duration", units.FormatDuration(def.QueueLifetime)), "queue-lifetime", "how long undeliverable mail is retried before it is returned")
	f.Var(setting("delay-warning", "duration", units.FormatDuration(def.DelayWarning)), "delay-warning", "send a \"delayed\" DSN after a message waited this long (0: never)")
	f.String("resolver", "", "DNS server HOST:PORT for every lookup: MX, TLSA, MTA-STS, TLS-RPT (default: /etc/resolv.conf)")
	f.Var(setting("mx-port", "port", "25"), "mx-port", "port of MX hosts (labs only)")
	f.String("ca-file", "", "PEM file of extra CAs trusted for verify=cert, the hand-off route, MTA-STS policy hosts and TLS-RPT https reports")
	f.StringArray("route", nil, "DOMAIN=HOST:PORT: send DOMAIN (and subdomains) there, no MX lookup; repeatable")
	f.Var(setting("shutdown-timeout", "duration", units.FormatDuration(def.ShutdownTimeout)), "shutdown-timeout", "how long a graceful stop may take")
	f.Var(setting("audit-max-size", "size", units.FormatSize(def.AuditMaxSize)), "audit-max-size", "rotate the audit log before it grows past this size (0: never)")
	f.Var(setting("audit-max-age", "duration", "0"), "audit-max-age", "rotate the audit log when its first record is this old (0: never)")
	f.Bool("tlsrpt", true, "send daily TLS-RPT reports (RFC 8460) to the partner domains that publish an _smtp._tls record (--tlsrpt=false: none)")
	f.String("tlsrpt-organization", "", "organization-name in the TLS-RPT reports (default: the host name)")
	f.String("tlsrpt-contact", "", "contact-info in the TLS-RPT reports (default: postmaster@ the host name)")
	f.Bool("published-policies", true, "honour what partner domains publish, MTA-STS and DANE, beside the policy list (--published-policies=false: ignore both, audited as ignored)")
	f.Bool("dns-trusted", false, "believe the resolver's DNSSEC AD bit even when it is not on loopback (the path to it is trusted)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&check, "check", false, "check the configuration, policy, certificate, paths and resolver, then exit (0 ok, 1 a problem, 2 bad settings); opens no listener, writes nothing")
	return c
}

// relayConfig applies, lowest first: defaults, the config file,
// SMGCTL_* variables, flags given on the command line.
func relayConfig(g *globals, flags *pflag.FlagSet) (relay.Config, error) {
	// The config file, SMGCTL_* and --policy were read before the
	// command ran (settings.go), as for every command; flags win.
	cfg := *g.settings()
	var err error
	flags.Visit(func(f *pflag.Flag) {
		if err != nil || f.Name == "config" || f.Name == "log-level" || f.Name == "policy" || f.Name == "check" {
			return
		}
		if f.Name == "route" {
			vals, _ := flags.GetStringArray("route")
			for _, v := range vals {
				if e := cfg.SetFrom("route", v, "flag --route"); e != nil {
					err = fmt.Errorf("--route: %v", e)
					return
				}
			}
			return
		}
		if e := cfg.SetFrom(f.Name, f.Value.String(), "flag --"+f.Name); e != nil {
			err = fmt.Errorf("--%s: %v", f.Name, strings.TrimPrefix(e.Error(), f.Name+" = "))
		}
	})
	return cfg, err
}

// relayCheck prints Preflight's findings, like postfix check: exit 1 when
// any would stop the relay or keep it from working.
func relayCheck(cmd *cobra.Command, cfg relay.Config) error {
	findings := relay.Preflight(cmd.Context(), cfg, time.Now())
	p := newPainter(cmd.OutOrStdout())
	rows := make([][]string, len(findings))
	failed := false
	for i, f := range findings {
		sev := string(f.Severity)
		switch f.Severity {
		case relay.CheckError:
			failed = true
			sev = p.bad(sev)
		case relay.CheckWarning:
			sev = p.warn(sev)
		default:
			sev = p.good(sev)
		}
		rows[i] = []string{f.Check, sev, f.Detail}
	}
	if err := renderTable(cmd.OutOrStdout(), []string{"check", "result", "detail"}, rows); err != nil {
		return err
	}
	if failed {
		return &exitError{code: exitFailed, err: fmt.Errorf("the relay would not start or not work with these settings (see above)")}
	}
	return nil
}
