package inbound

import (
	"runtime"
	"strings"
	"sync/atomic"
)

// streamTap sees every octet the client sends, after TLS, before go-smtp's
// parsers touch it, and checks it for bare CR and LF.
//
// Why not only check what Session.Data receives: go-smtp v0.25.1's DATA
// reader already removes dot-stuffing, and at the start of a line it drops
// ".<CR>" when the next octet is not LF, so "<CRLF>.<CR>X" reaches the
// backend as "<CRLF>X" and its bare CR can no longer be seen. Its command
// reader (net/textproto) also takes a bare LF as a line end. The raw stream
// shows both. A client that sends a bare CR or LF anywhere is treated the
// way Postfix's smtpd_forbid_bare_newline=reject treats it: it gets no
// further message accepted on this connection (RFC 5321 §2.3.8).
//
// go-smtp offers exactly one view of the decrypted stream, Server.Debug,
// fed by an io.TeeReader for what it reads and an io.MultiWriter for what
// it writes. The relay therefore runs one go-smtp Server per connection
// and tells the two directions apart by the calling frame.
type streamTap struct {
	check lineCheck     // used by the connection's goroutine only
	fault atomic.Uint32 // the first Violation read; sticky for the connection
}

func (t *streamTap) Write(p []byte) (int, error) {
	if fromWriter() {
		return len(p), nil // our own reply going out
	}
	t.check.scan(p)
	if t.check.fault != OK {
		t.fault.CompareAndSwap(uint32(OK), uint32(t.check.fault))
	}
	return len(p), nil
}

// Tainted reports whether the client has sent a bare CR or LF so far.
func (t *streamTap) Tainted() bool { return t.fault.Load() != uint32(OK) }

// Fault is the first fault read (BareCR or BareLF), or OK.
func (t *streamTap) Fault() Violation { return Violation(t.fault.Load()) }

// fromWriter reports whether the tap was called by go-smtp's MultiWriter
// (a reply) rather than its TeeReader (client input). Anything else counts
// as input: scanning our replies as client input could only make the check
// stricter, never looser.
func fromWriter() bool {
	var pc [1]uintptr
	if runtime.Callers(3, pc[:]) == 0 { // runtime.Callers, fromWriter, Write
		return false
	}
	f, _ := runtime.CallersFrames(pc[:]).Next()
	return strings.HasPrefix(f.Function, "io.(*multiWriter).")
}
