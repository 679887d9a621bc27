package smtpserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// scriptConn is a net.Conn that reads a fixed script and records what the
// server writes, for running a whole session in one goroutine.
type scriptConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1025}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// runScript runs one connection over script and returns the replies and
// what the backend kept.
func runScript(t *testing.T, cfg Config, script string) (string, []message) {
	t.Helper()
	cfg.Hostname = "mx.test"
	b := &testBackend{}
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	sc := &scriptConn{in: strings.NewReader(script)}
	c := newConn(srv, sc, addrPort(sc.RemoteAddr()))
	c.serve(context.Background())
	return sc.out.String(), b.messages()
}

// FuzzBDAT sends a body in BDAT chunks cut where the fuzzer says, all
// pipelined, and checks the outcome against refLines on the whole body:
// a clean body is stored byte-identical (a CRLF added if it lacks one),
// a faulty one is refused, and the dialogue stays in step either way.
func FuzzBDAT(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), []byte{2})
	f.Add([]byte("a\r\nb\rc\r\n"), []byte{5})
	f.Add([]byte("a\r\n\n"), []byte{3})
	f.Add([]byte("BDAT 1\r\n"), []byte{0, 0})
	f.Fuzz(func(t *testing.T, body []byte, cuts []byte) {
		lim := bodyLimits{maxSize: 64, maxLine: 16}
		var script strings.Builder
		script.WriteString("EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
		rest := body
		chunks := 0
		for _, cut := range cuts {
			n := min(int(cut), len(rest))
			fmt.Fprintf(&script, "BDAT %d\r\n%s", n, rest[:n])
			rest = rest[n:]
			chunks++
		}
		fmt.Fprintf(&script, "BDAT %d LAST\r\n%s", len(rest), rest)
		script.WriteString("NOOP\r\nQUIT\r\n")
		out, msgs := runScript(t, Config{MaxMessageBytes: lim.maxSize, MaxLineLength: lim.maxLine}, script.String())

		fault, needCRLF := refLines(body, lim)
		if !strings.HasSuffix(out, "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n") {
			t.Fatalf("%q cut %v: dialogue out of step:\n%s", body, cuts, out)
		}
		if fault {
			if len(msgs) != 0 || !strings.Contains(out, "\r\n5") {
				t.Fatalf("%q cut %v: faulty body accepted:\n%s", body, cuts, out)
			}
			return
		}
		want := string(body)
		if needCRLF {
			want += "\r\n"
		}
		if len(msgs) != 1 || string(msgs[0].body) != want {
			t.Fatalf("%q cut %v: stored %v\n%s", body, cuts, msgs, out)
		}
		if n := strings.Count(out, "octets received"); n != chunks {
			t.Fatalf("%q cut %v: %d chunk replies, want %d", body, cuts, n, chunks)
		}
	})
}

// FuzzSession runs arbitrary input as a client's whole session: no panic,
// no hang, and memory bounded by the limits (the fuzzer's own limits
// catch runaway allocation).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 2\r\nhiBDAT 0 LAST\r\nRSET\r\n",
		"HELO x\r\nAUTH PLAIN\r\n*\r\nSTARTTLS\r\nDATA\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 99999999999\r\nxx",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		runScript(t, Config{MaxMessageBytes: 1 << 10, MaxBadCommands: 1000}, script)
	})
}

// discardBackend reads every body to its end and keeps nothing.
type discardBackend struct{}

func (discardBackend) NewSession(context.Context, ConnState) (Session, *smtpreply.Reply) {
	return discardSession{}, nil
}

type discardSession struct{}

func (discardSession) Hello(Hello) *smtpreply.Reply           { return nil }
func (discardSession) Mail(Path, MailParams) *smtpreply.Reply { return nil }
func (discardSession) Rcpt(Path, RcptParams) *smtpreply.Reply { return nil }
func (discardSession) Reset()                                 {}
func (discardSession) Logout()                                {}
func (discardSession) Data(r io.Reader) *smtpreply.Reply {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return ptr(reply(451, "4.3.0", "read failed"))
	}
	return nil
}
