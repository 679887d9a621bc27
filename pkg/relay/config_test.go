package relay

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	c := DefaultConfig()
	err := c.applyFile("relay.conf", []byte(`# relay
listen = 0.0.0.0:25
hostname = relay.corp.example
allow = 10.0.0.0/8, 192.0.2.7
queue-lifetime = 48h
route = partner.test=127.0.0.5:25
route = Other.Test.=mx.test:2525, third.test=127.0.0.6:25
mx-port = 2525
max-connections = 2000
max-recipients = 50
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:25" || c.Hostname != "relay.corp.example" || c.QueueLifetime != 48*time.Hour || c.MXPort != 2525 {
		t.Errorf("config = %+v", c)
	}
	if len(c.Allow) != 2 || c.Allow[1] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("allow = %v", c.Allow)
	}
	if c.Routes["other.test"] != "mx.test:2525" || len(c.Routes) != 3 {
		t.Errorf("routes = %v", c.Routes)
	}
	if c.MaxConnections != 2000 || c.MaxRecipients != 50 {
		t.Errorf("limits = %d connections, %d recipients", c.MaxConnections, c.MaxRecipients)
	}
	if c.Spool != DefaultSpool {
		t.Errorf("an unset key lost its default: %q", c.Spool)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for text, want := range map[string]string{
		"listen = a\nbogus = 1\n":             "relay.conf:2: unknown key",
		"listen\n":                            "relay.conf:1: want key = value",
		"\n\nmax-size = -1\n":                 "relay.conf:3: max-size",
		"max-connections = 0\n":               "relay.conf:1: max-connections",
		"max-recipients = many\n":             "relay.conf:1: max-recipients",
		"spool = /a\nspool = /b\n":            "relay.conf:2: spool set again (first on line 1)",
		"route = partner.test\n":              "relay.conf:1: route",
		"queue-lifetime = soon\n":             "relay.conf:1: queue-lifetime",
		"allow = 10.0.0.0/8, not-a-network\n": "relay.conf:1: allow",
	} {
		c := DefaultConfig()
		err := c.applyFile("relay.conf", []byte(text))
		var fe *FileError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}

func TestConfigEnv(t *testing.T) {
	c := DefaultConfig()
	env := map[string]string{"SMGCTL_AUDIT_LOG": "/tmp/a.log", "SMGCTL_ROUTE": "a.test=127.0.0.1:25,b.test=127.0.0.2:25", "SMGCTL_POLICY": "/ignored"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.AuditLog != "/tmp/a.log" || len(c.Routes) != 2 || c.Policy != DefaultPolicy {
		t.Errorf("config = %+v", c)
	}
	env = map[string]string{"SMGCTL_MX_PORT": "0"}
	if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "SMGCTL_MX_PORT") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestConfigCheck(t *testing.T) {
	c := DefaultConfig()
	c.TLSCert = "cert.pem"
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "tls-cert and tls-key") {
		t.Errorf("Check = %v", err)
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("listen = 127.0.0.1:25\nroute = a.test=127.0.0.1:25\n"))
	f.Add([]byte("# c\n\n=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DefaultConfig()
		err := c.applyFile("f", data)
		var fe *FileError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error without a line: %v", err)
		}
	})
}

// ISSUE 10 #13: the admin endpoints have no authentication, so only a
// loopback address is taken without admin-public = true.
func TestConfigAdminLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		admin  string
		public bool
		ok     bool
	}{
		{"127.0.0.1:9025", false, true},
		{"127.0.0.2:9025", false, true},
		{"[::1]:9025", false, true},
		{"localhost:9025", false, true},
		{":9025", false, false},
		{"0.0.0.0:9025", false, false},
		{"[::]:9025", false, false},
		{"10.1.2.3:9025", false, false},
		{"relay.corp.example:9025", false, false},
		{"127.0.0.1", false, false}, // no port
		{":9025", true, true},
		{"10.1.2.3:9025", true, true},
	} {
		c := DefaultConfig()
		c.Admin, c.AdminPublic = tc.admin, tc.public
		err := c.Check()
		if (err == nil) != tc.ok {
			t.Errorf("admin = %q, admin-public = %v: Check = %v", tc.admin, tc.public, err)
		}
	}
	c := DefaultConfig()
	if err := c.applyFile("relay.conf", []byte("admin = :9025\nadmin-public = true\n")); err != nil || !c.AdminPublic {
		t.Errorf("admin-public = true: %v, %v", err, c.AdminPublic)
	}
}

// The outside share must leave something for the allowed networks; 0 is
// half of max-connections.
func TestConfigOutsideShare(t *testing.T) {
	c := DefaultConfig()
	c.MaxConnections, c.MaxOutsideConnections = 40, 40
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "max-connections-outside (40) must be below max-connections (40)") {
		t.Errorf("Check = %v", err)
	}
	c.MaxOutsideConnections = 0
	if err := c.Check(); err != nil {
		t.Errorf("0: %v", err)
	}
	if err := c.Set("max-connections-outside", "-1"); err == nil {
		t.Error("-1 accepted")
	}
}

// Sizes and durations in the units operators write, and errors in their
// words rather than strconv's.
func TestConfigUnits(t *testing.T) {
	c := DefaultConfig()
	for k, v := range map[string]string{"max-size": "10MB", "audit-max-size": "50MiB", "queue-lifetime": "5d", "audit-max-age": "2w", "delay-warning": "4h"} {
		if err := c.Set(k, v); err != nil {
			t.Fatalf("%s = %s: %v", k, v, err)
		}
	}
	if c.MaxSize != 10_000_000 || c.AuditMaxSize != 50<<20 || c.QueueLifetime != 120*time.Hour ||
		c.AuditMaxAge != 14*24*time.Hour || c.DelayWarning != 4*time.Hour {
		t.Errorf("config = %+v", c)
	}
	err := c.Set("max-size", "10 megs")
	if err == nil || strings.Contains(err.Error(), "strconv") || !strings.Contains(err.Error(), "want a size such as 10MB") {
		t.Errorf("max-size error: %v", err)
	}
	err = c.Set("queue-lifetime", "5 days")
	if err == nil || strings.Contains(err.Error(), "time:") || !strings.Contains(err.Error(), "want a duration such as 90s, 4h or 5d") {
		t.Errorf("queue-lifetime error: %v", err)
	}
}
