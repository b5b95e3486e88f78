package proxy_test

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

func h2specPath(t *testing.T) string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "h2spec"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("h2spec not installed (hack/install-deps.sh installs it)")
	}
	t.Skip("h2spec not installed (hack/install-deps.sh installs it)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestH2Spec runs h2spec (every HTTP/2 and HPACK case) against the h2c
// and the TLS listener.
func TestH2Spec(t *testing.T) {
	bin := h2specPath(t)
	b := newBackend(t, "b")
	dir := t.TempDir()
	crt, key, _ := writeCert(t, dir, "h2spec", "localhost")
	tlsPort := freePort(t)
	e := startProxy(t, fmt.Sprintf(`server: {accessLog: false}
listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls: {certificates: [{certFile: %s, keyFile: %s}]}
routes: [{name: r, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, tlsPort, crt, key, b.addr()))
	for _, tc := range []struct {
		name string
		port string
		args []string
	}{
		{"h2c", e.addr[strings.LastIndexByte(e.addr, ':')+1:], nil},
		{"tls", fmt.Sprint(tlsPort), []string{"-t", "-k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			report := filepath.Join(t.TempDir(), "report.xml")
			args := append([]string{"-h", "127.0.0.1", "-p", tc.port, "-o", "5", "-j", report}, tc.args...)
			out, _ := exec.Command(bin, args...).CombinedOutput()
			raw, err := os.ReadFile(report)
			if err != nil {
				t.Fatalf("h2spec wrote no report: %v\n%s", err, out)
			}
			var r junit
			if err := xml.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
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
			t.Logf("h2spec %s: %d of %d cases passed", tc.name, passed, cases)
			if cases < 140 {
				t.Errorf("only %d cases ran:\n%s", cases, out)
			}
		})
	}
}
