// Command holdsessions opens many SMTP sessions to a server at once and
// keeps them open, for measuring what idle inbound sessions cost the
// server (bench/relay.sh reads the relay's RSS meanwhile).
//
// Each session reads the greeting and sends EHLO; a session counts as
// held once the EHLO reply is 250. A 421 greeting (RFC 5321 §3.8: the
// server refuses the connection) is counted as refused. When all are
// settled it prints one line of counts, then waits for -hold or until
// stdin is closed, and closes every session with QUIT.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "SMTP server `host:port` (loopback)")
	n := flag.Int("n", 1000, "sessions to open")
	hold := flag.Duration("hold", 0, "how long to hold them; 0 = until stdin is closed")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "holdsessions: -addr %q: must be a loopback IP:port\n", *addr)
		os.Exit(2)
	}

	var held, refused, failed atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // don't overflow the listen backlog
	for range *n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp4", *addr, 10*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			r := bufio.NewReader(c)
			code, err := reply(r)
			switch {
			case err != nil:
				failed.Add(1)
				c.Close()
				return
			case code == "421":
				refused.Add(1)
				c.Close()
				return
			}
			fmt.Fprintf(c, "EHLO hold.bench.test\r\n")
			if code, err := reply(r); err != nil || code != "250" {
				failed.Add(1)
				c.Close()
				return
			}
			c.SetDeadline(time.Time{})
			held.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	fmt.Printf("held=%d refused=%d failed=%d\n", held.Load(), refused.Load(), failed.Load())
	if *hold > 0 {
		time.Sleep(*hold)
	} else {
		io.Copy(io.Discard, os.Stdin)
	}
	for _, c := range conns {
		fmt.Fprintf(c, "QUIT\r\n")
		c.Close()
	}
}

// reply reads one (possibly multi-line) SMTP reply and returns its code.
func reply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(line) < 4 {
			return "", fmt.Errorf("short reply %q", line)
		}
		if line[3] != '-' {
			return strings.TrimSpace(line[:3]), nil
		}
	}
}
