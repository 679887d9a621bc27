package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// gate is a TCP proxy that holds every connection until opened, so the
// relay's deliveries stall (waiting for the banner) while its spool fills.
type gate struct {
	ln       net.Listener
	upstream string
	open     chan struct{}
	once     sync.Once
}

func startGate(t *testing.T, upstream string) *gate {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, upstream: upstream, open: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { g.release(); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				<-g.open
				u, err := net.Dial("tcp4", g.upstream)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			})
		}
	})
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// submit sends one message with net/smtp and returns the server's error.
func submit(addr, rcpt, body string) error {
	return smtp.SendMail(addr, nil, "alice@corp.test", []string{rcpt}, []byte(body))
}

// TestDiskFull puts the spool on a small tmpfs, fills it through SMTP
// while delivery is held back: the relay answers 452 4.3.1, leaves no
// half-written file, delivers everything it acknowledged once the MX is
// reachable, and accepts again when delivery has freed the space.
func TestDiskFull(t *testing.T) {
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
	g := startGate(t, w.none.Addr())
	l := startRelay(t, w, "", func(c *relay.Config) {
		c.Spool = filepath.Join(mnt, "spool")
		c.Routes["clear.test"] = g.ln.Addr().String()
	})
	addr := l.relay.Addr().String()

	line := strings.Repeat("x", 76) + "\r\n"
	big := "Subject: fill\r\n\r\n" + strings.Repeat(line, 100<<10/len(line)) // ~100 KB
	acked, full := 0, ""
	for i := range 40 {
		err := submit(addr, fmt.Sprintf("u%d@clear.test", i), big)
		if err == nil {
			acked++
			continue
		}
		var te *textproto.Error
		if !errors.As(err, &te) {
			t.Fatalf("message %d: %v", i, err)
		}
		full = fmt.Sprintf("%d %s", te.Code, te.Msg)
		break
	}
	if !strings.HasPrefix(full, "452 4.3.1") {
		t.Fatalf("after %d messages: %q, want 452 4.3.1", acked, full)
	}
	if acked == 0 {
		t.Fatal("nothing fit in the spool")
	}
	// A 452 leaves nothing behind: no temporary file, no torn journal
	// record, and every acknowledged message is queued.
	if ents, _ := os.ReadDir(filepath.Join(c(l).Spool, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d files after 452", len(ents))
	}
	sp, err := spool.Open(c(l).Spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := sp.List()
	sp.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != acked {
		t.Errorf("%d messages in the spool, %d acknowledged", len(ids), acked)
	}
	if err := spool.CheckJournal(c(l).Spool); err != nil {
		t.Errorf("journal after 452: %v", err)
	}
	t.Logf("spool full after %d messages of ~100 KB: %s", acked, full)
	if h := l.healthz(t); h["status"] != "failing" || !strings.Contains(fmt.Sprint(h["problems"]), "spool full") {
		t.Errorf("healthz while new mail gets 452: %v", h)
	}

	// The MX becomes reachable: what was queued goes out, the space
	// comes back, and the relay accepts again.
	g.release()
	w.none.WaitMessages(t, "clear.test", acked, 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := submit(addr, "again@clear.test", big)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refusing after the spool drained: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.none.WaitMessages(t, "clear.test", acked+1, 30*time.Second)
	if h := l.healthz(t); h["status"] != "ok" {
		t.Errorf("healthz once mail is accepted again: %v", h)
	}
}

func c(l *lab) relay.Config { return l.cfg }
