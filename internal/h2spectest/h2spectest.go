// Package h2spectest runs h2spec (github.com/summerwind/h2spec) against a
// server and fails the test on any case that does not pass.
package h2spectest

import (
	"bytes"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

type junit struct {
	Suites []struct {
		Cases []struct {
			Package string    `xml:"package,attr"`
			Name    string    `xml:"classname,attr"`
			Error   *struct{} `xml:"error"`
			Failure *struct{} `xml:"failure"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// Path finds h2spec; without it the test is skipped, or fails under CI
// (hack/install-deps.sh installs it there).
func Path(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("h2spec not installed (hack/install-deps.sh installs it)")
	}
	t.Skip("h2spec not installed (hack/install-deps.sh installs it)")
	return ""
}

// Run runs every h2spec case against host:port (extra arguments such as
// -t -k for TLS) and reports each one that fails or is skipped.
func Run(t *testing.T, name, host, port string, extra ...string) {
	t.Helper()
	bin := Path(t)
	report := filepath.Join(t.TempDir(), "report.xml")
	args := append([]string{"-h", host, "-p", port, "-o", "5", "-j", report}, extra...)
	out, _ := exec.Command(bin, args...).CombinedOutput()
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("h2spec wrote no report: %v\n%s", err, out)
	}
	var r junit
	// Failure messages can quote raw frame bytes, which XML cannot hold.
	if err := xml.Unmarshal(bytes.ReplaceAll(raw, []byte{0}, nil), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cases, passed := 0, 0
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			cases++
			id := c.Package + ": " + c.Name
			switch {
			case c.Skipped != nil:
				t.Errorf("skipped: %s", id)
			case c.Error != nil || c.Failure != nil:
				t.Errorf("failed: %s", id)
			default:
				passed++
			}
		}
	}
	t.Logf("h2spec %s: %d of %d cases passed", name, passed, cases)
	if passed != cases {
		t.Logf("h2spec output:\n%s", out)
	}
	if cases < 140 {
		t.Errorf("only %d cases ran:\n%s", cases, out)
	}
}
