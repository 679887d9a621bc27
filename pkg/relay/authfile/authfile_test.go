package authfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hash(t testing.TB, password string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// htpasswd -nbB writes the "2y" variant; it is the same algorithm.
func asHtpasswd(h string) string { return "$2y$" + strings.TrimPrefix(h, "$2a$") }

func TestParseGood(t *testing.T) {
	mx1 := asHtpasswd(hash(t, "s3cret", bcrypt.MinCost))
	app := hash(t, "pass word:with colon", bcrypt.MinCost+1)
	file := "# relay users\n\n" +
		"mx1@corp.test:" + mx1 + "\n" +
		"   # indented comment\n" +
		"  app:" + app + "  \r\n" + // white space and CRLF around a line
		"\n"
	c, err := Parse("users", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}
	for _, tc := range []struct {
		user, pass string
		want       bool
	}{
		{"mx1@corp.test", "s3cret", true},
		{"app", "pass word:with colon", true},
		{"mx1@corp.test", "s3cret ", false},   // wrong password
		{"mx1@corp.test", "S3cret", false},    // case matters
		{"mx1@corp.test", "", false},          // empty password
		{"MX1@corp.test", "s3cret", false},    // user names are exact
		{"nobody", "s3cret", false},           // unknown user with a real password
		{"app", "pass word:with colon", true}, // again: no state between checks
		{"", "", false},
	} {
		if got := c.Check(tc.user, tc.pass); got != tc.want {
			t.Errorf("Check(%q, %q) = %v, want %v", tc.user, tc.pass, got, tc.want)
		}
	}
	// Unknown users are compared against the costliest hash in the file.
	if string(c.dummy) != app {
		t.Errorf("dummy = %q, want the cost-%d hash %q", c.dummy, bcrypt.MinCost+1, app)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, file := range []string{"", "\n\n", "# nobody yet\n"} {
		c, err := Parse("users", []byte(file))
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		if c.Len() != 0 || c.Check("a", "b") || c.Check("", "") {
			t.Errorf("%q: an empty file lets someone in", file)
		}
	}
}

func TestParseBad(t *testing.T) {
	good := hash(t, "pw", bcrypt.MinCost)
	for _, tc := range []struct {
		name, file string
		line       int
		want       string
	}{
		{"no colon", "# c\nalice\n", 2, "want user:bcrypt-hash"},
		{"empty user", ":" + good + "\n", 1, "empty user name"},
		{"space in user", "al ice:" + good + "\n", 1, "white space"},
		{"tab in user", "al\tice:" + good + "\n", 1, "white space"},
		{"empty hash", "alice:\n", 1, "not a bcrypt hash"},
		{"plain text password", "alice:secret\n", 1, "not a bcrypt hash"},
		{"htpasswd MD5", "alice:$apr1$Kq9Vx0Q1$eD0Gk8q2pJ1c2o0a3y4b5.\n", 1, "not a bcrypt hash"},
		{"htpasswd SHA", "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n", 1, "not a bcrypt hash"},
		{"truncated bcrypt", "alice:" + good[:59] + "\n", 1, "not a bcrypt hash"},
		{"bcrypt with trailing junk", "alice:" + good + "x\n", 1, "not a bcrypt hash"},
		{"cost too low", "alice:" + good[:4] + "03" + good[6:] + "\n", 1, "cost"},
		{"cost too high", "alice:" + good[:4] + "16" + good[6:] + "\n", 1, "cost 16 is over 15"},
		{"cost not a number", "alice:" + good[:4] + "xx" + good[6:] + "\n", 1, "alice"},
		{"duplicate user", "alice:" + good + "\nbob:" + good + "\nalice:" + good + "\n", 3, "first on line 1"},
		{"bad line after good ones", "\n# c\nalice:" + good + "\nbob\n", 4, "want user:bcrypt-hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/smgctl/users", []byte(tc.file))
			if err == nil {
				t.Fatalf("accepted, %d users", c.Len())
			}
			var le *LineError
			if !errors.As(err, &le) || le.File != "/etc/smgctl/users" || le.Line != tc.line {
				t.Fatalf("error %q: want /etc/smgctl/users:%d", err, tc.line)
			}
			prefix := fmt.Sprintf("/etc/smgctl/users:%d: ", tc.line)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want prefix %q and %q", err, prefix, tc.want)
			}
		})
	}
}

// A password longer than bcrypt looks at must not pass on its first 72
// bytes alone.
func TestCheckLongPassword(t *testing.T) {
	p72 := strings.Repeat("p", 72)
	c, err := Parse("users", []byte("u:"+hash(t, p72, bcrypt.MinCost)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Check("u", p72) {
		t.Error("72-byte password refused")
	}
	if c.Check("u", p72+"anything") {
		t.Error("73+-byte password accepted on its first 72 bytes")
	}
}

func TestCheckerReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:" + hash(t, "a", bcrypt.MinCost) + "\n")
	c, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Check(t.Context(), "alice", "a") || c.Check(t.Context(), "bob", "b") {
		t.Fatal("initial users wrong")
	}

	write("bob:" + hash(t, "b", bcrypt.MinCost) + "\n")
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if c.Check(t.Context(), "alice", "a") || !c.Check(t.Context(), "bob", "b") || c.Users() != 1 {
		t.Error("reload did not replace the users")
	}

	// A broken file is refused with its line; bob stays.
	write("bob:" + hash(t, "b", bcrypt.MinCost) + "\ncarol:plain\n")
	if err := c.Reload(); err == nil || !strings.HasPrefix(err.Error(), path+":2: ") {
		t.Errorf("Reload of a broken file: %v", err)
	}
	if !c.Check(t.Context(), "bob", "b") {
		t.Error("a broken file dropped the users in force")
	}
	os.Remove(path)
	if err := c.Reload(); err == nil {
		t.Error("Reload of a missing file succeeded")
	}
	if !c.Check(t.Context(), "bob", "b") {
		t.Error("a missing file dropped the users in force")
	}

	// A FIFO (which blocked the reload, and SIGHUP with it, for ever)
	// and /dev/zero (which grew memory without bound) are refused at once.
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	for _, want := range []string{"a FIFO", "a character device"} {
		done := make(chan error, 1)
		go func() { done <- c.Reload() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file ("+want+")") {
				t.Errorf("Reload of %s: %v", want, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("Reload of %s blocked", want)
		}
		os.Remove(path)
		os.Symlink("/dev/zero", path)
	}
	if !c.Check(t.Context(), "bob", "b") {
		t.Error("a FIFO or device dropped the users in force")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing"), nil); err == nil || !strings.Contains(err.Error(), "auth-file") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("# ok\n\nalice:secret\n"), 0o600)
	if _, err := Open(bad, nil); err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("bad file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	good := hash(f, "pw", bcrypt.MinCost)
	for _, s := range []string{
		"", "\n", "# c\n", "alice:" + good + "\n", "alice:" + asHtpasswd(good),
		"alice\n", ":x\n", "a:b:c\n", "alice:" + good + "\nalice:" + good + "\n",
		"a b:" + good, "alice:" + good[:4] + "99" + good[6:],
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		// Every accepted user has a hash of the accepted shape, and a
		// user not in the file never gets in.
		for u, h := range c.hashes {
			if u == "" || strings.ContainsAny(u, " \t:") || len(h) != 60 || !bytes.HasPrefix(h, []byte("$2")) {
				t.Fatalf("accepted user %q with hash %q", u, h)
			}
		}
		// (Only for cheap hashes: the fuzzer makes costs up to MaxCost.)
		if cost, _ := bcrypt.Cost(c.dummy); c.dummy != nil && cost <= bcrypt.MinCost+2 && c.Check("\x00not-a-user", "pw") {
			t.Fatal("unknown user accepted")
		}
	})
}

// BenchmarkCheck shows that an unknown user costs what a wrong password
// for a known one does (both one bcrypt comparison at the file's cost).
func BenchmarkCheck(b *testing.B) {
	c, err := Parse("users", []byte("alice:"+hash(b, "right", bcrypt.DefaultCost)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, user, pass string }{
		{"right", "alice", "right"},
		{"wrong-password", "alice", "wrong"},
		{"unknown-user", "mallory", "wrong"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				c.Check(bc.user, bc.pass)
			}
		})
	}
}
