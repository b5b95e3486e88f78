package deadline

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// countingConn counts the deadline changes that reach a real connection.
type countingConn struct {
	net.Conn
	sets int
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.sets++
	return c.Conn.SetReadDeadline(t)
}

func tcpPair(t *testing.T) (client *countingConn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return &countingConn{Conn: c}, s
}

// tracked returns a Read tracking a real connection that counts its deadline changes.
func tracked(t *testing.T) (*Read, *countingConn) {
	c, _ := tcpPair(t)
	r := &Read{}
	r.Reset(c)
	return r, c
}

func TestSlack(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{160 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, time.Second / 16},
		{60 * time.Second, 300 * time.Millisecond},
	} {
		if got := Slack(tc.timeout); got != tc.want {
			t.Errorf("Slack(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}

func TestWithinKeepsADeadlineInsideTheSlack(t *testing.T) {
	r, c := tracked(t)
	now := time.Now()
	if err := r.Within(now, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// 100 ms later the deadline is still within 300 ms of now+10s.
	if err := r.Within(now.Add(100*time.Millisecond), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if c.sets != 1 {
		t.Fatalf("deadline set %d times, want 1 (the second call is within the slack)", c.sets)
	}
	// Past the slack it moves.
	if err := r.Within(now.Add(400*time.Millisecond), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if c.sets != 2 {
		t.Fatalf("deadline set %d times, want 2", c.sets)
	}
	// A shorter timeout must never be left to a later deadline.
	if err := r.Within(now.Add(400*time.Millisecond), time.Second); err != nil {
		t.Fatal(err)
	}
	if c.sets != 3 {
		t.Fatalf("deadline set %d times, want 3 (a shorter timeout moves it)", c.sets)
	}
}

func TestForgetAndSetForceTheNextChange(t *testing.T) {
	r, c := tracked(t)
	now := time.Now()
	_ = r.Within(now, 10*time.Second)
	r.Forget()
	_ = r.Within(now, 10*time.Second)
	if c.sets != 2 {
		t.Fatalf("after Forget: %d sets, want 2", c.sets)
	}
	_ = r.Set(time.Time{}) // no deadline: nothing to keep
	_ = r.Within(now, 10*time.Second)
	if c.sets != 4 {
		t.Fatalf("after Set(zero): %d sets, want 4", c.sets)
	}
}

// The kept deadline fires no earlier than asked and at most the slack late.
func TestKeptDeadlineFiresInItsWindow(t *testing.T) {
	r, c := tracked(t)
	const timeout = 1600 * time.Millisecond // slack 100 ms
	start := time.Now()
	_ = r.Within(start, timeout)
	time.Sleep(5 * time.Millisecond)
	asked := time.Now()
	_ = r.Within(asked, timeout) // kept: 5 ms is well inside the slack
	if c.sets != 1 {
		t.Fatalf("%d sets, want 1", c.sets)
	}
	var b [1]byte
	_, err := c.Read(b[:])
	fired := time.Now()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	if early := asked.Add(timeout).Sub(fired); early > 0 {
		t.Fatalf("deadline fired %v before the timeout asked for", early)
	}
	// At most the slack after the first call's timeout, plus scheduling.
	if late := fired.Sub(start.Add(timeout + Slack(timeout))); late > 500*time.Millisecond {
		t.Fatalf("deadline fired %v after the end of its slack", late)
	}
}

func TestNonPositiveTimeoutIsExact(t *testing.T) {
	r, c := tracked(t)
	now := time.Now()
	_ = r.Within(now, 0)
	_ = r.Within(now, 0)
	if c.sets != 2 {
		t.Fatalf("%d sets, want 2 (no slack without a timeout)", c.sets)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
}
