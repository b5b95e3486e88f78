package handover

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestAskWithNobodyThere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "handover.sock")
	took, err := Ask(context.Background(), path)
	if took || err != nil {
		t.Fatalf("Ask with no socket = %v, %v; want false, nil", took, err)
	}
	// A crashed agent's socket file: nobody accepts, so it is removed.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "stale.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	stale := ln.Addr().String()
	ln.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket file not left behind: %v", err)
	}
	took, err = Ask(context.Background(), stale)
	if took || err != nil {
		t.Fatalf("Ask with a stale socket = %v, %v; want false, nil", took, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale socket not removed: %v", err)
	}
}

func TestHandOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "handover.sock")
	s, err := Listen(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", di.Mode().Perm())
	}
	// A second agent cannot serve the same path.
	if _, err := Listen(path, quiet()); err == nil {
		t.Error("a second Listen on a served path succeeded")
	}

	released := make(chan struct{})
	served := make(chan bool, 1)
	go func() {
		served <- s.Serve(context.Background(), func() { close(released) })
	}()

	// Junk is ignored: the agent keeps serving.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("drain please\n"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 16)); n != 0 || err == nil {
		t.Errorf("malformed request answered: %d bytes, %v", n, err)
	}
	c.Close()
	select {
	case <-released:
		t.Fatal("a malformed request released the agent")
	default:
	}

	took, err := Ask(context.Background(), path)
	if !took || err != nil {
		t.Fatalf("Ask = %v, %v; want true, nil", took, err)
	}
	select {
	case <-released:
	default:
		t.Fatal("answered before release ran")
	}
	if !<-served {
		t.Error("Serve reported no hand-over")
	}
	// The path is free for the successor at once.
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after the hand-over: %v", err)
	}
	next, err := Listen(path, quiet())
	if err != nil {
		t.Fatalf("successor cannot listen: %v", err)
	}
	next.Close()
}

func TestServeStopsWithContext(t *testing.T) {
	s, err := Listen(filepath.Join(t.TempDir(), "h.sock"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- s.Serve(ctx, func() { t.Error("released without a request") }) }()
	cancel()
	select {
	case got := <-done:
		if got {
			t.Error("Serve reported a hand-over")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return when its context ended")
	}
}
