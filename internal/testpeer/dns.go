package testpeer

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNS is an in-process recursive-resolver stand-in serving a mutable zone
// over UDP and TCP. Unknown names get NXDOMAIN, known names without the
// asked type NODATA; CNAMEs are followed within the zone like a resolver
// would. A negative answer carries the SOA of its zone in the authority
// section when the test added one (AddRR). All methods are safe for concurrent use.
type DNS struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	drop     map[string]bool
	truncate map[string]bool
	insecure map[string]bool
	ad       bool
	queries  []dns.Question
}

// StartDNS serves on 127.0.0.1 with a random port, the same for UDP and
// TCP. Use Addr() as the --resolver.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	return StartDNSOn(t, "127.0.0.1:0")
}

// StartDNSOn serves on addr, e.g. "127.64.1.2:53" for programs that use
// glibc's resolver, which only speaks to port 53. Port 0 picks one port free
// for both UDP and TCP.
func StartDNSOn(t testing.TB, addr string) *DNS {
	t.Helper()
	d := &DNS{
		t:        t,
		rrs:      map[string][]dns.RR{},
		servfail: map[string]bool{},
		drop:     map[string]bool{},
		truncate: map[string]bool{},
		insecure: map[string]bool{},
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 50 {
		pc, err = net.ListenPacket("udp4", addr)
		if err != nil {
			break
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if err != nil {
		t.Fatalf("testpeer: DNS listen on %s: %v", addr, err)
	}
	d.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("testpeer: DNS server on %s did not start", d.addr)
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return d
}

// Addr is "127.0.0.1:PORT" (UDP and TCP).
func (d *DNS) Addr() string { return d.addr }

func canon(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: 60}
}

// Add adds any record.
func (d *DNS) Add(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := canon(rr.Header().Name)
	d.rrs[n] = append(d.rrs[n], rr)
}

// AddRR adds a record in zone-file syntax, e.g. "a.test. 60 IN MX 10 mx.a.test.".
func (d *DNS) AddRR(s string) {
	d.t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		d.t.Fatalf("testpeer: DNS record %q: %v", s, err)
	}
	d.Add(rr)
}

// AddMX adds "name MX pref host".
func (d *DNS) AddMX(name string, pref uint16, host string) {
	d.Add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: pref, Mx: dns.Fqdn(host)})
}

// NullMX adds the RFC 7505 null MX "name MX 0 .".
func (d *DNS) NullMX(name string) {
	d.Add(&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 0, Mx: "."})
}

// AddA adds an A record.
func (d *DNS) AddA(name, ip string) {
	d.t.Helper()
	a := net.ParseIP(ip).To4()
	if a == nil {
		d.t.Fatalf("testpeer: AddA(%q): %q is not IPv4", name, ip)
	}
	d.Add(&dns.A{Hdr: hdr(name, dns.TypeA), A: a})
}

// AddAAAA adds an AAAA record.
func (d *DNS) AddAAAA(name, ip string) {
	d.t.Helper()
	a := net.ParseIP(ip)
	if a == nil || a.To4() != nil {
		d.t.Fatalf("testpeer: AddAAAA(%q): %q is not IPv6", name, ip)
	}
	d.Add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: a})
}

// AddTXT adds one TXT record; text longer than 255 bytes is split into
// several character-strings, as DNS requires.
func (d *DNS) AddTXT(name, text string) {
	var parts []string
	for len(text) > 255 {
		parts = append(parts, text[:255])
		text = text[255:]
	}
	parts = append(parts, text)
	d.Add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: parts})
}

// AddCNAME adds "name CNAME target".
func (d *DNS) AddCNAME(name, target string) {
	d.Add(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(target)})
}

// AddTLSA adds a TLSA record; data is hex (e.g. a SHA-256 of the SPKI).
func (d *DNS) AddTLSA(name string, usage, selector, mtype uint8, data string) {
	d.Add(&dns.TLSA{Hdr: hdr(name, dns.TypeTLSA), Usage: usage, Selector: selector, MatchingType: mtype, Certificate: data})
}

// ServFail makes every query for name (or through a CNAME to it) SERVFAIL.
func (d *DNS) ServFail(name string) { d.setFlag(d.servfail, name, true) }

// Drop makes queries for name go unanswered, so clients time out.
func (d *DNS) Drop(name string) { d.setFlag(d.drop, name, true) }

// Truncate makes UDP answers for name empty with TC set, so clients must
// retry over TCP, which answers normally.
func (d *DNS) Truncate(name string) { d.setFlag(d.truncate, name, true) }

// Remove forgets name's records and failure modes (it becomes NXDOMAIN).
func (d *DNS) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := canon(name)
	delete(d.rrs, n)
	delete(d.servfail, n)
	delete(d.drop, n)
	delete(d.truncate, n)
}

func (d *DNS) setFlag(m map[string]bool, name string, v bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m[canon(name)] = v
}

// Insecure makes answers that touch name (asked, or on a CNAME chain)
// come without the AD bit even under SetAD(true): a name in an unsigned
// zone, beside signed ones.
func (d *DNS) Insecure(name string) { d.setFlag(d.insecure, name, true) }

// SetAD sets the AD (authenticated data) bit on every answer, as a
// validating resolver does for DNSSEC-signed zones (RFC 7672 needs it).
func (d *DNS) SetAD(ad bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ad = ad
}

// Queries returns every question received so far, in order.
func (d *DNS) Queries() []dns.Question {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dns.Question(nil), d.queries...)
}

// exists reports whether name owns records or is an empty non-terminal
// (a name below it owns some), which is NODATA rather than NXDOMAIN.
func (d *DNS) exists(name string) bool {
	if len(d.rrs[name]) > 0 {
		return true
	}
	for n, rrs := range d.rrs {
		if len(rrs) > 0 && strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

// soaFor is the SOA record at name or its closest ancestor that has one
// (added with AddRR), nil if none. d.mu is held.
func (d *DNS) soaFor(name string) dns.RR {
	for n := name; ; {
		for _, rr := range d.rrs[n] {
			if rr.Header().Rrtype == dns.TypeSOA {
				return rr
			}
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return nil
		}
		n = n[i+1:]
	}
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := canon(q.Name)
	_, udp := w.RemoteAddr().(*net.UDPAddr)

	d.mu.Lock()
	d.queries = append(d.queries, q)
	if d.drop[name] {
		d.mu.Unlock()
		return
	}
	m.AuthenticatedData = d.ad
	truncate := udp && d.truncate[name]
	cur := name
	for range 8 { // CNAME chain limit
		if d.insecure[cur] {
			m.AuthenticatedData = false
		}
		if d.servfail[cur] {
			m.Rcode = dns.RcodeServerFailure
			m.Answer = nil
			break
		}
		var cname *dns.CNAME
		n := len(m.Answer)
		for _, rr := range d.rrs[cur] {
			switch {
			case rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY:
				m.Answer = append(m.Answer, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if len(m.Answer) > n || cname == nil {
			if len(m.Answer) == n && !d.exists(cur) {
				m.Rcode = dns.RcodeNameError
			}
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		cur = canon(cname.Target)
	}
	if len(m.Answer) == 0 && m.Rcode != dns.RcodeServerFailure {
		// NODATA or NXDOMAIN: the zone's SOA, if the test added one,
		// in the authority section, whose TTL and MINIMUM make the
		// negative TTL (RFC 2308 §3).
		if soa := d.soaFor(cur); soa != nil {
			m.Ns = append(m.Ns, dns.Copy(soa))
		}
	}
	d.mu.Unlock()

	if m.Rcode == dns.RcodeServerFailure {
		m.AuthenticatedData = false
	}
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(uint16(size), false)
	}
	if truncate {
		m.Answer = nil
		m.Truncated = true
	} else if udp {
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
