package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/probe/deep"
)

// runHops runs "smgctl probe hops ARGS" through the real root command and
// returns the exit code as Main would. Until the probe command adds
// probeSubcommands itself, the test adds them, as the lead's wiring will.
func runHops(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runHopsIn(t, strings.NewReader(stdin), args...)
}

func runHopsIn(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdin: stdin}
	root := newRoot(g)
	probeCmd, _, err := root.Find([]string{"probe"})
	if err != nil || probeCmd == root {
		probeCmd = &cobra.Command{Use: "probe"}
		root.AddCommand(probeCmd)
	}
	if sub, _, _ := probeCmd.Find([]string{"hops"}); sub == probeCmd || sub == nil {
		for _, add := range probeSubcommands {
			probeCmd.AddCommand(add(g))
		}
	}
	root.SetArgs(append([]string{"probe", "hops"}, args...))
	root.SetIn(g.stdin)
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		code = exitOK
	case errors.As(err, &ee):
		code = ee.code
		if ee.err != nil {
			errb.WriteString(ee.err.Error())
		}
	default:
		code = exitUsage
		errb.WriteString(err.Error())
	}
	return code, out.String(), errb.String()
}

func fixture(name string) string {
	return filepath.Join("..", "..", "pkg", "probe", "hops", "testdata", name)
}

func TestProbeHopsCLI(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		contains []string
	}{
		{"postfix passes", []string{fixture("postfix.eml")}, "", 0, []string{
			"Message to example.org: 3 hops, requirement 112 bits",
			"TLSv1.3  TLS_AES_256_GCM_SHA384",
			"internal: protocol LMTP",
			"Every hop met the requirement.",
			"Hop 1 was written before the message reached the recipient's servers (first trusted hop: 2)",
		}},
		{"mixed fails on the clear-text hop", []string{fixture("mixed.eml")}, "", 1, []string{
			"FAIL 503 5.7.0 encryption too weak 0 less than 112",
			"1 of 5 hops did not meet the requirement.",
		}},
		{"require-bits 256", []string{"--require-bits", "256", fixture("postfix.eml")}, "", 1, []string{
			"FAIL 503 5.7.0 encryption too weak 128 less than 256",
		}},
		{"exchange (TLS) without details fails closed", []string{fixture("exchange.eml")}, "", 1, []string{
			"(not recorded)",
			"hop 2: TLS, cipher not recorded: strength unknown, judged as 0 bits",
		}},
		{"stdin", []string{"-"}, "Received: from a.example ([192.0.2.1]) by mx.example with ESMTP; Mon, 13 May 2024 10:00:00 +0000\n\n", 1, []string{
			"FAIL 503 5.7.0 encryption too weak 0 less than 112",
		}},
		// No file and stdin not a terminal: read the message from it.
		{"stdin without -", nil, "Received: from a.example ([192.0.2.1]) by mx.example with ESMTP; Mon, 13 May 2024 10:00:00 +0000\n\n", 1, []string{
			"FAIL 503 5.7.0 encryption too weak 0 less than 112",
		}},
		{"no received headers", []string{"-"}, "Subject: hi\n\nbody\n", 2, []string{"standard input: no Received: headers in message"}},
		{"missing file", []string{"/nonexistent/message.eml"}, "", 2, []string{"no such file"}},
		{"bad bits", []string{"--require-bits", "0", fixture("postfix.eml")}, "", 2, []string{"--require-bits 0"}},
		{"bad output", []string{"--output", "xml", fixture("postfix.eml")}, "", 2, []string{"--output \"xml\""}},
		{"two files", []string{fixture("postfix.eml"), fixture("exim.eml")}, "", 2, []string{"accepts at most 1 arg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runHops(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, want := range tt.contains {
				if !strings.Contains(stdout+stderr, want) {
					t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", want, stdout, stderr)
				}
			}
		})
	}
}

// No file and a terminal on stdin: a usage error, not a wait for typing.
func TestProbeHopsTerminalStdin(t *testing.T) {
	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer tty.Close()
	code, _, stderr := runHopsIn(t, tty)
	if code != exitUsage || !strings.Contains(stderr, "no message: name a file, or pipe one in") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

// The JSON document keeps its documented shape.
func TestProbeHopsJSON(t *testing.T) {
	code, stdout, stderr := runHops(t, "", "--output", "json", fixture("mixed.eml"))
	if code != 1 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Message         string `json:"message"`
		RecipientDomain string `json:"recipient_domain"`
		Requirement     struct {
			Bits   int    `json:"bits"`
			MinTLS string `json:"min_tls"`
		} `json:"requirement"`
		Passed       bool   `json:"passed"`
		FailedHops   []int  `json:"failed_hops"`
		FirstTrusted int    `json:"first_trusted"`
		Warning      string `json:"warning"`
		Hops         []struct {
			Index      int    `json:"index"`
			From       string `json:"from"`
			FromIP     string `json:"from_ip"`
			By         string `json:"by"`
			With       string `json:"with"`
			Date       string `json:"date"`
			MTA        string `json:"mta"`
			TLS        bool   `json:"tls"`
			TLSVersion string `json:"tls_version"`
			Cipher     string `json:"cipher"`
			CipherID   string `json:"cipher_id"`
			HeaderBits *int   `json:"header_bits"`
			Bits       *int   `json:"bits"`
			Internal   bool   `json:"internal"`
			Trusted    bool   `json:"trusted"`
			Grade      *struct {
				Met        bool   `json:"met"`
				Diagnostic string `json:"diagnostic"`
				Bits       int    `json:"bits"`
			} `json:"grade"`
		} `json:"hops"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if doc.RecipientDomain != "gmail.com" || doc.Requirement.Bits != 112 || doc.Requirement.MinTLS != "1.0" ||
		doc.Passed || len(doc.FailedHops) != 1 || doc.FailedHops[0] != 1 || doc.FirstTrusted != 4 || doc.Warning == "" || len(doc.Hops) != 5 {
		t.Errorf("document: %+v", doc)
	}
	h1, h4, h5 := doc.Hops[0], doc.Hops[3], doc.Hops[4]
	if h1.TLS || h1.Bits == nil || *h1.Bits != 0 || h1.Grade == nil || h1.Grade.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("hop 1: %+v", h1)
	}
	if !h4.TLS || h4.TLSVersion != "1.2" || h4.CipherID != "0xc02b" || *h4.HeaderBits != 128 || *h4.Bits != 128 || !h4.Grade.Met || !h4.Trusted || h4.MTA != "gmail" || h4.Date != "2024-05-14T02:20:11-07:00" {
		t.Errorf("hop 4: %+v", h4)
	}
	if !h5.Internal || h5.Grade != nil {
		t.Errorf("hop 5: %+v", h5)
	}
	if _, err := time.Parse(time.RFC3339, h4.Date); err != nil {
		t.Error(err)
	}
}

func TestRenderDeep(t *testing.T) {
	s := deep.Suite{ID: 0x003b, Name: "TLS_RSA_WITH_NULL_SHA256", Bits: 0, Version: 0x0303}
	rep := &deep.Report{
		Versions: []deep.VersionResult{
			{Version: 0x0301, Refusal: "protocol_version"},
			{Version: 0x0303, Accepted: true, Suites: []deep.Suite{s}},
		},
		Weakest: &s, Strongest: &s, Preference: deep.PreferUnknown,
		OpenSSLDefault: deep.Negotiation{Refusal: "handshake_failure"},
		Relay:          deep.Negotiation{Refusal: "handshake_failure"},
		Connections:    9,
	}
	var buf bytes.Buffer
	if err := renderDeep(&buf, painter{}, rep, "  "); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"versions accepted:     TLSv1.2 (1 suites)",
		"versions refused:      TLSv1.0: protocol_version",
		"weakest:               TLSv1.2 TLS_RSA_WITH_NULL_SHA256 (0 bits)",
		"default OpenSSL gets:  no common suite (handshake_failure)",
		"TLSv1.2  0x003b  TLS_RSA_WITH_NULL_SHA256  0",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	validateJSON(t, "probe#/$defs/deep", string(b))
	for _, want := range []string{`"version":"1.2"`, `"id":"0x003b"`, `"server_preference":"unknown"`, `"openssl_default":{"accepted":false,"refusal":"handshake_failure"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
}
