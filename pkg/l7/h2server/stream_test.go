package h2server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// h2cClient is net/http's HTTP/2 client over cleartext prior knowledge:
// an implementation independent of this package.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestRequestAndResponseWithTrailers(t *testing.T) {
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		body, err := io.ReadAll(s)
		if err != nil {
			s.Reset(0x8)
			return
		}
		sum, _ := s.Trailers().Get("x-sum")
		ua, _ := s.Header.Get("user-agent")
		_ = s.WriteHead(201, message.Headers{
			{Name: []byte("X-Seen"), Value: []byte(s.Method + " " + s.Scheme + "://" + s.Authority + s.Path + " ua=" + string(ua) + " sum=" + string(sum))},
			{Name: []byte("Connection"), Value: []byte("close")}, // connection-specific: dropped
		}, false)
		_, _ = s.Write(bytes.ToUpper(body))
		_ = s.Finish(message.Headers{{Name: []byte("X-Length"), Value: []byte(strings.Repeat("9", 3))}})
	})
	req, _ := http.NewRequest("POST", "http://"+addr+"/a/b?q=1", io.NopCloser(strings.NewReader("hello")))
	req.Host = "svc.example"
	req.Header.Set("User-Agent", "test")
	req.Trailer = http.Header{"X-Sum": nil}
	req.ContentLength = -1
	req.Trailer.Set("X-Sum", "5")
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "HELLO" {
		t.Fatalf("body %q, %v", body, err)
	}
	if resp.StatusCode != 201 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d, proto %s", resp.StatusCode, resp.Proto)
	}
	if got := resp.Header.Get("X-Seen"); got != "POST http://svc.example/a/b?q=1 ua=test sum=5" {
		t.Fatalf("handler saw %q", got)
	}
	if resp.Header.Get("Connection") != "" {
		t.Fatal("a connection-specific header went out on HTTP/2")
	}
	if resp.Trailer.Get("X-Length") != "999" {
		t.Fatalf("trailers %v", resp.Trailer)
	}
}

// TestLargeBodiesBothWays moves more than every flow-control window in
// both directions at once: the handler echoes as it reads.
func TestLargeBodiesBothWays(t *testing.T) {
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		_ = s.WriteHead(200, nil, false)
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				if _, werr := s.Write(buf[:n]); werr != nil {
					return
				}
				_ = s.Flush()
			}
			if err != nil {
				return
			}
		}
	})
	const size = 24 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i * 13)
	}
	want := sha256.Sum256(src)
	resp, err := h2cClient(t).Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d of %d bytes, err %v", n, size, err)
	}
}

// TestClientResetCancelsHandler: a client that gives up resets the
// stream; the handler's context ends and the connection carries on.
func TestClientResetCancelsHandler(t *testing.T) {
	canceled := make(chan struct{})
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		if s.Path != "/slow" {
			_ = s.WriteHead(204, nil, true)
			return
		}
		_ = s.WriteHead(200, nil, false)
		_, _ = s.Write([]byte("first"))
		_ = s.Flush()
		<-s.Context().Done()
		close(canceled)
	})
	c := h2cClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/slow", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never saw the client's reset")
	}
	resp2, err := c.Get("http://" + addr + "/fast")
	if err != nil || resp2.StatusCode != 204 {
		t.Fatalf("the connection after a reset: %v", err)
	}
	resp2.Body.Close()
}

// TestConcurrencyLimit: a stream past MaxConcurrentStreams is reset
// (RFC 9113 §5.1.2) and the others are served.
func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	addr := serveLoopback(t, Config{MaxConcurrentStreams: 3}, func(s *Stream) {
		<-release
		_ = s.WriteHead(204, nil, true)
	})
	defer close(release)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fr := http2.NewFramer(nc, nc)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "x"}, {Name: ":path", Value: "/"}} {
		_ = enc.WriteField(f)
	}
	// Wait for the server's SETTINGS and ACK them, so it knows we know.
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = fr.WriteSettingsAck()
			break
		}
	}
	for id := uint32(1); id <= 7; id += 2 {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM for the fourth stream: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 7 || (rst.ErrCode != http2.ErrCodeRefusedStream && rst.ErrCode != http2.ErrCodeProtocol) {
				t.Fatalf("RST_STREAM %d %v, want stream 7 refused", rst.StreamID, rst.ErrCode)
			}
			return
		}
	}
}

// TestShutdownLetsStreamsFinish: after Shutdown (GOAWAY) the stream in
// flight completes and then the connection ends.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	started, release := make(chan struct{}), make(chan struct{})
	conns := make(chan *Conn, 1)
	served := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := NewConn(nc, Config{}, func(s *Stream) {
			close(started)
			<-release
			_ = s.WriteHead(200, nil, false)
			_, _ = s.Write([]byte("finished"))
		})
		conns <- c
		served <- c.Serve(context.Background())
	}()
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h2cClient(t).Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-started
	(<-conns).Shutdown()
	close(release)
	if r := <-done; r.err != nil || r.body != "finished" {
		t.Fatalf("stream in flight: %q, %v", r.body, r.err)
	}
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection outlived its last stream after GOAWAY")
	}
}

func TestIdleTimeoutClosesConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		served <- Serve(context.Background(), nc, Config{IdleTimeout: 200 * time.Millisecond}, func(s *Stream) {
			_ = s.WriteHead(204, nil, true)
		})
	}()
	resp, err := h2cClient(t).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle connection was not closed")
	}
}

// TestHandlerPanicResetsOnlyItsStream: a handler that panics has its
// stream reset; the connection serves the next request.
func TestHandlerPanicResetsOnlyItsStream(t *testing.T) {
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		if s.Path == "/panic" {
			_ = s.WriteHead(200, nil, false)
			_, _ = s.Write([]byte("partial"))
			_ = s.Flush()
			panic("boom")
		}
		_ = s.WriteHead(204, nil, true)
	})
	c := h2cClient(t)
	resp, err := c.Get("http://" + addr + "/panic")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a panicking handler's response read as complete")
	}
	resp, err = c.Get("http://" + addr + "/ok")
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("next request on the connection: %v", err)
	}
	resp.Body.Close()
}

// TestUnreadBodiesGiveBackTheWindow: handlers that answer without reading
// the body must not use up the connection's flow-control window (16 MiB):
// 40 MiB of unread uploads go through on one connection.
func TestUnreadBodiesGiveBackTheWindow(t *testing.T) {
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		_ = s.WriteHead(204, nil, true)
	})
	c := h2cClient(t)
	c.Timeout = 10 * time.Second
	body := bytes.Repeat([]byte("u"), 1<<20)
	for i := range 40 {
		resp, err := c.Post("http://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("upload %d: status %d", i, resp.StatusCode)
		}
	}
}

// TestLargeHeaderBlocks: a head larger than a frame goes out as HEADERS
// plus CONTINUATION frames, and one arriving that way is read whole.
func TestLargeHeaderBlocks(t *testing.T) {
	big := strings.Repeat("v", 40<<10)
	addr := serveLoopback(t, Config{}, func(s *Stream) {
		got, _ := s.Header.Get("x-big")
		_ = s.WriteHead(200, message.Headers{{Name: []byte("x-big"), Value: []byte(big)}, {Name: []byte("x-got"), Value: []byte(strconv.Itoa(len(got)))}}, true)
	})
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Big", big)
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Big") != big || resp.Header.Get("X-Got") != strconv.Itoa(len(big)) {
		t.Fatalf("header of %d bytes came back as %d; server saw %s", len(big), len(resp.Header.Get("X-Big")), resp.Header.Get("X-Got"))
	}
}

// TestStalledWindowResetsTheStream: a client that never opens its
// flow-control window loses the stream after WriteTimeout (the handler's
// Write fails), not the connection.
func TestStalledWindowResetsTheStream(t *testing.T) {
	writeErr := make(chan error, 1)
	addr := serveLoopback(t, Config{WriteTimeout: 300 * time.Millisecond}, func(s *Stream) {
		_ = s.WriteHead(200, nil, false)
		_, err := s.Write([]byte("more than a zero window allows"))
		writeErr <- err
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fr := http2.NewFramer(nc, nc)
	_, _ = io.WriteString(nc, http2.ClientPreface)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "x"}, {Name: ":path", Value: "/"}} {
		_ = enc.WriteField(f)
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = fr.WriteSettingsAck()
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeFlowControl {
				t.Fatalf("RST_STREAM %d %v", rst.StreamID, rst.ErrCode)
			}
			break
		}
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("reset after %v, before the write timeout", d)
	}
	if err := <-writeErr; err == nil {
		t.Fatal("the handler's Write succeeded on a stalled window")
	}
	// The connection itself lives on.
	_ = fr.WritePing(false, [8]byte{1})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection lost after the stream reset: %v", err)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			return
		}
	}
}
