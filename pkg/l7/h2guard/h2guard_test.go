package h2guard

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// conn builds a client stream: the preface, then frames written by
// x/net/http2's Framer.
func conn(t *testing.T, write func(f *http2.Framer, enc func(...string) []byte)) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	f := http2.NewFramer(&buf, nil)
	var hb bytes.Buffer
	he := hpack.NewEncoder(&hb)
	enc := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i < len(kv); i += 2 {
			_ = he.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	write(f, enc)
	return buf.Bytes()
}

// readAll reads through the guard in small pieces, as a server would.
func readAll(src []byte) ([]byte, error) {
	r := NewReader(bytes.NewReader(src))
	var out []byte
	p := make([]byte, 7)
	for {
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
	}
}

var req = []string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", "a"}

func TestPassesValidTrafficUnchanged(t *testing.T) {
	in := conn(t, func(f *http2.Framer, enc func(...string) []byte) {
		_ = f.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		block := enc(append(req, "te", "trailers", "content-type", "application/grpc")...)
		// Split across HEADERS + CONTINUATION, with padding and priority.
		_ = f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3], PadLength: 4,
			Priority: http2.PriorityParam{Weight: 15}})
		_ = f.WriteContinuation(1, true, block[3:])
		_ = f.WriteData(1, true, bytes.Repeat([]byte("x"), 40000))
		// The dynamic table carries over to the next block.
		_ = f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(req...), EndHeaders: true, EndStream: true})
	})
	out, err := readAll(in)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("changed valid traffic: err %v, %d bytes in, %d out", err, len(in), len(out))
	}
}

// The RFC 9113 rules are the server's (h2server's h2spec run covers
// them): malformed requests, duplicate settings and undecodable header
// blocks pass through unchanged.
func TestLeavesProtocolRulesToTheServer(t *testing.T) {
	in := conn(t, func(f *http2.Framer, enc func(...string) []byte) {
		_ = f.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 200})
		_ = f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(append(req, "connection", "keep-alive")...), EndHeaders: true})
		_ = f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
	})
	out, err := readAll(in)
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("err %v, %d bytes in, %d out: the guard must not judge protocol rules", err, len(in), len(out))
	}
}

// A client that cancels some of its streams keeps its connection; one
// that resets more than half of at least 100 streams loses it.
func TestRapidReset(t *testing.T) {
	run := func(streams, resets int) error {
		var buf bytes.Buffer
		buf.WriteString(http2.ClientPreface)
		fr := http2.NewFramer(&buf, nil)
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
		for i := range streams {
			id := uint32(2*i + 1)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
			if i < resets {
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}
		_, err := io.Copy(io.Discard, NewReader(&buf))
		return err
	}
	if err := run(200, 90); err != nil {
		t.Fatalf("45%% of streams cancelled: %v", err)
	}
	if err := run(60, 60); err != nil {
		t.Fatalf("a short connection that cancels everything: %v", err)
	}
	if err := run(200, 150); !errors.Is(err, ErrRapidReset) {
		t.Fatalf("75%% of 200 streams reset: %v, want ErrRapidReset", err)
	}
}

func TestContinuationFlood(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}})
	for range 100 {
		fr.WriteContinuation(1, false, bytes.Repeat([]byte{0x40}, 16<<10))
	}
	if _, err := io.Copy(io.Discard, NewReader(&buf)); !errors.Is(err, ErrHeaderBlockTooLarge) {
		t.Fatalf("1.6 MiB of CONTINUATION: %v, want ErrHeaderBlockTooLarge", err)
	}
}

func TestSettingsFlood(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	for range 1000 {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	}
	if _, err := io.Copy(io.Discard, NewReader(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatalf("1000 SETTINGS: %v", err)
	}
	fr.WriteSettings()
	if _, err := io.Copy(io.Discard, NewReader(&buf)); !errors.Is(err, ErrSettingsFlood) {
		t.Fatalf("1001 SETTINGS: %v, want ErrSettingsFlood", err)
	}
}

func TestPingFlood(t *testing.T) {
	frames := func(n int) io.Reader {
		var buf bytes.Buffer
		buf.WriteString(http2.ClientPreface)
		fr := http2.NewFramer(&buf, nil)
		for range n {
			fr.WritePing(false, [8]byte{1})
		}
		fr.WritePing(true, [8]byte{2}) // ACKs are not counted
		return &buf
	}
	if _, err := io.Copy(io.Discard, NewReader(frames(pingBurst))); err != nil {
		t.Fatalf("a burst of %d PINGs: %v", pingBurst, err)
	}
	if _, err := io.Copy(io.Discard, NewReader(frames(2*pingBurst))); !errors.Is(err, ErrPingFlood) {
		t.Fatalf("%d PINGs at once: %v, want ErrPingFlood", 2*pingBurst, err)
	}
	var r Reader
	now := time.Unix(1000, 0)
	for i := range 60000 { // 1000 per second for a minute, after a full burst
		if !r.allowPing(now.Add(time.Duration(i) * time.Millisecond)) {
			t.Fatalf("PING %d at 1000/s refused", i)
		}
	}
}
