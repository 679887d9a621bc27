package smtpreply

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		in       string
		code     int
		enhanced string
		lines    []string
		str      string
	}{
		{"220 mx.example ESMTP\r\n", 220, "", []string{"mx.example ESMTP"}, "220 mx.example ESMTP"},
		{"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 250, "", []string{"mx.example", "PIPELINING", "STARTTLS"}, "250 mx.example PIPELINING STARTTLS"},
		{"550 5.1.1 no such user\r\n", 550, "5.1.1", []string{"no such user"}, "550 5.1.1 no such user"},
		{"451-4.7.1 greylisted\r\n451-4.7.1 try again\r\n451 4.7.1 later\r\n", 451, "4.7.1", []string{"greylisted", "try again", "later"}, "451 4.7.1 greylisted try again later"},
		{"250\r\n", 250, "", []string{""}, "250"},
		{"354 go ahead\n", 354, "", []string{"go ahead"}, "354 go ahead"},
		// An enhanced code of another class is text, not a status.
		{"250 5.0.0 odd\r\n", 250, "", []string{"5.0.0 odd"}, "250 5.0.0 odd"},
		{"421 4.3.2 shutting down\r\n", 421, "4.3.2", []string{"shutting down"}, "421 4.3.2 shutting down"},
	}
	for _, tc := range tests {
		r, err := Parse(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.Code != tc.code || r.Enhanced != tc.enhanced || strings.Join(r.Lines, "|") != strings.Join(tc.lines, "|") || r.String() != tc.str {
			t.Errorf("%q: got %+v %q", tc.in, r, r.String())
		}
	}
}

func TestReadMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"22\r\n",
		"abc hello\r\n",
		"220Xhello\r\n",
		"620 out of range\r\n",
		"250-first\r\n251 second code\r\n",
		"250-unfinished\r\n",
		"250 " + strings.Repeat("x", MaxLineLength+10) + "\r\n",
		strings.Repeat("250-x\r\n", MaxLines+1) + "250 end\r\n",
		"220 partial line without end",
		"250 one\r\n250 two\r\n",
	} {
		if r, err := Parse(in); err == nil {
			t.Errorf("%q accepted as %+v", truncate(in), r)
		}
	}
}

func TestClasses(t *testing.T) {
	for _, tc := range []struct {
		code                 int
		pos, temp, permanent bool
	}{{220, true, false, false}, {354, true, false, false}, {421, false, true, false}, {454, false, true, false}, {503, false, false, true}, {554, false, false, true}} {
		r := Reply{Code: tc.code}
		if r.Positive() != tc.pos || r.Temporary() != tc.temp || r.Permanent() != tc.permanent {
			t.Errorf("%d: positive %v temporary %v permanent %v", tc.code, r.Positive(), r.Temporary(), r.Permanent())
		}
	}
}

func TestReadSequence(t *testing.T) {
	// Pipelined replies arrive back to back; Read takes exactly one.
	br := bufio.NewReader(strings.NewReader("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n"))
	var codes []string
	for {
		r, err := Read(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, r.Enhanced)
	}
	if strings.Join(codes, ",") != "2.1.0,2.1.5,5.1.1" {
		t.Fatalf("got %v", codes)
	}
}

func TestValidEnhanced(t *testing.T) {
	for s, want := range map[string]bool{"5.7.0": true, "4.4.7": true, "2.0.0": true, "5.1.10": true, "5.123.999": true,
		"3.0.0": false, "5.7": false, "5..0": false, "5.1234.0": false, "x.1.1": false, "5.1.a": false, "": false} {
		if ValidEnhanced(s) != want {
			t.Errorf("ValidEnhanced(%q) = %v", s, !want)
		}
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range []string{"220 ok\r\n", "250-a\r\n250 b\r\n", "550 5.1.1 x\r\n", "421-4.3.2 a\n421 4.3.2 b\n", "2", "250-\r\n", "599 \r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Read(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 559 || len(r.Lines) == 0 || len(r.Lines) > MaxLines {
			t.Fatalf("%q parsed to impossible %+v", s, r)
		}
		if r.Enhanced != "" && (!ValidEnhanced(r.Enhanced) || int(r.Enhanced[0]-'0') != r.Code/100) {
			t.Fatalf("%q: enhanced %q does not fit code %d", s, r.Enhanced, r.Code)
		}
		// Rendering and parsing again gives the same code and status.
		again, err := Parse(r.String() + "\r\n")
		if err != nil || again.Code != r.Code || again.Enhanced != r.Enhanced {
			t.Fatalf("%q: round trip of %q gave %+v, %v", s, r.String(), again, err)
		}
	})
}
