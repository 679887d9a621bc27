package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestInstallScript runs dist/install.sh into a temporary DESTDIR, with a
// PREFIX other than the unit file's /usr, and checks that everything the
// unit file names is installed: its ExecStart= binary, each page and file
// of Documentation=, and beside it the tmpfiles entry and every man page.
func TestInstallScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds smgctl")
	}
	top, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	const prefix = "/usr/local"
	cmd := exec.Command("sh", filepath.Join(top, "dist", "install.sh"))
	cmd.Env = append(os.Environ(), "DESTDIR="+dest, "PREFIX="+prefix)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	root := filepath.Join(dest, prefix)

	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/smgctl-relay.service"))
	if err != nil {
		t.Fatal(err)
	}
	exe := regexp.MustCompile(`(?m)^ExecStart=(\S+)`).FindSubmatch(unit)
	if exe == nil || string(exe[1]) != prefix+"/bin/smgctl" {
		t.Fatalf("ExecStart= %q, want %s/bin/smgctl", exe, prefix)
	}
	if out, err := exec.Command(filepath.Join(dest, string(exe[1])), "--version").CombinedOutput(); err != nil {
		t.Fatalf("installed smgctl --version: %v %s", err, out)
	}
	docs := regexp.MustCompile(`(?m)^Documentation=(.*)$`).FindSubmatch(unit)
	if docs == nil {
		t.Fatal("no Documentation= in the unit")
	}
	manRef := regexp.MustCompile(`^man:([a-z-]+)\(([1-8])\)$`)
	for _, ref := range strings.Fields(string(docs[1])) {
		var path string
		if m := manRef.FindStringSubmatch(ref); m != nil {
			path = filepath.Join(root, "share/man/man"+m[2], m[1]+"."+m[2])
		} else if p, ok := strings.CutPrefix(ref, "file://"); ok {
			path = filepath.Join(dest, p)
		} else {
			t.Errorf("Documentation= %s: neither man: nor file://", ref)
			continue
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Documentation= %s is not installed: %v", ref, err)
		}
	}

	tmpfiles, err := os.ReadFile(filepath.Join(root, "lib/tmpfiles.d/smgctl.conf"))
	if want, _ := os.ReadFile(filepath.Join(top, "dist/smgctl.tmpfiles.conf")); err != nil || !bytes.Equal(tmpfiles, want) {
		t.Errorf("tmpfiles.d/smgctl.conf: %v, or not dist/smgctl.tmpfiles.conf", err)
	}

	pages := t.TempDir()
	if code, _, errs := run(t, "docs", "man", pages); code != 0 {
		t.Fatalf("docs man: %s", errs)
	}
	want, _ := filepath.Glob(filepath.Join(pages, "*"))
	for _, p := range want {
		name := filepath.Base(p)
		if _, err := os.Stat(filepath.Join(root, "share/man/man"+name[len(name)-1:], name)); err != nil {
			t.Errorf("man page %s not installed: %v", name, err)
		}
	}
}
