package testpeer

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reserved holds the loopback IPs handed out by FreeLoopbackIP in this
// process, so two tests of one package never get the same address. Other
// processes are kept apart by the size of the range and the bind test.
var reserved = struct {
	sync.Mutex
	ips map[[4]byte]bool
}{ips: map[[4]byte]bool{}}

// FreeLoopbackIP returns a random address in 127.64.0.0/10 whose TCP port 25
// is free. It is reserved for the test's lifetime; the reservation is
// released in t.Cleanup after the peers started later have been stopped.
func FreeLoopbackIP(t testing.TB) net.IP {
	t.Helper()
	for range 200 {
		// 127.64.0.0/10 = 127.64.0.0 .. 127.127.255.255; avoid .0 and .255
		// in the last octet so no tool mistakes them for network/broadcast.
		ip := [4]byte{127, byte(64 + rand.IntN(64)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))}
		reserved.Lock()
		taken := reserved.ips[ip]
		if !taken {
			reserved.ips[ip] = true
		}
		reserved.Unlock()
		if taken {
			continue
		}
		if port25Free(net.IP(ip[:])) {
			t.Cleanup(func() {
				reserved.Lock()
				delete(reserved.ips, ip)
				reserved.Unlock()
			})
			return net.IPv4(ip[0], ip[1], ip[2], ip[3]).To4()
		}
		reserved.Lock()
		delete(reserved.ips, ip)
		reserved.Unlock()
	}
	t.Fatal("testpeer: no free loopback address with port 25 in 127.64.0.0/10")
	return nil
}

// port25Free bind-tests ip:25. Without root the bind fails with EACCES, so
// then a refused connection counts as free.
func port25Free(ip net.IP) bool {
	addr := net.JoinHostPort(ip.String(), "25")
	l, err := net.Listen("tcp4", addr)
	if err == nil {
		l.Close()
		return true
	}
	if !errors.Is(err, syscall.EACCES) {
		return false
	}
	c, err := net.DialTimeout("tcp4", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
