package relay

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Value renders a key's current value as a config file would set it, so
// that docs/config.md's defaults are checked against DefaultConfig (see
// config_doc_test.go) and an operator can print an effective setting.
// "route" renders as comma-separated DOMAIN=HOST:PORT, sorted.
func (c *Config) Value(key string) (string, error) {
	switch key {
	case "listen":
		return c.Listen, nil
	case "hostname":
		return c.Hostname, nil
	case "spool":
		return c.Spool, nil
	case "policy":
		return c.Policy, nil
	case "audit-log":
		return c.AuditLog, nil
	case "allow":
		s := make([]string, len(c.Allow))
		for i, p := range c.Allow {
			s[i] = p.String()
		}
		return strings.Join(s, ","), nil
	case "tls-cert":
		return c.TLSCert, nil
	case "tls-key":
		return c.TLSKey, nil
	case "auth-file":
		return c.AuthFile, nil
	case "admin":
		return c.Admin, nil
	case "admin-public":
		return strconv.FormatBool(c.AdminPublic), nil
	case "max-size":
		return strconv.FormatInt(c.MaxSize, 10), nil
	case "max-connections":
		return strconv.Itoa(c.MaxConnections), nil
	case "max-recipients":
		return strconv.Itoa(c.MaxRecipients), nil
	case "max-connections-per-ip":
		return strconv.Itoa(c.MaxConnectionsPerIP), nil
	case "max-connections-outside":
		return strconv.Itoa(c.MaxOutsideConnections), nil
	case "idle-timeout":
		return c.IdleTimeout.String(), nil
	case "command-timeout":
		return c.CommandTimeout.String(), nil
	case "data-timeout":
		return c.DataTimeout.String(), nil
	case "queue-lifetime":
		return c.QueueLifetime.String(), nil
	case "delay-warning":
		return c.DelayWarning.String(), nil
	case "shutdown-timeout":
		return c.ShutdownTimeout.String(), nil
	case "resolver":
		return c.Resolver, nil
	case "mx-port":
		return strconv.Itoa(c.MXPort), nil
	case "ca-file":
		return c.CAFile, nil
	case "route":
		var s []string
		for d, hp := range c.Routes {
			s = append(s, d+"="+hp)
		}
		slices.Sort(s)
		return strings.Join(s, ","), nil
	case "audit-max-size":
		return strconv.FormatInt(c.AuditMaxSize, 10), nil
	case "audit-max-age":
		return c.AuditMaxAge.String(), nil
	case "tlsrpt":
		return strconv.FormatBool(c.TLSRPT), nil
	case "tlsrpt-organization":
		return c.TLSRPTOrganization, nil
	case "tlsrpt-contact":
		return c.TLSRPTContact, nil
	case "published-policies":
		return strconv.FormatBool(c.PublishedPolicies), nil
	case "dns-trusted":
		return strconv.FormatBool(c.DNSTrusted), nil
	}
	return "", fmt.Errorf("unknown key %q", key)
}
