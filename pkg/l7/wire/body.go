package wire

import (
	"bufio"
	"errors"
	"io"
	"strconv"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// ErrBodyTruncated is a body that ended before its declared length.
var ErrBodyTruncated = errors.New("http/1.1: body ended early")

// LengthReader reads exactly N bytes of a Content-Length body.
type LengthReader struct {
	R *bufio.Reader
	N int64
}

func (l *LengthReader) Read(p []byte) (int, error) {
	if l.N <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.N {
		p = p[:l.N]
	}
	n, err := l.R.Read(p)
	l.N -= int64(n)
	if err == io.EOF {
		if l.N > 0 {
			return n, ErrBodyTruncated
		}
	}
	if l.N == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// Buffered returns how much of the remaining body is already in memory.
func (l *LengthReader) Buffered() int {
	b := int64(l.R.Buffered())
	if b > l.N {
		b = l.N
	}
	return int(b)
}

// maxChunkLine bounds a chunk-size line including extensions.
const maxChunkLine = 4096

// ChunkedReader decodes a chunked body (RFC 9112 §7.1) strictly; trailers
// are collected and available after EOF.
type ChunkedReader struct {
	R        *bufio.Reader
	left     int64
	err      error
	trailers message.Headers
	raw      []byte
	offs     []int
	maxHead  int
	sawFinal bool
}

// Reset prepares c to read a new body from r.
func (c *ChunkedReader) Reset(r *bufio.Reader, maxTrailer int) {
	*c = ChunkedReader{R: r, raw: c.raw[:0], offs: c.offs[:0], trailers: c.trailers[:0], maxHead: maxTrailer}
}

func (c *ChunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		if c.sawFinal {
			c.err = io.EOF
			return 0, io.EOF
		}
		if err := c.nextChunk(); err != nil {
			c.err = err
			return 0, err
		}
		if c.sawFinal {
			c.err = io.EOF
			return 0, io.EOF
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.R.Read(p)
	c.left -= int64(n)
	if err == io.EOF {
		err = ErrBodyTruncated
	}
	if err == nil && c.left == 0 {
		err = c.readCRLF()
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *ChunkedReader) readCRLF() error {
	b, err := c.R.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			return ErrBodyTruncated
		}
		return err
	}
	if !(len(b) == 2 && b[0] == '\r') && len(b) != 1 {
		return perr(400, "malformed chunk terminator")
	}
	return nil
}

func (c *ChunkedReader) nextChunk() error {
	line, err := c.R.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			return ErrBodyTruncated
		}
		if err == bufio.ErrBufferFull {
			return perr(400, "malformed chunk size line")
		}
		return err
	}
	if len(line) > maxChunkLine {
		return perr(400, "chunk size line too long")
	}
	var size int64
	digits := 0
	i := 0
	for ; i < len(line); i++ {
		ch := line[i]
		var v byte
		switch {
		case ch >= '0' && ch <= '9':
			v = ch - '0'
		case ch >= 'a' && ch <= 'f':
			v = ch - 'a' + 10
		case ch >= 'A' && ch <= 'F':
			v = ch - 'A' + 10
		default:
			goto end
		}
		digits++
		if digits > 15 {
			return perr(400, "chunk size too large")
		}
		size = size<<4 | int64(v)
	}
end:
	if digits == 0 {
		return perr(400, "malformed chunk size")
	}
	// Chunk extensions are ignored but must not hide control characters.
	rest := line[i:]
	for j, ch := range rest {
		if ch == '\r' && j == len(rest)-2 || ch == '\n' && j == len(rest)-1 {
			continue
		}
		if ch < 0x20 && ch != '\t' || ch == 0x7f {
			return perr(400, "malformed chunk extension")
		}
		if j == 0 && ch != ';' && ch != ' ' && ch != '\t' {
			return perr(400, "malformed chunk size")
		}
	}
	if size == 0 {
		c.sawFinal = true
		return c.readTrailers()
	}
	c.left = size
	return nil
}

func (c *ChunkedReader) readTrailers() error {
	max := c.maxHead
	if max <= 0 {
		max = 16 << 10
	}
	// Trailers look like a head without a start line: prepend a dummy one.
	var err error
	c.raw, c.offs, err = readTrailerBlock(c.R, c.raw, c.offs, max)
	if err != nil {
		return err
	}
	var f framing
	c.trailers = c.trailers[:0]
	return parseFields(c.raw, c.offs, &c.trailers, &f, nil)
}

func readTrailerBlock(br *bufio.Reader, raw []byte, offs []int, max int) ([]byte, []int, error) {
	raw = append(raw[:0], '-', '\n')
	offs = append(offs[:0], 1)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				return raw, offs, ErrBodyTruncated
			}
			return raw, offs, perr(400, "malformed trailer")
		}
		if len(raw)+len(line) > max {
			return raw, offs, perr(400, "trailers too large")
		}
		end := len(line) - 1
		if end > 0 && line[end-1] == '\r' {
			end--
		}
		if end == 0 {
			return raw, offs, nil
		}
		raw = append(raw, line[:end]...)
		offs = append(offs, len(raw))
		raw = append(raw, '\n')
	}
}

// Done reports whether the whole body, trailers included, has been read.
func (c *ChunkedReader) Done() bool { return c.err == io.EOF }

// Trailers returns the trailer fields once Read has returned io.EOF.
func (c *ChunkedReader) Trailers() message.Headers {
	if c.err != io.EOF {
		return nil
	}
	return c.trailers
}

// WriteChunk writes one chunk; empty p writes nothing (the last chunk is
// written by WriteLastChunk).
func WriteChunk(w *bufio.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	// Format into the writer's own buffer: a stack array would escape.
	w.Write(strconv.AppendUint(w.AvailableBuffer(), uint64(len(p)), 16))
	w.WriteString("\r\n")
	w.Write(p)
	_, err := w.WriteString("\r\n")
	return err
}

// WriteLastChunk ends a chunked body, with optional trailers.
func WriteLastChunk(w *bufio.Writer, trailers message.Headers) error {
	w.WriteString("0\r\n")
	for _, t := range trailers {
		w.Write(t.Name)
		w.WriteString(": ")
		w.Write(t.Value)
		w.WriteString("\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}
