package inbound

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// ISSUE 10 #14: an internal error never reaches the client as text; it
// is logged under the session ID. A wrapped reply is unwrapped, since
// go-smtp would print the wrapper.
func TestFixedReplies(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	f := fixedReplies{&session{c: &connection{s: s, id: "0badcafe"}}}
	leak := errors.New("read tcp 127.0.0.1:2525->127.0.0.1:40000: i/o timeout")
	if got := f.fixed(leak); got != errInternal {
		t.Errorf("fixed(%v) = %v, want errInternal", leak, got)
	}
	if !strings.Contains(logs.String(), "session=0badcafe") || !strings.Contains(logs.String(), "i/o timeout") {
		t.Errorf("log lacks the session or the detail: %s", logs.String())
	}
	if got := f.fixed(fmt.Errorf("refused: %w", errRelayDenied)); got != errRelayDenied {
		t.Errorf("wrapped reply: %v", got)
	}
	if got := f.fixed(errTooBig); got != errTooBig {
		t.Errorf("reply: %v", got)
	}
	if f.fixed(nil) != nil {
		t.Error("nil changed")
	}
}
