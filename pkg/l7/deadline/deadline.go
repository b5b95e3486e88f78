// Package deadline moves a connection's read deadline lazily, the way nginx
// moves its timers. Setting a deadline is a runtime timer update (a lock
// and a heap fix); a keep-alive connection would move its deadline on
// every request by a few microseconds. A deadline already within a small
// slack of where it should be is left alone, so it may fire that much
// late, never early.
package deadline

import (
	"net"
	"time"
)

// maxSlack is nginx's NGX_TIMER_LAZY_DELAY.
const maxSlack = 300 * time.Millisecond

// Slack is how late a lazily kept deadline for timeout may fire:
// timeout/16, at most 300 ms.
func Slack(timeout time.Duration) time.Duration {
	return min(timeout/16, maxSlack)
}

// Read tracks the read deadline of one connection. Every change to that
// deadline must go through it (or be followed by Forget). The zero value
// knows nothing and sets the first deadline it is asked for.
type Read struct {
	nc    net.Conn
	at    time.Time
	known bool
}

// Reset starts tracking nc, whose deadline is unknown.
func (r *Read) Reset(nc net.Conn) { *r = Read{nc: nc} }

// Deadline returns the deadline in force and whether it is known.
func (r *Read) Deadline() (time.Time, bool) { return r.at, r.known }

// Forget records that the deadline was changed elsewhere.
func (r *Read) Forget() { r.known = false }

// Set sets the deadline to exactly t (zero: none).
func (r *Read) Set(t time.Time) error {
	err := r.nc.SetReadDeadline(t)
	r.at, r.known = t, err == nil
	return err
}

// Within makes the deadline fire timeout after now, or up to
// Slack(timeout) later: a deadline already in that window is kept, and a
// new one is set at its far end so that the next calls can keep it.
func (r *Read) Within(now time.Time, timeout time.Duration) error {
	if timeout <= 0 {
		return r.Set(now.Add(timeout))
	}
	want := now.Add(timeout)
	slack := Slack(timeout)
	if r.known && !r.at.Before(want) && r.at.Sub(want) <= slack {
		return nil
	}
	return r.Set(want.Add(slack))
}
