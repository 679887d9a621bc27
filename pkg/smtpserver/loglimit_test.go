package smtpserver

import (
	"testing"
	"time"
)

// A refusal flood logs one line per interval and kind, counting the rest.
func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(50 * time.Millisecond)
	if ok, n := l.allow("full"); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for range 100 {
		if ok, _ := l.allow("full"); ok {
			t.Fatal("logged again within the interval")
		}
	}
	if ok, _ := l.allow("per-ip"); !ok {
		t.Error("another kind was held back")
	}
	time.Sleep(60 * time.Millisecond)
	if ok, n := l.allow("full"); !ok || n != 100 {
		t.Errorf("after the interval: %v, %d left out, want true, 100", ok, n)
	}
}
