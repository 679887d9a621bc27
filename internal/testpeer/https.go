package testpeer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HTTPSServer is an HTTPS server on port 443 of its own loopback address,
// with a certificate from a test CA: an MTA-STS policy host (RFC 8461
// §3.3) or any other HTTPS peer. Its handler can be swapped and the server
// stopped and restarted mid-test.
type HTTPSServer struct {
	IP   net.IP
	Host string // the certificate's name, e.g. "mta-sts.example.test"
	Leaf *Leaf  // the served certificate
	CA   *CA

	t        testing.TB
	handler  atomic.Pointer[http.Handler]
	requests atomic.Int64

	mu  sync.Mutex
	srv *http.Server // nil while stopped
}

// StartHTTPS serves h over HTTPS on a fresh loopback IP, port 443, with a
// certificate from ca (a new CA when nil) for host. It is stopped in
// t.Cleanup. Port 443 needs root.
func StartHTTPS(t testing.TB, ca *CA, host string, h http.Handler) *HTTPSServer {
	t.Helper()
	RequireRoot(t)
	if ca == nil {
		ca = NewCA(t)
	}
	s := &HTTPSServer{IP: FreeLoopbackIP(t), Host: host, CA: ca, t: t}
	s.Leaf = ca.Issue(t, host)
	s.SetHandler(h)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is "IP:443".
func (s *HTTPSServer) Addr() string { return net.JoinHostPort(s.IP.String(), "443") }

// SetHandler replaces the handler for the following requests.
func (s *HTTPSServer) SetHandler(h http.Handler) {
	if h == nil {
		h = http.NotFoundHandler()
	}
	s.handler.Store(&h)
}

// Requests counts the requests served so far, e.g. to prove a cached
// policy was used without fetching.
func (s *HTTPSServer) Requests() int { return int(s.requests.Load()) }

// Stop closes the listener and every connection: later connections are
// refused, as with a policy host that is down. Stopping twice is harmless.
func (s *HTTPSServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// Start serves again after Stop (same address and certificate); it
// returns once the port accepts connections. A running server is left as it is.
func (s *HTTPSServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	var l net.Listener
	var err error
	// The port may linger briefly after Stop.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l, err = net.Listen("tcp4", s.Addr())
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		s.t.Fatalf("testpeer: HTTPS listen on %s: %v", s.Addr(), err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.requests.Add(1)
			(*s.handler.Load()).ServeHTTP(w, r)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.Leaf.TLS}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Logf("testpeer: HTTPS server on %s: %v", s.Addr(), err)
		}
	}()
	s.srv = srv
}

// MTASTSPolicy is an RFC 8461 §3.2 policy body: mode ("enforce",
// "testing", "none"), max_age in seconds and one "mx:" line per pattern.
func MTASTSPolicy(mode string, maxAge int, mx ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", mode)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s\r\n", m)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", maxAge)
	return b.String()
}

// MTASTSPath is where a policy host serves the policy (RFC 8461 §3.3).
const MTASTSPath = "/.well-known/mta-sts.txt"

// MTASTSHandler serves body as text/plain at MTASTSPath and 404 elsewhere.
func MTASTSHandler(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != MTASTSPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})
}

// StartMTASTSHost serves policy for domain at
// https://mta-sts.<domain>/.well-known/mta-sts.txt with a certificate from
// ca. DNS must still name it: see MTASTSRecords.
func StartMTASTSHost(t testing.TB, ca *CA, domain, policy string) *HTTPSServer {
	t.Helper()
	return StartHTTPS(t, ca, "mta-sts."+strings.TrimSuffix(domain, "."), MTASTSHandler(policy))
}

// MTASTSRecords are the zone-file lines that publish the policy host for
// domain: "_mta-sts.<domain> TXT v=STSv1; id=<id>" (RFC 8461 §3.1) and
// the host's A record, for Zone.Records or a DNS.AddRR.
func (s *HTTPSServer) MTASTSRecords(domain, id string) []string {
	domain = strings.TrimSuffix(domain, ".")
	return []string{
		fmt.Sprintf("_mta-sts.%s. 300 IN TXT \"v=STSv1; id=%s\"", domain, id),
		fmt.Sprintf("%s. 300 IN A %s", s.Host, s.IP),
	}
}
