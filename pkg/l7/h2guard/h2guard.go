// Package h2guard screens the frames an HTTP/2 client sends before Go's
// HTTP/2 server reads them, for the two places where that server departs
// from RFC 9113 on purpose:
//
//   - a SETTINGS frame naming one setting twice: RFC 9113 §6.5.3 says to
//     apply the values in order; Go hangs up. The frame is rewritten to
//     its net effect (each setting once, its last value).
//   - a request with connection-specific header fields (Connection,
//     Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade) or a TE
//     other than "trailers": RFC 9113 §8.2.2 makes it malformed, a stream
//     error; Go answers 400 and passes the request on. Here the connection
//     ends instead, which §5.4 allows for any stream error.
//
// Header blocks are decoded with a second HPACK decoder that follows the
// client's dynamic table, so nothing the server decodes is changed. On
// anything it cannot follow (a compression error, an oversized frame) it
// stops screening and passes bytes through: the server reports those.
package h2guard

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"
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

// ErrMalformed ends a connection whose client sent a malformed request.
var ErrMalformed = errors.New("h2guard: connection-specific header field in an HTTP/2 request")

// Reader screens the client's side of an HTTP/2 connection, preface
// included.
type Reader struct {
	src     io.Reader
	in, out []byte
	preface int  // preface bytes still to pass
	off     bool // stopped screening
	block   []byte
	dec     *hpack.Decoder
	bad     bool
	// streams and resets count the client's HEADERS and RST_STREAM frames.
	streams, resets, settings int
	// pingTokens and pingAt are the PING allowance (a token bucket).
	pingTokens float64
	pingAt     time.Time
	buf        [16 << 10]byte
}

// NewReader screens src, which starts with the client connection preface.
func NewReader(src io.Reader) *Reader {
	r := &Reader{src: src, preface: prefaceLen}
	r.dec = hpack.NewDecoder(4096, r.field)
	return r
}

func (r *Reader) field(f hpack.HeaderField) {
	switch strings.ToLower(f.Name) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		r.bad = true
	case "te":
		if f.Value != "trailers" {
			r.bad = true
		}
	}
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
		if flags&flagAck == 0 && len(payload)%6 == 0 {
			r.out = append(r.out, dedupeSettings(frame)...)
			return nil
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
		r.block = append(r.block[:0], frag...)
		if flags&flagEndHeaders != 0 {
			return r.endBlock(frame)
		}
	case typeContinuation:
		if len(r.block)+len(payload) > maxHeaderBlock {
			return ErrHeaderBlockTooLarge
		}
		r.block = append(r.block, payload...)
		if flags&flagEndHeaders != 0 {
			return r.endBlock(frame)
		}
	}
	r.out = append(r.out, frame...)
	return nil
}

// endBlock decodes a complete header block (keeping the HPACK state in
// step with the server's) and checks its fields.
func (r *Reader) endBlock(frame []byte) error {
	r.bad = false
	if _, err := r.dec.Write(r.block); err != nil {
		r.off = true
	} else if err := r.dec.Close(); err != nil {
		r.off = true
	}
	r.out = append(r.out, frame...)
	if r.bad && !r.off {
		return ErrMalformed
	}
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

// dedupeSettings rewrites a SETTINGS frame to name each setting once, with
// its last value, in the order of those last values.
func dedupeSettings(frame []byte) []byte {
	payload := frame[frameHeaderLen:]
	last := map[uint16]int{}
	for i := 0; i < len(payload); i += 6 {
		last[binary.BigEndian.Uint16(payload[i:])] = i
	}
	if len(last)*6 == len(payload) {
		return frame
	}
	out := append([]byte(nil), frame[:frameHeaderLen]...)
	for i := 0; i < len(payload); i += 6 {
		if last[binary.BigEndian.Uint16(payload[i:])] == i {
			out = append(out, payload[i:i+6]...)
		}
	}
	n := len(out) - frameHeaderLen
	out[0], out[1], out[2] = byte(n>>16), byte(n>>8), byte(n)
	return out
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
