package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

func newChunked(s string, bufSize int) *ChunkedReader {
	c := new(ChunkedReader)
	c.Reset(bufio.NewReaderSize(strings.NewReader(s), bufSize), 1024)
	return c
}

func hdrs(kv ...string) message.Headers {
	var hs message.Headers
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, message.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func headersString(hs message.Headers) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(string(h.Name) + ": " + string(h.Value) + "\n")
	}
	return b.String()
}

func TestWriteChunkFormat(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	for _, p := range [][]byte{[]byte("hello"), nil, {}, bytes.Repeat([]byte("x"), 26), bytes.Repeat([]byte("y"), 256)} {
		if err := WriteChunk(bw, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteLastChunk(bw, hdrs("X-Sum", "abc", "X-Empty", "")); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	want := "5\r\nhello\r\n" +
		"1a\r\n" + strings.Repeat("x", 26) + "\r\n" +
		"100\r\n" + strings.Repeat("y", 256) + "\r\n" +
		"0\r\nX-Sum: abc\r\nX-Empty: \r\n\r\n"
	if buf.String() != want {
		t.Fatalf("wire bytes\n got %q\nwant %q", buf.String(), want)
	}

	buf.Reset()
	bw.Reset(&buf)
	WriteLastChunk(bw, nil)
	bw.Flush()
	if buf.String() != "0\r\n\r\n" {
		t.Fatalf("last chunk without trailers = %q", buf.String())
	}
}

func TestChunkedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 15, 16, 17, 255, 256, 4095, 4096, 4097, 70000}
	var chunks [][]byte
	var all []byte
	for _, n := range sizes {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.IntN(256)) // includes CR, LF and NUL bytes
		}
		chunks = append(chunks, p)
		all = append(all, p...)
	}
	trailers := hdrs("X-Checksum", "sha256=abc", "X-Count", "10", "x-lower", "v")

	var wireBuf bytes.Buffer
	bw := bufio.NewWriter(&wireBuf)
	for _, p := range chunks {
		if err := WriteChunk(bw, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteLastChunk(bw, trailers); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	encoded := wireBuf.Bytes()
	const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

	readers := map[string]func(r io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"one-byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	}
	for name, wrap := range readers {
		// Trailer and chunk-size lines must fit the bufio buffer (the
		// proxy uses 16 KiB), so the smallest size here is 64.
		for _, bufSize := range []int{64, 4096, 65536} {
			br := bufio.NewReaderSize(wrap(bytes.NewReader(append(append([]byte{}, encoded...), next...))), bufSize)
			var c ChunkedReader
			c.Reset(br, 1024)
			if c.Done() || c.Trailers() != nil {
				t.Fatal("Done/Trailers before reading")
			}
			got, err := io.ReadAll(&c)
			if err != nil {
				t.Fatalf("%s/%d: %v", name, bufSize, err)
			}
			if !bytes.Equal(got, all) {
				t.Fatalf("%s/%d: body mismatch (%d bytes, want %d)", name, bufSize, len(got), len(all))
			}
			if !c.Done() {
				t.Fatalf("%s/%d: Done() false after EOF", name, bufSize)
			}
			if g, w := headersString(c.Trailers()), headersString(trailers); g != w {
				t.Fatalf("%s/%d: trailers\n got %q\nwant %q", name, bufSize, g, w)
			}
			// Repeated reads keep returning EOF.
			if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("read after EOF = %d, %v", n, err)
			}
			// The reader must stop exactly at the end of the body.
			var h RequestHead
			if err := ReadRequestHead(br, &h, testMaxHead); err != nil || string(h.Target) != "/next" {
				t.Fatalf("%s/%d: next request: %v %q", name, bufSize, err, h.Target)
			}
		}
	}
}

func TestChunkedSmallReads(t *testing.T) {
	c := newChunked("3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", 4096)
	var got []byte
	p := make([]byte, 1)
	for {
		n, err := c.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Done() {
			t.Fatal("Done() before EOF")
		}
	}
	if string(got) != "abcdefg" || !c.Done() || len(c.Trailers()) != 0 {
		t.Fatalf("got %q done=%v trailers=%v", got, c.Done(), c.Trailers())
	}
}

func TestChunkedValidForms(t *testing.T) {
	tests := []struct {
		name, in, body, trailers string
	}{
		{"extensions ignored", "5;name=value\r\nhello\r\n6 ; a=\"b c\";d\r\n world\r\n0;last\r\n\r\n", "hello world", ""},
		{"extension after tab", "5\t;x\r\nhello\r\n0\r\n\r\n", "hello", ""},
		{"upper and lower hex", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", ""},
		{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", ""},
		{"bare LF lines", "5\nhello\n0\nX-T: 1\n\n", "hello", "X-T: 1\n"},
		{"empty body", "0\r\n\r\n", "", ""},
		{"trailers with OWS", "1\r\nx\r\n0\r\nX-A:  one \r\nx-b:two\r\n\r\n", "x", "X-A: one\nx-b: two\n"},
		{"15 hex digits", "00000000000000a\r\n0123456789\r\n0\r\n\r\n", "0123456789", ""},
	}
	for _, tt := range tests {
		for _, size := range []int{32, 4096} {
			c := newChunked(tt.in, size)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("%s/%d: %v", tt.name, size, err)
				continue
			}
			if string(got) != tt.body || headersString(c.Trailers()) != tt.trailers || !c.Done() {
				t.Errorf("%s/%d: body %q trailers %q done %v", tt.name, size, got, headersString(c.Trailers()), c.Done())
			}
		}
	}
}

func TestChunkedMalformed(t *testing.T) {
	longExt := "5;" + strings.Repeat("e", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n"
	tests := []struct {
		name string
		in   string
		buf  int
		want int // ParseError status; 0 means ErrBodyTruncated
	}{
		{"non-hex size", "zz\r\n", 4096, 400},
		{"negative size", "-1\r\nx\r\n0\r\n\r\n", 4096, 400},
		{"plus sign", "+1\r\nx\r\n0\r\n\r\n", 4096, 400},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"empty size line", "\r\nhello\r\n", 4096, 400},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"junk after size", "5x\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"16 hex digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"overflowing size", "ffffffffffffffffff\r\n", 4096, 400},
		{"size line too long", longExt, 8192, 400},
		{"size line longer than buffer", longExt, 4096, 400},
		{"control char in extension", "5;a\x00b\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"DEL in extension", "5;a\x7f\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"bare CR in size line", "5\rhello\r\n0\r\n\r\n", 4096, 400},
		{"CR CR LF after size", "5\r\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"missing CRLF after data", "5\r\nhelloXX\r\n0\r\n\r\n", 4096, 400},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n", 4096, 400},
		{"CR without LF after data", "5\r\nhello\r0\r\n\r\n", 4096, 400},
		{"malformed trailer", "0\r\nX-A b\r\n\r\n", 4096, 400},
		{"trailer obs-fold", "0\r\nX-A: b\r\n c\r\n\r\n", 4096, 400},
		{"trailer bad value", "0\r\nX-A: \x01\r\n\r\n", 4096, 400},
		{"trailers too large", "0\r\n" + strings.Repeat("X-Filler: 0123456789\r\n", 100) + "\r\n", 4096, 400},
		{"truncated in data", "5\r\nhel", 4096, 0},
		{"truncated before data CRLF", "5\r\nhello", 4096, 0},
		{"truncated after data CR", "5\r\nhello\r", 4096, 0},
		{"truncated before next size", "5\r\nhello\r\n", 4096, 0},
		{"truncated in size line", "5\r\nhello\r\n1", 4096, 0},
		{"empty input", "", 4096, 0},
		{"truncated before trailers end", "5\r\nhello\r\n0\r\n", 4096, 0},
		{"truncated in trailer", "5\r\nhello\r\n0\r\nX-A: b\r\n", 4096, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChunked(tt.in, tt.buf)
			_, err := io.ReadAll(c)
			switch {
			case err == nil:
				t.Fatalf("no error, want %d", tt.want)
			case tt.want == 0 && err != ErrBodyTruncated:
				t.Fatalf("err = %v, want ErrBodyTruncated", err)
			case tt.want != 0 && statusOf(err) != tt.want:
				t.Fatalf("err = %v, want ParseError %d", err, tt.want)
			}
			if c.Done() || c.Trailers() != nil {
				t.Fatal("Done/Trailers after an error")
			}
			// The error is sticky.
			if _, err2 := c.Read(make([]byte, 8)); err2 != err {
				t.Fatalf("second read err = %v, want %v", err2, err)
			}
		})
	}
}

func TestChunkedResetReuse(t *testing.T) {
	var c ChunkedReader
	c.Reset(bufio.NewReader(strings.NewReader("3\r\nabc\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n")), 1024)
	if b, err := io.ReadAll(&c); err != nil || string(b) != "abc" {
		t.Fatalf("%q %v", b, err)
	}
	first := c.Trailers()
	if len(first) != 2 {
		t.Fatalf("trailers %v", first)
	}
	c.Reset(bufio.NewReader(strings.NewReader("2\r\nde\r\n0\r\nY: y\r\n\r\n")), 1024)
	if c.Done() || c.Trailers() != nil {
		t.Fatal("Reset must clear state")
	}
	if b, err := io.ReadAll(&c); err != nil || string(b) != "de" {
		t.Fatalf("%q %v", b, err)
	}
	if got := headersString(c.Trailers()); got != "Y: y\n" {
		t.Fatalf("trailers after reuse %q", got)
	}
	// A previous error does not survive Reset either.
	c.Reset(bufio.NewReader(strings.NewReader("zz\r\n")), 1024)
	if _, err := io.ReadAll(&c); statusOf(err) != 400 {
		t.Fatal(err)
	}
	c.Reset(bufio.NewReader(strings.NewReader("0\r\n\r\n")), 1024)
	if b, err := io.ReadAll(&c); err != nil || len(b) != 0 || !c.Done() {
		t.Fatalf("%q %v", b, err)
	}
}

func TestChunkedDefaultTrailerLimit(t *testing.T) {
	// maxTrailer <= 0 means a 16 KiB default.
	var c ChunkedReader
	ok := "0\r\n" + strings.Repeat("X-Filler: 0123456789\r\n", 500) + "\r\n" // ~10 KiB
	c.Reset(bufio.NewReader(strings.NewReader(ok)), 0)
	if _, err := io.ReadAll(&c); err != nil {
		t.Fatalf("10 KiB trailers with default limit: %v", err)
	}
	tooBig := "0\r\n" + strings.Repeat("X-Filler: 0123456789\r\n", 1000) + "\r\n" // ~20 KiB
	c.Reset(bufio.NewReader(strings.NewReader(tooBig)), 0)
	if _, err := io.ReadAll(&c); statusOf(err) != 400 {
		t.Fatalf("20 KiB trailers with default limit: %v", err)
	}
}

func TestLengthReader(t *testing.T) {
	t.Run("exact", func(t *testing.T) {
		br := bufio.NewReader(strings.NewReader("helloNEXT"))
		l := &LengthReader{R: br, N: 5}
		if l.Buffered() != 0 {
			t.Errorf("Buffered before any read = %d", l.Buffered())
		}
		got, err := io.ReadAll(l)
		if err != nil || string(got) != "hello" {
			t.Fatalf("%q %v", got, err)
		}
		if n, err := l.Read(make([]byte, 4)); n != 0 || err != io.EOF {
			t.Fatalf("after end: %d %v", n, err)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != "NEXT" {
			t.Fatalf("over-read: rest %q", rest)
		}
	})
	t.Run("eof with last bytes", func(t *testing.T) {
		l := &LengthReader{R: bufio.NewReader(strings.NewReader("abc")), N: 3}
		n, err := l.Read(make([]byte, 10))
		if n != 3 || (err != nil && err != io.EOF) {
			t.Fatalf("%d %v", n, err)
		}
		if n, err := l.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("%d %v", n, err)
		}
	})
	t.Run("short", func(t *testing.T) {
		l := &LengthReader{R: bufio.NewReader(strings.NewReader("hello")), N: 10}
		got, err := io.ReadAll(l)
		if !errors.Is(err, ErrBodyTruncated) || string(got) != "hello" {
			t.Fatalf("%q %v, want ErrBodyTruncated", got, err)
		}
	})
	t.Run("zero", func(t *testing.T) {
		l := &LengthReader{R: bufio.NewReader(strings.NewReader("x")), N: 0}
		if n, err := l.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("%d %v", n, err)
		}
	})
	t.Run("one byte at a time", func(t *testing.T) {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(strings.Repeat("z", 100)+"tail")), 16)
		got, err := io.ReadAll(&LengthReader{R: br, N: 100})
		if err != nil || string(got) != strings.Repeat("z", 100) {
			t.Fatalf("%d bytes, %v", len(got), err)
		}
	})
	t.Run("buffered", func(t *testing.T) {
		br := bufio.NewReader(strings.NewReader("0123456789"))
		br.Peek(10)
		if got := (&LengthReader{R: br, N: 4}).Buffered(); got != 4 {
			t.Errorf("Buffered capped at N: %d", got)
		}
		if got := (&LengthReader{R: br, N: 40}).Buffered(); got != 10 {
			t.Errorf("Buffered = %d, want 10", got)
		}
	})
}
