package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay"
)

// switchProxy is a TCP proxy in front of an MX that holds connections
// (deliveries stall), refuses them (each attempt is deferred at once), or
// forwards them.
type switchProxy struct {
	ln       net.Listener
	upstream string
	mode     atomic.Int32 // proxyHold, proxyRefuse, proxyForward
	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at each mode change
}

const (
	proxyHold = iota
	proxyRefuse
	proxyForward
)

func startSwitchProxy(t *testing.T, upstream string) *switchProxy {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, upstream: upstream, changed: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { p.set(proxyRefuse); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *switchProxy) set(mode int32) {
	p.mu.Lock()
	p.mode.Store(mode)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *switchProxy) serve(c net.Conn) {
	defer c.Close()
	for {
		p.mu.Lock()
		mode, changed := p.mode.Load(), p.changed
		p.mu.Unlock()
		switch mode {
		case proxyRefuse:
			return
		case proxyForward:
			u, err := net.Dial("tcp4", p.upstream)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, u)
			return
		}
		<-changed
	}
}

// TestSpoolFullBacksOff fills the spool's file system (a small tmpfs)
// while messages wait for their MX, then makes every attempt fail at once:
// their outcome cannot be stored. The delivery loop must back off instead
// of spinning (the hostile test saw ~2,200 "storing delivery state" lines
// a second), say "spool full" on /healthz, and once space returns deliver
// every message and clear the condition.
func TestSpoolFullBacksOff(t *testing.T) {
	testpeer.RequireRoot(t)
	w := startWorld(t, "none")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		if testpeer.InCI() {
			t.Fatalf("mount tmpfs: %v (CI=true)", err)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	p := startSwitchProxy(t, w.none.Addr())
	l := startRelay(t, w, "", func(c *relay.Config) {
		c.Spool = filepath.Join(mnt, "spool")
		c.Routes["clear.test"] = p.ln.Addr().String()
	})
	const n = 3
	for i := range n {
		if err := submit(l.relay.Addr().String(), fmt.Sprintf("u%d@clear.test", i), "Subject: full\r\n\r\nhello\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Fill what is left of the file system.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for { // the last partial chunk
		if _, err := filler.Write(chunk[:512]); err != nil {
			break
		}
	}
	filler.Close()

	// Every attempt is now deferred at once, and its state cannot be
	// written (the journal moves a deferred message to its own files).
	p.set(proxyRefuse)
	const watch = 3 * time.Second
	time.Sleep(watch)
	lines := strings.Count(l.logs.String(), `msg="storing delivery state"`)
	t.Logf("%d \"storing delivery state\" lines in %v", lines, watch)
	if lines == 0 {
		t.Fatal("the spool never failed: the test did not fill it")
	}
	// One line at once, then one per 10 s with the count of repeats.
	if lines > 2 {
		t.Errorf("%d \"storing delivery state\" lines in %v: not rate-limited", lines, watch)
	}
	h := l.healthz(t)
	if h["status"] != "failing" || !strings.Contains(fmt.Sprint(h["problems"]), "spool full") {
		t.Errorf("healthz while full: %v", h)
	}
	// Backed off, not spinning: the MX side saw few attempts. Count the
	// relay's log of deferred recipients as a proxy for attempts.
	if attempts := strings.Count(l.logs.String(), "outcome=deferred"); attempts > 40 {
		t.Errorf("%d attempts in %v while the spool was full: no back-off", attempts, watch)
	}

	// Space comes back and the MX answers: everything is delivered and the
	// condition clears.
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	p.set(proxyForward)
	w.none.WaitMessages(t, "clear.test", n, 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for h = l.healthz(t); h["status"] != "ok" && time.Now().Before(deadline); h = l.healthz(t) {
		time.Sleep(50 * time.Millisecond)
	}
	if h["status"] != "ok" {
		t.Errorf("healthz after space came back: %v", h)
	}
}
