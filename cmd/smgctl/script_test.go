package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/smgctl/smgctl/pkg/policy/store"
)

// TestMain lets testscript run this test binary as the smgctl command, so
// scripts exercise the real Main with real files and exit codes.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"smgctl": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar. Each script gets its own
// policy file ($WORK/policy.conf), HOME and actor, and no colour.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/script",
		RequireUniqueNames: true,
		// UPDATE_SCRIPTS=1 rewrites the cmp files in the scripts to the
		// output seen; review the diff before committing it.
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		RequireExplicitExec: false,
		Setup: func(e *testscript.Env) error {
			e.Setenv("SMGCTL_POLICY", filepath.Join(e.WorkDir, "policy.conf"))
			e.Setenv("HOME", filepath.Join(e.WorkDir, "home"))
			e.Setenv("SMGCTL_ACTOR", "tester")
			e.Setenv("NO_COLOR", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"holdlock":   cmdHoldLock,
			"linecount":  cmdLineCount,
			"chainok":    cmdChainOK,
			"breakchain": cmdBreakChain,
		},
	})
}

// holdlock FILE takes the exclusive flock(2) on FILE, as another edit (or
// an operator's flock(1)) would, until the script ends. The smgctl under
// test runs as a separate process, so it really has to wait.
func cmdHoldLock(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: holdlock FILE")
	}
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_RDWR|os.O_CREATE, 0o644)
	ts.Check(err)
	ts.Check(unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	ts.Defer(func() { f.Close() })
}

// linecount N FILE fails unless FILE has exactly N lines.
func cmdLineCount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: linecount N FILE")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := strings.Count(ts.ReadFile(args[1]), "\n")
	if (got == want) == neg {
		ts.Fatalf("%s has %d lines, want %s%d", args[1], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// chainok FILE fails unless FILE is a journal with an intact hash chain.
func cmdChainOK(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: chainok JOURNAL")
	}
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	n, err := store.VerifyChain(f)
	if (err == nil) == neg {
		ts.Fatalf("chain of %s after %d good lines: %v", args[0], n, err)
	}
}

// breakchain FILE changes the actor of the first journal line, as a
// forger would, without touching the rest.
func cmdBreakChain(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: breakchain JOURNAL")
	}
	path := ts.MkAbs(args[0])
	data := ts.ReadFile(args[0])
	forged := strings.Replace(data, `"actor":"tester"`, `"actor":"nobody"`, 1)
	if forged == data {
		ts.Fatalf("no actor tester in %s", args[0])
	}
	ts.Check(os.WriteFile(path, []byte(forged), 0o644))
}
