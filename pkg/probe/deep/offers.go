package deep

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// OpenSSLDefaultSuites is the cipher list a default OpenSSL 3.0 client
// sends, as Debian 12 ships it (openssl 3.0.x, no CipherString in
// /etc/ssl/openssl.cnf): `openssl s_client` with no options, in wire
// order. It is the TLS 1.3 ciphersuites default, then the "DEFAULT"
// cipher string with PSK and SRP suites left out (a client without a PSK
// or SRP callback does not send them), then
// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3). The same hello offers
// supported_versions TLSv1.3..TLSv1.0. TestOpenSSLDefaultMatchesLocal
// compares this with what the local openssl actually sends.
var OpenSSLDefaultSuites = []uint16{
	0x1302, 0x1303, 0x1301, // TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256
	0xc02c, 0xc030, 0x009f, // ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384, DHE-RSA-AES256-GCM-SHA384
	0xcca9, 0xcca8, 0xccaa, // ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305, DHE-RSA-CHACHA20-POLY1305
	0xc02b, 0xc02f, 0x009e, // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, DHE-RSA-AES128-GCM-SHA256
	0xc024, 0xc028, 0x006b, // ECDHE-ECDSA-AES256-SHA384, ECDHE-RSA-AES256-SHA384, DHE-RSA-AES256-SHA256
	0xc023, 0xc027, 0x0067, // ECDHE-ECDSA-AES128-SHA256, ECDHE-RSA-AES128-SHA256, DHE-RSA-AES128-SHA256
	0xc00a, 0xc014, 0x0039, // ECDHE-ECDSA-AES256-SHA, ECDHE-RSA-AES256-SHA, DHE-RSA-AES256-SHA
	0xc009, 0xc013, 0x0033, // ECDHE-ECDSA-AES128-SHA, ECDHE-RSA-AES128-SHA, DHE-RSA-AES128-SHA
	0x009d, 0x009c, 0x003d, // AES256-GCM-SHA384, AES128-GCM-SHA256, AES256-SHA256
	0x003c, 0x0035, 0x002f, // AES128-SHA256, AES256-SHA, AES128-SHA
	0x00ff, // TLS_EMPTY_RENEGOTIATION_INFO_SCSV
}

// openSSLDefaultVersions is the supported_versions list of that client.
var openSSLDefaultVersions = []uint16{VersionTLS13, VersionTLS12, VersionTLS11, VersionTLS10}

// goClientHello returns the first record crypto/tls sends for cfg: the
// exact ClientHello the relay would send, order, key shares and all.
// Go reorders suites by its own preference and adds hybrid post-quantum
// key shares; rebuilding that by hand would drift with every Go release,
// so we capture it from a handshake over an in-memory pipe and cut it off
// after the first record.
func goClientHello(cfg *tls.Config, serverName string) ([]byte, error) {
	cfg = cfg.Clone()
	// As smtpclient's StartTLS: SNI is the MX name, none for an IP
	// literal (RFC 6066 §3) or no name. InsecureSkipVerify stands in for
	// a name (the handshake never completes); a made-up ServerName here
	// would go out as SNI, which the relay never sends.
	cfg.ServerName = serverName
	if net.ParseIP(serverName) != nil {
		cfg.ServerName = ""
	}
	cfg.InsecureSkipVerify = true
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(client, cfg).Handshake() // fails once we close the pipe
	}()
	defer func() {
		server.Close()
		client.Close()
		<-done
	}()
	server.SetDeadline(time.Now().Add(5 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(server, hdr[:]); err != nil {
		return nil, fmt.Errorf("capturing Go's ClientHello: %w", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[3:]))
	if hdr[0] != recordHandshake || n > maxRecord {
		return nil, errors.New("capturing Go's ClientHello: unexpected first record")
	}
	rec := make([]byte, 5+n)
	copy(rec, hdr[:])
	if _, err := io.ReadFull(server, rec[5:]); err != nil {
		return nil, fmt.Errorf("capturing Go's ClientHello: %w", err)
	}
	return rec, nil
}

// exchange sends one ClientHello record over a fresh connection from dial
// and reads the server's answer. A refusal (alert, or the connection
// closed or reset without a word, as Schannel and some appliances do) is
// not an error; a timeout, a dial failure or a non-TLS answer is.
func exchange(ctx context.Context, dial Dial, timeout time.Duration, hello []byte) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return reply{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(hello); err != nil {
		if refused(err) {
			return reply{}, nil
		}
		return reply{}, fmt.Errorf("sending ClientHello: %w", err)
	}
	r, err := readReply(conn)
	if err != nil {
		if refused(err) {
			return reply{}, nil
		}
		if cerr := ctxErr(ctx, err); cerr != nil {
			return reply{}, fmt.Errorf("waiting for ServerHello: %w", cerr)
		}
		return reply{}, err
	}
	return r, nil
}

// refused reports whether err means the server hung up on our hello.
func refused(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || isReset(err)
}

// ctxErr returns the context's error when err was caused by it: either
// ctx is done, or err is the I/O timeout of a deadline we copied from ctx
// that fired a moment before ctx's own timer.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var ne net.Error
	if dl, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
