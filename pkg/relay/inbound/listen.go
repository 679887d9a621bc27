package inbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Listen binds exactly the address asked for. Go's "tcp" network turns
// "0.0.0.0:25" into a dual-stack socket that also takes IPv6 clients on
// [::]; an operator who wrote an IPv4 address meant IPv4 only, so an IP
// literal picks "tcp4" or "tcp6". A host name or an empty host (":25",
// "every interface") keeps "tcp".
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, ListenNetwork(addr), addr)
}

// ListenNetwork is the network Listen uses for addr.
func ListenNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp"
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "tcp"
	case ip.Is4():
		return "tcp4"
	default:
		return "tcp6"
	}
}

// IsLoopbackAddr reports whether a listen address binds loopback only: a
// loopback IP literal or "localhost". An empty host (all interfaces) or
// any other name is not.
func IsLoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q: %w", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback(), nil
}
