package l4

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedObjectsAreCurrent rebuilds the BPF object and its Go
// bindings with the go:generate line of gen.go into a temporary directory
// and compares them with the committed files: a change to bpf/ without
// `make generate` fails here. It needs clang (CI installs it).
func TestGeneratedObjectsAreCurrent(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("clang is missing: CI must install it (hack/install-deps.sh)")
		}
		t.Skip("clang not installed")
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	n := 0
	for _, line := range strings.Split(string(src), "\n") {
		directive, ok := strings.CutPrefix(line, "//go:generate ")
		if !ok {
			continue
		}
		args := splitArgs(directive)
		if len(args) < 3 || args[0] != "go" || args[1] != "tool" {
			t.Fatalf("unexpected go:generate line %q", directive)
		}
		// Flags go before the positional arguments ("lb ../../bpf/lb.c").
		cmdArgs := append([]string{"tool", "bpf2go", "-output-dir", out}, args[3:]...)
		cmd := exec.Command("go", cmdArgs...)
		cmd.Env = append(os.Environ(), "GOPACKAGE=l4")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go: %v\n%s", err, b)
		}
		n++
	}
	files, err := filepath.Glob(filepath.Join(out, "*"))
	if err != nil || n == 0 || len(files) != 2*n {
		t.Fatalf("%d go:generate lines produced %v (%v)", n, files, err)
	}
	for _, path := range files {
		f := filepath.Base(path)
		fresh, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s is stale: run `make generate` and commit the result", f)
		}
	}
}

// splitArgs splits a command line on spaces, keeping "quoted strings" whole.
func splitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
