package testproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	p, err := Start("sleep", filepath.Join(t.TempDir(), "sleep.log"), "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 {
		t.Errorf("Pid() = %d", p.Pid())
	}
	select {
	case <-p.Done():
		t.Fatalf("sleep exited at once: %v", p.Err())
	case <-time.After(100 * time.Millisecond):
	}
	p.Stop(5 * time.Second)
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if p.Err() == nil {
		t.Error("Err() = nil after SIGTERM, want the signal")
	}
}

func TestTail(t *testing.T) {
	p, err := Start("sh", filepath.Join(t.TempDir(), "sh.log"), "sh", "-c", "echo hello")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		p.Stop(time.Second)
		t.Fatal("sh did not exit")
	}
	if err := p.Err(); err != nil {
		t.Fatalf("sh: %v", err)
	}
	if got := p.Tail(5); !strings.HasSuffix(got, "\nhello") {
		t.Errorf("Tail(5) = %q, want it to end in the line hello", got)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testproc")); err != nil {
		t.Errorf("ModuleRoot() = %s: %v", root, err)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("FreePorts(3) = %v", ports)
		}
		seen[p] = true
	}
}
