package inbound

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// The relay's inbound path end to end over loopback TCP into a journal
// spool on disk (each 250 after its fdatasync), the way bench/relay.sh
// loads it: 10 clients at once, 1,000-octet messages, either a new
// session per message (connect, greeting, EHLO, MAIL, RCPT, DATA, QUIT)
// or one session kept open for all. The difference between the two is
// what a session costs. cpu-µs/msg is the process's CPU (server and the
// in-process clients) per message, from getrusage: steadier than the
// rate on a shared machine.

func BenchmarkNewSessionPerMessage(b *testing.B) { benchInbound(b, true) }
func BenchmarkSessionKeptOpen(b *testing.B)      { benchInbound(b, false) }

func benchInbound(b *testing.B, newSession bool) {
	sp, err := spool.OpenRelay(filepath.Join(b.TempDir(), "spool"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	r := startRelay(b, Config{
		Queue:  sp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Notify: func(string) {},
	})
	body := "Subject: bench\r\nMessage-ID: <bench@client.test>\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n", 13)
	b.SetParallelism(5) // × GOMAXPROCS (2 here): 10 clients
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var c *benchClient
		defer func() {
			if c != nil {
				c.close()
			}
		}()
		for pb.Next() {
			if c == nil {
				if c, err = dialBench(r.addr); err != nil {
					b.Error(err)
					return
				}
			}
			if err := c.message(body); err != nil {
				b.Error(err)
				return
			}
			if newSession {
				c.close()
				c = nil
			}
		}
	})
	b.StopTimer()
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchClient speaks just enough SMTP, as smtp-source does: one command,
// one reply, no pipelining.
type benchClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialBench(addr string) (*benchClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	c := &benchClient{conn: conn, br: bufio.NewReader(conn)}
	if err := c.cmd("", "220"); err != nil {
		return nil, err
	}
	return c, c.cmd("EHLO client.test\r\n", "250")
}

func (c *benchClient) message(body string) error {
	for _, s := range []struct{ cmd, want string }{
		{"MAIL FROM:<alice@corp.test>\r\n", "250"},
		{"RCPT TO:<bob@bench.test>\r\n", "250"},
		{"DATA\r\n", "354"},
		{body + ".\r\n", "250"},
	} {
		if err := c.cmd(s.cmd, s.want); err != nil {
			return err
		}
	}
	return nil
}

func (c *benchClient) close() {
	c.cmd("QUIT\r\n", "221")
	c.conn.Close()
}

// cmd sends s (if any) and reads one reply, which must start with want.
func (c *benchClient) cmd(s, want string) error {
	if s != "" {
		if _, err := io.WriteString(c.conn, s); err != nil {
			return err
		}
	}
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("after %q: %w", s, err)
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("after %q: got %q, want %s", s, line, want)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}
