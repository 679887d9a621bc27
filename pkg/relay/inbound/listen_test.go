package inbound

import (
	"context"
	"net"
	"testing"
)

// ISSUE 10 #13: "0.0.0.0:25" binds IPv4 only, not also [::] as Go's "tcp"
// network would.
func TestListenNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:25":          "tcp4",
		"127.0.0.1:2525":      "tcp4",
		"[::]:25":             "tcp6",
		"[::1]:25":            "tcp6",
		"[::ffff:1.2.3.4]:25": "tcp6",
		":25":                 "tcp",
		"relay.example:25":    "tcp",
	} {
		if got := ListenNetwork(addr); got != want {
			t.Errorf("ListenNetwork(%q) = %q, want %q", addr, got, want)
		}
	}
}

// An IPv4 loopback listener is not reachable over IPv6 loopback, and the
// reverse: exactly the family asked for is bound.
func TestListenBindsOneFamily(t *testing.T) {
	l, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().(*net.TCPAddr).IP.To4() == nil {
		t.Errorf("listening on %v", l.Addr())
	}
	l6, err := Listen(context.Background(), "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l6.Close()
	if l6.Addr().(*net.TCPAddr).IP.To4() != nil {
		t.Errorf("listening on %v", l6.Addr())
	}
}
