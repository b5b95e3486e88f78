// Package h2guard screens the frames an HTTP/2 client sends before the
// server reads them, for abuse that is legal frame by frame: streams
// opened only to be reset (rapid reset), floods of PING or SETTINGS frames,
// and header blocks that never end (CONTINUATION flood). Such a connection
// ends with an error. The RFC 9113 rules themselves are the server's
// (pkg/l7/h2server). On framing it cannot follow (an oversized frame) it
// stops screening and passes bytes through: the server reports those.
package h2guard

import (
	"errors"
	"io"
	"time"
)

const (
	frameHeaderLen = 9
	prefaceLen     = 24
	// maxFrame bounds what is buffered; larger frames are the server's to
	// refuse (it advertises 16 KiB).
	maxFrame = 1 << 20

	typeHeaders      = 0x1
	typeRSTStream    = 0x3
	typeSettings     = 0x4
	typePing         = 0x6
	typeContinuation = 0x9

	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// Abuse limits. A client that resets most of the streams it opens is the
// "rapid reset" attack (CVE-2023-44487): every stream costs the server a
// handler and an upstream request, the reset costs the client nothing.
// As Envoy does, such a connection is ended; the client may reconnect.
const (
	rapidResetMinStreams = 100
	maxHeaderBlock       = 1 << 20
	// maxSettings: a client has no reason to change its settings more
	// than a handful of times; each change costs the server work and an
	// ACK.
	maxSettings = 1000
)

// PING frames are allowed in bursts of pingBurst and pingsPerSecond after
// that: every PING costs the server an ACK. Keep-alives need far fewer;
// gRPC's bandwidth probes send one per round trip while data flows,
// which stays within this on any real network.
const (
	pingBurst      = 10000
	pingsPerSecond = 1000
)

// ErrPingFlood ends a connection whose client sends PINGs faster than
// the allowance.
var ErrPingFlood = errors.New("h2guard: PING frames faster than 1000 per second (PING flood)")

// ErrSettingsFlood ends a connection whose client sent more than 1000
// SETTINGS frames.
var ErrSettingsFlood = errors.New("h2guard: more than 1000 SETTINGS frames (SETTINGS flood)")

// ErrRapidReset ends a connection whose client resets most of its streams.
var ErrRapidReset = errors.New("h2guard: client reset more than half of its streams (rapid reset)")

// ErrHeaderBlockTooLarge ends a connection whose header block (HEADERS
// and CONTINUATION frames) grows past 1 MiB (a CONTINUATION flood).
var ErrHeaderBlockTooLarge = errors.New("h2guard: header block larger than 1 MiB")

// Reader screens the client's side of an HTTP/2 connection, preface
// included.
type Reader struct {
	src     io.Reader
	in, out []byte
	preface int  // preface bytes still to pass
	off     bool // stopped screening
	block   int  // bytes of the header block in progress
	// streams and resets count the client's HEADERS and RST_STREAM frames.
	streams, resets, settings int
	// pingTokens and pingAt are the PING allowance (a token bucket).
	pingTokens float64
	pingAt     time.Time
	buf        [16 << 10]byte
}

// NewReader screens src, which starts with the client connection preface.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src, preface: prefaceLen}
}

func (r *Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.off && len(r.in) == 0 {
			return r.src.Read(p)
		}
		n, err := r.src.Read(r.buf[:])
		r.in = append(r.in, r.buf[:n]...)
		if perr := r.process(); perr != nil {
			return 0, perr
		}
		if err != nil {
			if len(r.out) == 0 {
				// Pass on what cannot form a frame, then the error.
				r.out, r.in = append(r.out, r.in...), r.in[:0]
				if len(r.out) == 0 {
					return 0, err
				}
			}
			break
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	if len(r.out) == 0 {
		r.out = r.out[:0:0]
	}
	return n, nil
}

// process moves whole frames from in to out, screening them.
func (r *Reader) process() error {
	if r.preface > 0 {
		n := min(r.preface, len(r.in))
		r.out = append(r.out, r.in[:n]...)
		r.in, r.preface = r.in[n:], r.preface-n
	}
	for !r.off && len(r.in) >= frameHeaderLen {
		length := int(r.in[0])<<16 | int(r.in[1])<<8 | int(r.in[2])
		if length > maxFrame {
			r.off = true
			break
		}
		if len(r.in) < frameHeaderLen+length {
			break
		}
		frame := r.in[:frameHeaderLen+length]
		if err := r.screen(frame); err != nil {
			return err
		}
		r.in = r.in[frameHeaderLen+length:]
	}
	if r.off {
		r.out, r.in = append(r.out, r.in...), r.in[:0]
	}
	return nil
}

func (r *Reader) screen(frame []byte) error {
	typ, flags, payload := frame[3], frame[4], frame[frameHeaderLen:]
	switch typ {
	case typeSettings:
		if flags&flagAck == 0 {
			if r.settings++; r.settings > maxSettings {
				return ErrSettingsFlood
			}
		}
	case typePing:
		if flags&flagAck == 0 && !r.allowPing(time.Now()) {
			return ErrPingFlood
		}
	case typeRSTStream:
		r.resets++
		if r.streams >= rapidResetMinStreams && r.resets*2 > r.streams {
			return ErrRapidReset
		}
	case typeHeaders:
		r.streams++
		frag, ok := headerFragment(flags, payload)
		if !ok {
			r.off = true // malformed framing: the server's to report
			break
		}
		r.block = len(frag)
	case typeContinuation:
		if r.block += len(payload); r.block > maxHeaderBlock {
			return ErrHeaderBlockTooLarge
		}
	}
	r.out = append(r.out, frame...)
	return nil
}

// headerFragment strips padding and priority from a HEADERS payload.
func headerFragment(flags byte, p []byte) ([]byte, bool) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

func (r *Reader) allowPing(now time.Time) bool {
	if r.pingAt.IsZero() {
		r.pingTokens = pingBurst
	} else {
		r.pingTokens = min(pingBurst, r.pingTokens+now.Sub(r.pingAt).Seconds()*pingsPerSecond)
	}
	r.pingAt = now
	if r.pingTokens < 1 {
		return false
	}
	r.pingTokens--
	return true
}
