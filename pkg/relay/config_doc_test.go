package relay

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestConfigDocs fails when docs/config.md and the code disagree: every
// key with its environment variable and default, and no key the code
// does not know. The example config in dist/ must parse, too.
func TestConfigDocs(t *testing.T) {
	f, err := os.Open("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	def := DefaultConfig()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 4 {
			t.Errorf("row with %d cells: %s", len(cells), line)
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		key := strings.Trim(cells[0], "`")
		seen[key] = true
		want, err := def.Value(key)
		if err != nil {
			t.Errorf("docs/config.md documents %q, which the relay does not know", key)
			continue
		}
		gotDefault := strings.Trim(cells[1], "`")
		if cells[1] == "(none)" {
			gotDefault = ""
		}
		if gotDefault != want {
			t.Errorf("%s: docs say default %q, code has %q", key, cells[1], want)
		}
		if env := strings.Trim(cells[2], "`"); env != EnvName(key) {
			t.Errorf("%s: docs say environment %s, code reads %s", key, env, EnvName(key))
		}
		if cells[3] == "" {
			t.Errorf("%s: no meaning given", key)
		}
	}
	for _, k := range Keys {
		if !seen[k] {
			t.Errorf("key %q is not in docs/config.md", k)
		}
	}
}

func TestExampleConfigParses(t *testing.T) {
	c := DefaultConfig()
	if err := c.ApplyFile("../../dist/relay.conf.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditRotationKeys(t *testing.T) {
	c := DefaultConfig()
	if err := c.applyFile("relay.conf", []byte("audit-max-size = 1048576\naudit-max-age = 24h\n")); err != nil {
		t.Fatal(err)
	}
	if c.AuditMaxSize != 1<<20 || c.AuditMaxAge.Hours() != 24 {
		t.Errorf("config = %+v", c)
	}
	for _, bad := range []string{"audit-max-size = -1\n", "audit-max-age = -1h\n", "audit-max-size = big\n"} {
		c := DefaultConfig()
		if err := c.applyFile("relay.conf", []byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
