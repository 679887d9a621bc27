package relay_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// mitmMode is what the man in the middle does to STARTTLS.
type mitmMode int

const (
	stripSTARTTLS mitmMode = iota // remove STARTTLS from the EHLO reply
	refuse454                     // answer STARTTLS with 454 itself
	injectReply                   // append a forged reply to the 220
)

// mitm is a TCP proxy between the relay and a real MX that attacks
// STARTTLS. It counts what the relay sends after MAIL FROM, so a test can
// prove that zero bytes of a message went out.
type mitm struct {
	Addr   string
	mode   mitmMode
	upAddr string
	mails  atomic.Int64 // MAIL FROM commands seen in clear
	after  atomic.Int64 // client bytes forwarded after a MAIL FROM in clear
	starts atomic.Int64 // STARTTLS commands seen
	wg     sync.WaitGroup
	ln     net.Listener
}

func startMITM(t *testing.T, upstream string, mode mitmMode) *mitm {
	t.Helper()
	return startMITMOn(t, "127.0.0.1:0", upstream, mode)
}

// startMITMOn is startMITM listening on listen, e.g. port 25 of an MX
// host's own address.
func startMITMOn(t *testing.T, listen, upstream string, mode mitmMode) *mitm {
	t.Helper()
	ln, err := net.Listen("tcp4", listen)
	if err != nil {
		t.Fatal(err)
	}
	m := &mitm{Addr: ln.Addr().String(), mode: mode, upAddr: upstream, ln: ln}
	t.Cleanup(func() { ln.Close(); m.wg.Wait() })
	m.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.wg.Go(func() { m.serve(c) })
		}
	})
	return m
}

func (m *mitm) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp4", m.upAddr)
	if err != nil {
		return
	}
	defer server.Close()
	var cmu sync.Mutex // writes to client
	writeClient := func(b []byte) error {
		cmu.Lock()
		defer cmu.Unlock()
		_, err := client.Write(b)
		return err
	}
	// tlsStarted is closed when the client sent STARTTLS and the server
	// agreed: from then on both directions are copied raw.
	startSent := make(chan struct{}, 1)
	done := make(chan struct{}, 2)

	// client → server
	go func() {
		defer func() { done <- struct{}{} }()
		br := bufio.NewReader(client)
		seenMail := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if seenMail {
				m.after.Add(int64(len(line)))
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case strings.HasPrefix(cmd, "MAIL FROM"):
				m.mails.Add(1)
				seenMail = true
				m.after.Add(int64(len(line)))
			case cmd == "STARTTLS":
				m.starts.Add(1)
				if m.mode == refuse454 {
					writeClient([]byte("454 4.7.0 TLS not available due to local problem\r\n"))
					continue
				}
				startSent <- struct{}{} // before the server can answer
				server.Write([]byte(line))
				// The rest is the TLS handshake and ciphertext.
				if n := br.Buffered(); n > 0 {
					b, _ := br.Peek(n)
					server.Write(b)
				}
				io.Copy(server, client)
				return
			}
			if _, err := server.Write([]byte(line)); err != nil {
				return
			}
		}
	}()

	// server → client
	go func() {
		defer func() { done <- struct{}{} }()
		br := bufio.NewReader(server)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case <-startSent:
				// The reply to STARTTLS.
				out := line
				if m.mode == injectReply && strings.HasPrefix(line, "220") {
					out += "250-mitm.test\r\n250 PIPELINING\r\n"
				}
				writeClient([]byte(out))
				cmu.Lock()
				if n := br.Buffered(); n > 0 {
					b, _ := br.Peek(n)
					client.Write(b)
				}
				cmu.Unlock()
				io.Copy(client, server)
				return
			default:
			}
			if m.mode == stripSTARTTLS && len(line) >= 4 && strings.EqualFold(strings.TrimSpace(line[4:]), "STARTTLS") && strings.HasPrefix(line, "250") {
				if line[3] == ' ' {
					// STARTTLS was the last line: end the reply here.
					writeClient([]byte("250 ENHANCEDSTATUSCODES\r\n"))
				}
				continue
			}
			if err := writeClient([]byte(line)); err != nil {
				return
			}
		}
	}()
	<-done
}
