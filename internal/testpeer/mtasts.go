package testpeer

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// MTASTSServer is an HTTPS server answering as mta-sts.<domain> for each
// of its domains, with a certificate from a test CA and an A record for
// each name in a test DNS zone. Dial Port instead of 443
// (mtasts.FetcherConfig.Port).
type MTASTSServer struct {
	*httptest.Server
	Port int
}

// ServeMTASTS starts handler over HTTPS on 127.0.0.1 for domains; the
// server stops at the end of the test (or earlier with Close).
func ServeMTASTS(t testing.TB, ca *CA, d *DNS, handler http.Handler, domains ...string) *MTASTSServer {
	t.Helper()
	var names []string
	for _, dom := range domains {
		names = append(names, "mta-sts."+dom)
		d.AddA("mta-sts."+dom, "127.0.0.1")
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, names...).TLS}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(port)
	return &MTASTSServer{Server: srv, Port: n}
}
