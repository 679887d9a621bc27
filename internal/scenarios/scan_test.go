package scenarios

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// peerFuncs are the internal/testpeer functions that start, or require, a
// real program, and the peer each one stands for.
var peerFuncs = map[string][]string{
	"StartPostfix":       {"Postfix"},
	"RequirePostfix":     {"Postfix"},
	"Swaks":              {"swaks"},
	"RequireSwaks":       {"swaks"},
	"OpenSSL":            {"openssl"},
	"RequireOpenSSL":     {"openssl"},
	"StartOpenSSLServer": {"openssl"},
	"StartSignedDNS":     {"nsd", "unbound", "ldns-signzone"},
	"RequireSignedDNS":   {"nsd", "unbound", "ldns-signzone"},
}

// peerPrograms are real programs a test may run without testpeer's help
// (exec.Command, exec.LookPath, testpeer.RequireBinary). A string literal
// naming one marks the function that holds it. "postfix" is not here: it is
// also a policy format name, and Postfix is only started through testpeer.
var peerPrograms = map[string]string{
	"swaks":            "swaks",
	"openssl":          "openssl",
	"posttls-finger":   "posttls-finger",
	"smtp-source":      "smtp-source",
	"smtp-sink":        "smtp-sink",
	"chromium":         "Chromium",
	"chromium-browser": "Chromium",
	"unbound":          "unbound",
	"nsd":              "nsd",
	"dnsmasq":          "dnsmasq",
	"ldns-signzone":    "ldns-signzone",
}

// kernelEvents are real-environment conditions a test provokes itself:
// a filesystem that fills up, a process killed mid-write.
var kernelEvents = map[string]string{
	"Mount":   "full tmpfs",
	"SIGKILL": "SIGKILL",
}

// A realPeerTest is a Test function that starts or runs a real peer,
// directly or through the helpers of its own directory's test files.
type realPeerTest struct {
	File  string // slash path from the module root
	Name  string
	Peers []string
}

// node is one top-level declaration of a directory's test files: a
// function, a method (keyed ".name") or a package-level variable.
type node struct {
	file  string
	test  bool     // func TestX(t *testing.T)
	peers []string // peers it uses itself
	refs  []string // keys of other nodes it names
}

// scanRealPeerTests walks every _test.go file under root except those in
// skip (this package, whose tables name every peer).
func scanRealPeerTests(t *testing.T, root, skip string) []realPeerTest {
	t.Helper()
	dirs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (path == skip || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []realPeerTest
	for _, files := range dirs {
		out = append(out, scanDir(t, root, files)...)
	}
	slices.SortFunc(out, func(a, b realPeerTest) int {
		return strings.Compare(a.File+" "+a.Name, b.File+" "+b.Name)
	})
	return out
}

// scanDir resolves names the way the compiler would within one directory
// (a package and its _test package), approximating method calls by name:
// a helper that starts a peer marks every test that reaches it.
func scanDir(t *testing.T, root string, files []string) []realPeerTest {
	t.Helper()
	fset := token.NewFileSet()
	nodes := map[string]*node{}
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		inTestpeer := strings.TrimSuffix(f.Name.Name, "_test") == "testpeer"
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				key := d.Name.Name
				if d.Recv != nil {
					key = "." + key
				}
				n := &node{file: rel, test: isTestFunc(d)}
				collect(d, n, inTestpeer)
				if old, ok := nodes[key]; ok { // methods of several types
					old.peers = append(old.peers, n.peers...)
					old.refs = append(old.refs, n.refs...)
					continue
				}
				nodes[key] = n
			case *ast.GenDecl:
				if d.Tok != token.VAR {
					continue
				}
				for _, spec := range d.Specs {
					vs := spec.(*ast.ValueSpec)
					for _, name := range vs.Names {
						n := &node{file: rel}
						collect(vs, n, inTestpeer)
						nodes[name.Name] = n
					}
				}
			}
		}
	}
	var out []realPeerTest
	for name, n := range nodes {
		if !n.test {
			continue
		}
		if peers := reach(nodes, name); len(peers) > 0 {
			out = append(out, realPeerTest{File: n.file, Name: name, Peers: peers})
		}
	}
	return out
}

func isTestFunc(d *ast.FuncDecl) bool {
	if d.Recv != nil || !strings.HasPrefix(d.Name.Name, "Test") || d.Name.Name == "TestMain" {
		return false
	}
	ps := d.Type.Params.List
	if len(ps) != 1 {
		return false
	}
	star, ok := ps[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "T"
}

// collect records the peers n uses itself and every name it mentions.
func collect(root ast.Node, n *node, inTestpeer bool) {
	ast.Inspect(root, func(x ast.Node) bool {
		switch e := x.(type) {
		case *ast.SelectorExpr:
			if id, ok := e.X.(*ast.Ident); ok && id.Name == "testpeer" {
				if p, ok := peerFuncs[e.Sel.Name]; ok {
					n.peers = append(n.peers, p...)
				}
				return false
			}
			if id, ok := e.X.(*ast.Ident); ok && (id.Name == "syscall" || id.Name == "unix") {
				if p, ok := kernelEvents[e.Sel.Name]; ok {
					n.peers = append(n.peers, p)
				}
				return false
			}
			n.refs = append(n.refs, "."+e.Sel.Name)
		case *ast.Ident:
			if p, ok := peerFuncs[e.Name]; ok && inTestpeer {
				n.peers = append(n.peers, p...)
			}
			n.refs = append(n.refs, e.Name)
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				if s, err := strconv.Unquote(e.Value); err == nil {
					if p, ok := peerPrograms[s]; ok {
						n.peers = append(n.peers, p)
					}
				}
			}
		}
		return true
	})
}

// reach returns the sorted peers used by start or anything it reaches.
func reach(nodes map[string]*node, start string) []string {
	seen := map[string]bool{start: true}
	queue := []string{start}
	var peers []string
	for len(queue) > 0 {
		n := nodes[queue[0]]
		queue = queue[1:]
		peers = append(peers, n.peers...)
		for _, r := range n.refs {
			if _, ok := nodes[r]; ok && !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}
