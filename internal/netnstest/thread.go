package netnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/vishvananda/netns"
)

// Listen opens a TCP listener inside the namespace on addr ("10.a.b.c:port",
// port 0 allowed). It is closed on t.Cleanup.
func (h *Host) Listen(t testing.TB, addr string) net.Listener { return ListenIn(t, h.Name, addr) }

// ListenIn opens a TCP listener in the named namespace on addr. A socket
// stays in the namespace it was created in, so the listener serves from any
// goroutine afterwards. It is closed on t.Cleanup.
func ListenIn(t testing.TB, netns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := RunIn(netns, func() error {
		var lc net.ListenConfig
		// Go listens with MPTCP by default; a plain TCP socket behaves like
		// an ordinary backend and can go into a SOCKMAP (see DESIGN.md).
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen on %s in %s: %v", addr, netns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Run runs fn on a locked OS thread switched into the namespace (for tests
// that need to dial from inside). Sockets fn creates stay in the namespace.
//
// fn runs on a goroutine of its own, so it must not call t.FailNow (t.Fatal)
// and should dial IP literals: goroutines it starts, such as those of a DNS
// lookup, run on other threads in the root namespace. A panic in fn is
// re-raised in the caller.
func (h *Host) Run(fn func() error) error {
	ns, err := netns.GetFromPath(h.path())
	if err != nil {
		return fmt.Errorf("open netns %s: %w", h.Name, err)
	}
	defer ns.Close()
	return onNetnsThread(func() error { return netns.Set(ns) }, fn)
}

// onNetnsThread runs fn on a new goroutine locked to its OS thread, after
// enter has moved that thread into another network namespace (by setns or
// unshare). The thread's namespace is restored before it is released.
//
// A new goroutine, not the caller's: if restoring fails, the thread must
// never run other Go code, and the caller would otherwise carry on in the
// wrong namespace. The goroutine then exits still locked, and the runtime
// terminates a thread whose goroutine exits locked instead of reusing it.
func onNetnsThread(enter, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		panicVal any
		stack    []byte
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()

		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread() // nothing was switched yet
			res.err = fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		defer func() {
			if err := netns.Set(orig); err != nil {
				// Keep the thread locked: see the function comment.
				res.err = errors.Join(res.err, fmt.Errorf("restore netns: %w", err))
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if p := recover(); p != nil {
				res.panicked, res.panicVal, res.stack = true, p, debug.Stack()
			}
		}()

		if err := enter(); err != nil {
			res.err = fmt.Errorf("enter netns: %w", err)
			return
		}
		res.err = fn()
	}()

	res := <-done
	if res.panicked {
		// Re-panic on the caller's goroutine: a panic on ours would kill the
		// test binary without running t.Cleanup, leaking namespaces.
		panic(fmt.Sprintf("%v\n\npanicked in network namespace thread:\n%s", res.panicVal, res.stack))
	}
	return res.err
}
