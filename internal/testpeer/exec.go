package testpeer

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// commandTimeout bounds every tool run, so a hung peer fails the test
// instead of the whole go test binary.
const commandTimeout = 60 * time.Second

// run executes bin with args and optional stdin, returning combined output
// and exit code. Only failing to start (or the timeout) is fatal.
func run(t testing.TB, stdin string, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("testpeer: %s %s: timed out after %v\n%s", bin, strings.Join(args, " "), commandTimeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("testpeer: %s: %v", bin, err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// Swaks runs swaks with args and returns its combined output and exit code
// (0 = the transaction succeeded).
func Swaks(t testing.TB, args ...string) (string, int) {
	t.Helper()
	return run(t, "", RequireSwaks(t), args...)
}

// OpenSSL runs the openssl command with stdin and returns its combined
// output and exit code, e.g. for s_client -starttls smtp.
func OpenSSL(t testing.TB, stdin string, args ...string) (string, int) {
	t.Helper()
	return run(t, stdin, RequireOpenSSL(t), args...)
}

// SyncBuffer collects output written concurrently (a child process, a
// relay's goroutines) while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// OpenSSLServer is a running openssl s_server speaking TLS directly (it has
// no SMTP STARTTLS mode), for raw-ClientHello tests.
type OpenSSLServer struct {
	IP   net.IP
	Port int
	// CA issued Certs (ECDSA, then RSA) unless args named their own -cert.
	CA    *CA
	Certs []*Leaf
	out   *SyncBuffer
}

// Addr is "IP:PORT".
func (s *OpenSSLServer) Addr() string { return net.JoinHostPort(s.IP.String(), strconv.Itoa(s.Port)) }

// Output is what s_server printed so far (stdout and stderr).
func (s *OpenSSLServer) Output() string { return s.out.String() }

// StartOpenSSLServer runs "openssl s_server" with args (for example
// "-cipher", "eNULL:@SECLEVEL=0", "-tls1_2") on a fresh loopback address,
// with an ECDSA and an RSA certificate from a new CA unless args contain
// -cert. It returns once the server accepts and kills it (by PID) in
// t.Cleanup.
func StartOpenSSLServer(t testing.TB, args ...string) *OpenSSLServer {
	t.Helper()
	bin := RequireOpenSSL(t)
	s := &OpenSSLServer{IP: FreeLoopbackIP(t), out: &SyncBuffer{}}
	// A kernel-chosen port on our reserved address; nobody else uses that
	// address, so the short window before openssl binds it is harmless.
	l, err := net.Listen("tcp4", net.JoinHostPort(s.IP.String(), "0"))
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	full := []string{"s_server", "-accept", s.Addr()}
	if !slices.Contains(args, "-cert") {
		s.CA = NewCA(t)
		ec := s.CA.Issue(t, "s-server.testpeer.test", s.IP.String())
		rsa := s.CA.IssueRSA(t, "s-server.testpeer.test", s.IP.String())
		s.Certs = []*Leaf{ec, rsa}
		full = append(full, "-cert", rsa.CertFile, "-key", rsa.KeyFile, "-dcert", ec.CertFile, "-dkey", ec.KeyFile)
	}
	full = append(full, args...)
	cmd := exec.Command(bin, full...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// s_server treats EOF on stdin as "shut down", so keep a pipe open.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testpeer: openssl s_server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		stdin.Close()
	})

	// s_server prints ACCEPT once it is listening.
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.out.String(), "ACCEPT") {
		select {
		case <-exited:
			t.Fatalf("testpeer: openssl %s exited early:\n%s", strings.Join(full, " "), s.out.String())
		case <-deadline:
			t.Fatalf("testpeer: openssl s_server did not start:\n%s", s.out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return s
}
