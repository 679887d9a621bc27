package smtpclient

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
)

// Timeouts bound every step of a session, so a tarpit or a dead peer costs
// a known amount of time.
type Timeouts struct {
	Connect   time.Duration // TCP connect
	Banner    time.Duration // the 220 greeting
	Command   time.Duration // EHLO, STARTTLS, the handshake, MAIL, RCPT, DATA, RSET, QUIT
	DataBlock time.Duration // each block of the message body
	DataEnd   time.Duration // the reply to the final "."
}

// DefaultTimeouts are RFC 5321 §4.5.3.2's minimums: 5 minutes for the
// greeting, MAIL and RCPT (§4.5.3.2.1–3), 3 minutes per data block
// (§4.5.3.2.5), 10 minutes for the reply to "." (§4.5.3.2.6); connect
// 30 seconds as Postfix's smtp_connect_timeout.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Connect:   30 * time.Second,
		Banner:    5 * time.Minute,
		Command:   5 * time.Minute,
		DataBlock: 3 * time.Minute,
		DataEnd:   10 * time.Minute,
	}
}

// UniformTimeouts uses d for every step: what a probe wants.
func UniformTimeouts(d time.Duration) Timeouts {
	return Timeouts{Connect: d, Banner: d, Command: d, DataBlock: d, DataEnd: d}
}

func (t Timeouts) withDefaults() Timeouts {
	def := DefaultTimeouts()
	for _, p := range []struct{ v, d *time.Duration }{
		{&t.Connect, &def.Connect}, {&t.Banner, &def.Banner}, {&t.Command, &def.Command},
		{&t.DataBlock, &def.DataBlock}, {&t.DataEnd, &def.DataEnd},
	} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	return t
}

// Options configure one session.
type Options struct {
	// HeloName is sent in EHLO/HELO; default: the host name, else
	// "localhost".
	HeloName string
	// ServerName is the MX host name: sent as SNI (RFC 7672 §8.1) and the
	// name the certificate must carry to count as verified.
	ServerName string
	// RootCAs verify the peer's chain; nil means the system roots. See
	// RootPool for system roots plus an operator CA file.
	RootCAs *x509.CertPool
	// Timeouts; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Logger gets one debug line per step; nil discards.
	Logger *slog.Logger
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time

	// TLSA are the host's DNSSEC-authentic TLSA records (dane.Host
	// Records, when its State is usable). With a usable one among them
	// the certificate is judged by DANE alone (RFC 7672 §3): a match
	// gives Outcome.Auth "dane", a mismatch Verified false whatever the
	// WebPKI says, with the "DANE: ..." diagnostic as VerifyError.
	TLSA []mx.TLSA
	// TLSAOwner is the records' owner name for diagnostics (dane.Host
	// Owner); "" means _PORT._tcp.ServerName.
	TLSAOwner string
	// TLSANames are the names a DANE-TA leaf may carry (dane.Host
	// Names: the MX host and its CNAME-expanded form, RFC 7672 §3.2.2);
	// nil means ServerName alone.
	TLSANames []string
}

// RootPool returns the system roots plus the certificates in caFile
// (PEM), for --ca-file. caFile "" gives the system roots alone.
func RootPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
	}
	return pool, nil
}

func (o *Options) helo() string {
	if o.HeloName != "" {
		return o.HeloName
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// ErrInjection: the server sent bytes after its 220 reply to STARTTLS and
// before the handshake. They could be a man in the middle's forged
// replies (CVE-2011-0411), so the TLS attempt fails.
var ErrInjection = errors.New("plaintext after the STARTTLS reply (response injection refused)")

// ErrSMTPUTF8 is returned by Mail when the message needs SMTPUTF8 and the
// server does not offer it (RFC 6531 §3.2: the message cannot be sent).
var ErrSMTPUTF8 = errors.New("server does not offer SMTPUTF8 (RFC 6531)")

// ErrRequireTLS is returned by Mail when MailOptions.RequireTLS is set
// and the session is not over TLS or the server did not offer REQUIRETLS
// after STARTTLS (RFC 8689 §4.2.1: such a message cannot go there).
var ErrRequireTLS = errors.New("server does not offer REQUIRETLS over TLS (RFC 8689)")

// ErrClosed: the session ended (421, a network error, QUIT, Close).
var ErrClosed = errors.New("session closed")
