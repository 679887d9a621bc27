package inbound

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests of ISSUE 10 #8, #9 and #14: what a hostile client does to the
// server. The attacker connects from 127.0.0.77, outside Allow; the
// company's MTA from 127.0.0.1, inside it.

const attacker = "127.0.0.77"

// dialRaw connects from local without the test's Fatal, for goroutines.
func dialRaw(addr, local string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.Dial("tcp", addr)
}

// #8: a slowloris from one address outside Allow — many connections, one
// octet at a time — neither holds the server nor keeps the allowed client
// from being served, and a trickled line does not hold its connection.
func TestSlowlorisFromOutside(t *testing.T) {
	r := startRelay(t, Config{
		Allow:                 []netip.Prefix{mustPrefix("127.0.0.1/32")},
		MaxConnections:        20,
		MaxConnectionsPerIP:   5,
		MaxOutsideConnections: 10,
		CommandTimeout:        400 * time.Millisecond,
		IdleTimeout:           30 * time.Second,
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	greetings := map[string]int{}
	trickleEnded := 0
	for range 60 {
		wg.Go(func() {
			conn, err := dialRaw(r.addr, attacker)
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			g, _ := br.ReadString('\n')
			mu.Lock()
			greetings[g[:min(len(g), 9)]]++
			mu.Unlock()
			if !strings.HasPrefix(g, "220 ") {
				return
			}
			// One octet every 50 ms, a line that never ends.
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := conn.Write([]byte("N")); err != nil {
						return
					}
				}
			}()
			// Cut at CommandTimeout: 421 and closed; what came is
			// not executed.
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "421 4.4.2 ") {
				line, err = br.ReadString('\n')
			}
			if line == "" && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				trickleEnded++
				mu.Unlock()
			}
		})
	}
	// Meanwhile the allowed client sends a message every 100 ms.
	deadline := time.Now().Add(2 * time.Second)
	sent := 0
	for time.Now().Before(deadline) {
		c := r.dial()
		c.hello()
		queuedID(t, c.transaction("a@example.com", []string{"b@partner.test"}, simpleMsg))
		c.expect("QUIT", "221 ")
		sent++
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if got := len(r.queued()); got != sent || sent == 0 {
		t.Errorf("allowed client: %d of %d messages queued", got, sent)
	}
	t.Logf("attacker's greetings: %v; trickled lines cut: %d", greetings, trickleEnded)
	if greetings["220 relay"] > 5*3 { // each admitted connection is cut and may be replaced
		t.Errorf("attacker admitted %d times", greetings["220 relay"])
	}
	if greetings["421 4.7.0"] == 0 {
		t.Errorf("no attacker connection refused: %v", greetings)
	}
	if trickleEnded == 0 {
		t.Error("no trickled command line was cut at CommandTimeout")
	}
	if st := r.srv.Stats(); st.RefusedPerIP == 0 {
		t.Errorf("Stats = %+v, want per-IP refusals counted", st)
	}
}

// #8: clients outside Allow share MaxOutsideConnections until they log
// in; the rest of the server stays for the allowed network and for
// authenticated clients.
func TestOutsideShare(t *testing.T) {
	r := startRelay(t, Config{
		Allow:                 []netip.Prefix{mustPrefix("127.0.0.1/32")},
		MaxConnections:        4,
		MaxOutsideConnections: 2,
		Auth:                  func(_ context.Context, u, p string) bool { return u == "u" && p == "right" },
	})
	a := r.dialFrom("127.0.0.78")
	a.hello()
	b := r.dialFrom("127.0.0.79")
	b.expect("", "220 ")
	c := r.dialFrom("127.0.0.80")
	c.expect("", "421 4.7.0")
	// The allowed network still gets in.
	in := r.dialFrom("127.0.0.1")
	in.expect("", "220 ")
	// a logs in and leaves the outside share: another outside client fits.
	a.startTLS(r.ca)
	a.expect("EHLO client.test", "250")
	a.expect("AUTH PLAIN "+plain("u", "right"), "235 ")
	d := r.dialFrom("127.0.0.81")
	d.expect("", "220 ")
	if st := r.srv.Stats(); st.RefusedOutside != 1 {
		t.Errorf("Stats = %+v, want one outside refusal", st)
	}
}

// #8: DATA trickled one octet at a time is cut at the data deadline: no
// octet resets it. #14: the reply says so in fixed words.
func TestDataDeadlineNotResetByOctets(t *testing.T) {
	r := startRelay(t, Config{DataTimeout: 500 * time.Millisecond})
	c := r.dial()
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", "250 ")
	c.expect("RCPT TO:<b@partner.test>", "250 ")
	c.expect("DATA", "354 ")
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	got := c.reply()
	close(done)
	if want := "421 4.4.2 relay.test Error: timeout exceeded"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Errorf("cut after %v, before the deadline", el)
	}
	if got := c.reply(); got != "EOF" {
		t.Errorf("after 421: %q", got)
	}
	if q := r.queued(); len(q) != 0 {
		t.Errorf("queued %v", q)
	}
}

// #14: a client that says STARTTLS and then stalls is dropped at the
// handshake deadline, and nothing in clear text is written into what it
// takes for a TLS stream.
func TestStalledSTARTTLS(t *testing.T) {
	r := startRelay(t, Config{HandshakeTimeout: 300 * time.Millisecond, IdleTimeout: 20 * time.Second, CommandTimeout: 20 * time.Second})
	c := r.dial()
	c.hello()
	c.expect("STARTTLS", "220 ")
	start := time.Now()
	rest, err := io.ReadAll(c.conn)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, rest)
	}
	if len(rest) != 0 {
		t.Errorf("after the STARTTLS go-ahead the server wrote %q", rest)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("closed after %v, before the handshake deadline", el)
	}
}

// #14: a handshake that fails (the client speaks clear text after the
// go-ahead) ends the connection; at most a TLS alert goes back, never a
// clear-text reply.
func TestFailedSTARTTLSNoClearText(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.hello()
	c.expect("STARTTLS", "220 ")
	c.send("MAIL FROM:<a@example.com>\r\n\r\n\r\n\r\n")
	rest, _ := io.ReadAll(c.conn)
	if len(rest) > 0 && rest[0] != 21 { // 21: a TLS alert record
		t.Errorf("after a failed handshake the server wrote %q", rest)
	}
	if strings.Contains(string(rest), "550") {
		t.Errorf("clear-text reply in the TLS stream: %q", rest)
	}
}

// #9: AUTH guessing from one address. Each connection is cut with 421
// after MaxAuthFailures, the right password does not get in on it, and
// every later AUTH from that address waits for its answer; another
// address is not slowed.
func TestAuthBruteForce(t *testing.T) {
	const delay = 100 * time.Millisecond
	r := startRelay(t, Config{
		Allow:        []netip.Prefix{},
		Auth:         func(_ context.Context, u, p string) bool { return u == "u" && p == "right" },
		AuthDelay:    delay,
		AuthDelayMax: time.Second,
	})
	// A flood: four connections in parallel, guessing until cut.
	var wg sync.WaitGroup
	results := make([][]string, 4)
	for i := range results {
		wg.Go(func() {
			c := r.dialFrom(attacker)
			c.hello()
			c.startTLS(r.ca)
			c.send("EHLO client.test\r\n")
			c.reply()
			for n := range 10 {
				if _, err := io.WriteString(c.conn, "AUTH PLAIN "+plain("u", "guess"+string(rune('a'+n)))+"\r\n"); err != nil {
					results[i] = append(results[i], "write failed")
					return
				}
				got := c.reply()
				results[i] = append(results[i], got)
				if got == "EOF" || strings.HasPrefix(got, "421") {
					// The right password after the cut does not get in.
					c.conn.Write([]byte("AUTH PLAIN " + plain("u", "right") + "\r\n"))
					results[i] = append(results[i], c.reply())
					return
				}
			}
		})
	}
	wg.Wait()
	for i, res := range results {
		want := []string{
			"535 5.7.8 Authentication failed", "535 5.7.8 Authentication failed",
			"421 4.7.0 relay.test Error: too many failed authentication attempts", "EOF",
		}
		if strings.Join(res, "|") != strings.Join(want, "|") {
			t.Errorf("connection %d: %q, want %q", i, res, want)
		}
	}
	if st := r.srv.Stats(); st.AuthFailures != 12 {
		t.Errorf("AuthFailures = %d, want 12", st.AuthFailures)
	}
	// 12 recent failures: the next AUTH from there waits at least
	// AuthDelayMax, even with the right password.
	c := r.dialFrom(attacker)
	c.hello()
	c.startTLS(r.ca)
	c.expect("EHLO client.test", "250")
	start := time.Now()
	c.expect("AUTH PLAIN "+plain("u", "right"), "235 ")
	if el := time.Since(start); el < time.Second {
		t.Errorf("AUTH answered after %v, want at least 1s", el)
	}
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}
