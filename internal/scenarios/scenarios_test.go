package scenarios

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A listed scenario is one row of docs/SCENARIOS.md.
type listed struct {
	line  int
	file  string
	name  string
	peers string
}

// readList parses the rows whose first cell is a test name in backquotes:
// | `TestX` | `path/x_test.go` | peers | what it proves |
func readList(t *testing.T, path string) []listed {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []listed
	for i, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `Test") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != 4 {
			t.Errorf("%s:%d: want 4 cells (test, file, real peers, proves), have %d", path, i+1, len(cells))
			continue
		}
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		rows = append(rows, listed{
			line:  i + 1,
			name:  strings.Trim(cells[0], "`"),
			file:  strings.Trim(cells[1], "`"),
			peers: cells[2],
		})
		if cells[3] == "" {
			t.Errorf("%s:%d: %s says nothing about what it proves", path, i+1, cells[0])
		}
	}
	return rows
}

// TestScenariosListed: docs/SCENARIOS.md lists exactly the tests that
// start or run a real peer, each in the file that declares it, with every
// peer it uses named.
func TestScenariosListed(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(root, "docs", "SCENARIOS.md")
	found := scanRealPeerTests(t, root, self)
	if len(found) == 0 {
		t.Fatal("no test under the module starts a real peer: the scan is broken")
	}
	rows := readList(t, doc)

	type key struct{ file, name string }
	byKey := map[key]listed{}
	for _, r := range rows {
		k := key{r.file, r.name}
		if prev, ok := byKey[k]; ok {
			t.Errorf("docs/SCENARIOS.md:%d: %s in %s is already listed on line %d", r.line, r.name, r.file, prev.line)
		}
		byKey[k] = r
	}
	for _, f := range found {
		r, ok := byKey[key{f.File, f.Name}]
		if !ok {
			t.Errorf("%s in %s uses %s but is not in docs/SCENARIOS.md; add a row:\n| `%s` | `%s` | %s | … |",
				f.Name, f.File, strings.Join(f.Peers, ", "), f.Name, f.File, strings.Join(f.Peers, ", "))
			continue
		}
		delete(byKey, key{f.File, f.Name})
		for _, p := range f.Peers {
			if !strings.Contains(strings.ToLower(r.peers), strings.ToLower(p)) {
				t.Errorf("docs/SCENARIOS.md:%d: %s uses %s; the peers column says %q", r.line, f.Name, p, r.peers)
			}
		}
	}
	for _, r := range byKey {
		t.Errorf("docs/SCENARIOS.md:%d: %s", r.line, staleReason(root, r))
	}
}

// staleReason says why a listed row matches no real-peer test.
func staleReason(root string, r listed) string {
	src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(r.file)))
	if err != nil {
		return fmt.Sprintf("%s: %s does not exist", r.name, r.file)
	}
	if !strings.Contains(string(src), "\nfunc "+r.name+"(t *testing.T)") {
		return fmt.Sprintf("%s is not declared in %s", r.name, r.file)
	}
	return fmt.Sprintf("%s in %s no longer starts or runs a real peer; remove its row", r.name, r.file)
}
