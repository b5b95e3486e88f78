// Package h2wire holds the HTTP/2 pieces h2server and h2client share:
// header-field conversion, header blocks split into frames, and receive
// buffers with their flow-control credit.
package h2wire

import (
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// ToHeaders copies decoded fields into a header list (one allocation per
// field, so the fields' strings can go).
func ToHeaders(fields []hpack.HeaderField) message.Headers {
	hs := make(message.Headers, len(fields))
	for i, f := range fields {
		b := make([]byte, len(f.Name)+len(f.Value))
		copy(b, f.Name)
		copy(b[len(f.Name):], f.Value)
		hs[i] = message.Header{Name: b[:len(f.Name):len(f.Name)], Value: b[len(f.Name):]}
	}
	return hs
}

// AppendLower appends s in ASCII lower case: HTTP/2 field names are.
func AppendLower(dst, s []byte) []byte {
	for _, b := range s {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return dst
}

// ConnectionSpecific reports a (lower-case) field name HTTP/2 forbids
// (RFC 9113 §8.2.2); "te" is allowed with the value "trailers" only.
func ConnectionSpecific(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// WriteHeaderBlock sends an encoded header block as HEADERS and as many
// CONTINUATION frames as maxFrame requires.
func WriteHeaderBlock(fr *http2.Framer, id uint32, block []byte, endStream bool, maxFrame uint32) error {
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > int(maxFrame) {
			frag = frag[:maxFrame]
		}
		block = block[len(frag):]
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = fr.WriteContinuation(id, len(block) == 0, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// MaxWindow is the largest flow-control window RFC 9113 §6.9.1 allows.
const MaxWindow = 1<<31 - 1

// AddWindow adds n to a send window; false means it went past MaxWindow,
// a flow-control error.
func AddWindow(w *int64, n int64) bool {
	*w += n
	return *w <= MaxWindow
}

// ShiftWindows applies a change of SETTINGS_INITIAL_WINDOW_SIZE by delta to
// the send window of every open stream (RFC 9113 §6.9.2); false means one
// went past MaxWindow, a connection flow-control error.
func ShiftWindows[S any](streams map[uint32]S, window func(S) *int64, delta int64) bool {
	ok := true
	for _, s := range streams {
		ok = AddWindow(window(s), delta) && ok
	}
	return ok
}

// Credit counts bytes consumed from a receive window and not yet granted
// back, so WINDOW_UPDATEs go out in batches rather than per read.
type Credit struct {
	unacked int64
}

// Consume adds n consumed bytes and returns how many to grant now: all of
// them once they reach threshold, else 0.
func (c *Credit) Consume(n, threshold int64) int64 {
	c.unacked += n
	if c.unacked < threshold {
		return 0
	}
	n, c.unacked = c.unacked, 0
	return n
}

// WriteGrants sends the WINDOW_UPDATEs that are due: connGrant for the
// connection, streamGrant for stream id (zeros send nothing).
func WriteGrants(fr *http2.Framer, connGrant int64, id uint32, streamGrant int64) error {
	if connGrant > 0 {
		if err := fr.WriteWindowUpdate(0, uint32(connGrant)); err != nil {
			return err
		}
	}
	if streamGrant > 0 {
		return fr.WriteWindowUpdate(id, uint32(streamGrant))
	}
	return nil
}

// Wake signals a reader's one-slot wake-up channel without blocking: a
// wake-up already pending covers this one too.
func Wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// RecvBuffer holds a stream's received DATA until it is read.
type RecvBuffer struct {
	buf []byte
	off int
}

// Len is how many bytes are waiting.
func (b *RecvBuffer) Len() int { return len(b.buf) - b.off }

// Append stores data (copied: the framer reuses its buffers).
func (b *RecvBuffer) Append(data []byte) { b.buf = append(b.buf, data...) }

// Read moves waiting bytes to p.
func (b *RecvBuffer) Read(p []byte) int {
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	return n
}

// Discard drops what is waiting and says how much that was.
func (b *RecvBuffer) Discard() int {
	n := b.Len()
	b.buf, b.off = nil, 0
	return n
}
