// Package authfile holds the credentials the relay's inbound server checks
// for SMTP AUTH (RFC 4954): a file of "user:hash" lines with bcrypt
// hashes, the format `htpasswd -nbB user password` prints.
//
// bcrypt because it is salted and deliberately slow (a stolen file does
// not give the passwords away cheaply), its comparison is constant-time,
// and it is the one scheme htpasswd, Dovecot and Postfix's tooling all
// write, so an operator needs no tool of ours to make an entry. Other
// htpasswd schemes ({SHA}, $apr1$ MD5, crypt, plain text) are refused.
package authfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"

	"github.com/smgctl/smgctl/pkg/regularfile"
)

// maxPassword is the longest password bcrypt looks at; it silently
// ignores the rest, so a longer one is refused rather than half-checked
// (fail closed).
const maxPassword = 72

// MaxCost is the highest bcrypt cost accepted. Each AUTH holds its
// connection for one comparison: cost 10 takes about 65 ms on a small VM,
// and every step up doubles it, so 15 is already about 2 s, and bcrypt's
// own limit of 31 would be days. htpasswd -B writes 5 unless told (-C).
const MaxCost = 15

// LineError names the line of an auth file that is wrong.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Credentials are the users of one auth file. The zero value has no users.
type Credentials struct {
	hashes map[string][]byte
	// dummy is compared against for an unknown user, so that "no such
	// user" costs as much as "wrong password" and does not tell which
	// users exist: the file's costliest hash, whose result is then thrown
	// away. Reusing a real hash (rather than making one at load) keeps
	// Parse cheap and the cost exactly that of the slowest real user.
	dummy []byte
}

// Parse reads an auth file's contents; name is used in errors. Lines are
// "user:hash"; '#' starts a comment line; blank lines and surrounding
// white space are ignored. A user may appear once.
func Parse(name string, data []byte) (*Credentials, error) {
	c := &Credentials{hashes: map[string][]byte{}}
	first := map[string]int{}
	maxCost := -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, cost, err := parseLine(line)
		if err != nil {
			return nil, &LineError{name, n, err}
		}
		if l, dup := first[user]; dup {
			return nil, &LineError{name, n, fmt.Errorf("user %q again (first on line %d)", user, l)}
		}
		first[user] = n
		c.hashes[user] = hash
		if cost > maxCost {
			c.dummy, maxCost = hash, cost
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{name, n + 1, err}
	}
	return c, nil
}

func parseLine(line string) (user string, hash []byte, cost int, err error) {
	user, h, ok := strings.Cut(line, ":")
	if !ok {
		return "", nil, 0, errors.New("want user:bcrypt-hash (as htpasswd -nbB prints)")
	}
	if user == "" {
		return "", nil, 0, errors.New("empty user name")
	}
	for _, r := range user {
		// AUTH PLAIN and LOGIN carry any UTF-8, but a name with spaces
		// or controls in a file is almost always a paste mistake.
		if r <= ' ' || r == 0x7f {
			return "", nil, 0, fmt.Errorf("user %q contains white space or a control character", user)
		}
	}
	// bcrypt hashes are "$2a$", "$2b$" or "$2y$" (htpasswd -B writes
	// 2y), a two-digit cost, '$' and 53 characters of salt and hash.
	if len(h) != 60 || !(strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) {
		return "", nil, 0, fmt.Errorf("user %q: not a bcrypt hash (want $2y$..., 60 characters, as htpasswd -nbB prints)", user)
	}
	cost, err = bcrypt.Cost([]byte(h))
	if err != nil {
		return "", nil, 0, fmt.Errorf("user %q: %v", user, err)
	}
	if cost > MaxCost {
		return "", nil, 0, fmt.Errorf("user %q: bcrypt cost %d is over %d: every AUTH would take seconds", user, cost, MaxCost)
	}
	return user, []byte(h), cost, nil
}

// Len is the number of users.
func (c *Credentials) Len() int { return len(c.hashes) }

// Check reports whether password is user's. An unknown user costs one
// bcrypt comparison like a known one.
func (c *Credentials) Check(user, password string) bool {
	hash, known := c.hashes[user]
	if !known {
		hash = c.dummy
	}
	if hash == nil { // no users at all: nothing to hide
		return false
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	return ok && known && len(password) <= maxPassword
}

// Checker is the auth file of a running relay: loaded at start, re-read
// by Reload (SIGHUP). A broken file is refused and the users in force stay.
type Checker struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[Credentials]
}

// Open loads path; any error, a malformed line above all, is returned
// with FILE:LINE.
func Open(path string, log *slog.Logger) (*Checker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{path: path, log: log}
	creds, err := Load(path)
	if err != nil {
		return nil, err
	}
	c.cur.Store(creds)
	log.Info("auth file loaded", "file", path, "users", creds.Len())
	return c, nil
}

// maxFileSize bounds the auth file; a million users' hashes fit.
const maxFileSize = 64 << 20

// Load reads and parses the file at path. Only a regular file is read,
// so a FIFO or device at path cannot hang or exhaust the relay's reload.
func Load(path string) (*Credentials, error) {
	data, err := regularfile.ReadFile(path, maxFileSize)
	if err != nil {
		return nil, fmt.Errorf("auth-file: %w", err)
	}
	return Parse(path, data)
}

// Reload re-reads the file. On error the users in force stay and the
// error is logged and returned.
func (c *Checker) Reload() error {
	creds, err := Load(c.path)
	if err != nil {
		c.log.Error("auth file not reloaded; the previous users stay in force", "file", c.path, "err", err)
		return err
	}
	c.cur.Store(creds)
	c.log.Info("auth file reloaded", "file", c.path, "users", creds.Len())
	return nil
}

// Users is the number of users in force.
func (c *Checker) Users() int { return c.cur.Load().Len() }

// Check is inbound.Config.Auth.
func (c *Checker) Check(_ context.Context, user, password string) bool {
	return c.cur.Load().Check(user, password)
}
