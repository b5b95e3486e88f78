package h2client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// startH2C serves h on a loopback h2c (prior knowledge) server: net/http's
// own HTTP/2 server, an implementation independent of this package.
func startH2C(t *testing.T, h http.Handler, maxStreams int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxStreams}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func newTestPool(t *testing.T, opts Options) *Pool {
	t.Helper()
	var d net.Dialer
	p := NewPool(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, opts)
	t.Cleanup(p.Close)
	return p
}

func get(path string) *Request {
	return &Request{Method: []byte("GET"), Scheme: []byte("http"), Authority: []byte("upstream.test"), Path: []byte(path)}
}

func TestRequestHeadBodyAndTrailers(t *testing.T) {
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Seen", r.Method+" "+r.Host+" "+r.URL.RequestURI()+" te="+r.Header.Get("Te")+" h="+r.Header.Get("X-Mixed-Case"))
		w.WriteHeader(201)
		_, _ = w.Write(bytes.ToUpper(body))
		w.Header().Set("X-Sum", "done")
	}), 0)
	p := newTestPool(t, Options{})
	req := &Request{
		Method: []byte("POST"), Scheme: []byte("http"), Authority: []byte("svc.example"), Path: []byte("/a/b?q=1"),
		Header: message.Headers{
			{Name: []byte("X-Mixed-Case"), Value: []byte("v")},
			{Name: []byte("Connection"), Value: []byte("close")}, // connection-specific: never sent
		},
		ContentLength: 5, TETrailers: true, Body: strings.NewReader("hello"),
	}
	s, err := p.RoundTrip(context.Background(), addr, req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Status != 201 {
		t.Fatalf("status %d", s.Status)
	}
	seen, _ := s.Header.Get("x-seen")
	if string(seen) != "POST svc.example /a/b?q=1 te=trailers h=v" {
		t.Fatalf("server saw %q", seen)
	}
	body, err := io.ReadAll(s)
	if err != nil || string(body) != "HELLO" {
		t.Fatalf("body %q, %v", body, err)
	}
	if v, _ := s.Trailers().Get("x-sum"); string(v) != "done" {
		t.Fatalf("trailers %v", s.Trailers())
	}
	if !s.Pending() {
		t.Fatal("an ended stream must report its next Read as not waiting")
	}
}

// TestLargeBodiesBothWays moves more than every flow-control window in
// both directions at once: the server echoes as it reads.
func TestLargeBodiesBothWays(t *testing.T) {
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.Copy(w, r.Body)
	}), 0)
	p := newTestPool(t, Options{})
	const size = 24 << 20
	src := make([]byte, size)
	for i := range src {
		src[i] = byte(i * 7)
	}
	want := sha256.Sum256(src)
	req := get("/echo")
	req.Method, req.Body = []byte("POST"), bytes.NewReader(src)
	s, err := p.RoundTrip(context.Background(), addr, req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := sha256.New()
	n, err := io.Copy(h, s)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes (want %d), err %v, digest match %v", n, size, err, bytes.Equal(h.Sum(nil), want[:]))
	}
}

// TestStreamLimitOpensMoreConnections: past the server's
// MAX_CONCURRENT_STREAMS the pool dials, instead of being refused.
func TestStreamLimitOpensMoreConnections(t *testing.T) {
	var inflight, peak atomic.Int32
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		inflight.Add(-1)
		_, _ = io.WriteString(w, "ok")
	}), 4)
	p := newTestPool(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			s, err := p.RoundTrip(context.Background(), addr, get("/"))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if b, err := io.ReadAll(s); err != nil || string(b) != "ok" {
				errs <- errors.New("bad body " + string(b))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := p.Conns(); c < 8 {
		t.Fatalf("32 concurrent streams at 4 per connection used %d connections", c)
	}
	if peak.Load() < 16 {
		t.Fatalf("only %d requests ran at once", peak.Load())
	}
}

// TestCancelResetsStream: a caller that gives up resets the stream, and
// the server's handler sees its request end.
func TestCancelResetsStream(t *testing.T) {
	ended := make(chan struct{})
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			return
		}
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(ended)
	}), 0)
	p := newTestPool(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := p.RoundTrip(ctx, addr, get("/stream"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := s.Read(buf); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read after cancel: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the stream reset")
	}
	s.Close()
	// The connection stays usable for other streams.
	s2, err := p.RoundTrip(context.Background(), addr, get("/again"))
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if p.Conns() != 1 {
		t.Fatalf("%d connections", p.Conns())
	}
}

// TestServerAbortIsNotEOF: a response the server cuts off with RST_STREAM
// must not read as complete.
func TestServerAbortIsNotEOF(t *testing.T) {
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), 0)
	p := newTestPool(t, Options{})
	s, err := p.RoundTrip(context.Background(), addr, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, err := io.ReadAll(s)
	var se http2.StreamError
	if !errors.As(err, &se) || string(b) != "partial" {
		t.Fatalf("read %q, err %v; want the partial body then a stream error", b, err)
	}
}

// TestGracefulShutdownFinishesStreamsInFlight: GOAWAY lets the stream in
// flight finish; the connection then goes away from the pool.
func TestGracefulShutdownFinishesStreamsInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "finished")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	p := newTestPool(t, Options{})
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := p.RoundTrip(context.Background(), ln.Addr().String(), get("/"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer s.Close()
		b, err := io.ReadAll(s)
		done <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // until the GOAWAY has been read
	}
	if p.Conns() != 0 {
		t.Fatal("a connection that got GOAWAY is still offered for new streams")
	}
	close(release)
	if r := <-done; r.err != nil || r.body != "finished" {
		t.Fatalf("stream in flight: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestIdleConnectionsAreSwept(t *testing.T) {
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // open until the client resets it
	}), 0)
	p := newTestPool(t, Options{IdleTimeout: time.Minute})
	s, err := p.RoundTrip(context.Background(), addr, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	p.Sweep(time.Now().Add(2 * time.Minute))
	if p.Conns() != 1 {
		t.Fatal("a connection with a stream open was swept")
	}
	s.Close()
	p.Sweep(time.Now().Add(30 * time.Second))
	if p.Conns() != 1 {
		t.Fatal("swept before the idle timeout")
	}
	p.Sweep(time.Now().Add(2 * time.Minute))
	if p.Conns() != 0 {
		t.Fatal("an idle connection outlived its idle timeout")
	}
}

// rawServer accepts one connection, answers the preface with SETTINGS and
// then runs fn with a framer on it.
func rawServer(t *testing.T, fn func(fr *http2.Framer, dec *hpack.Decoder)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil {
			return
		}
		fr := http2.NewFramer(nc, br)
		if fr.WriteSettings() != nil {
			return
		}
		fn(fr, hpack.NewDecoder(4096, nil))
	}()
	return ln.Addr().String()
}

// readHeaders returns the stream ID of the next request HEADERS.
func readHeaders(fr *http2.Framer) (uint32, error) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, err
		}
		if h, ok := f.(*http2.HeadersFrame); ok {
			return h.StreamID, nil
		}
	}
}

// TestSilentPeerIsDetected: a server that stops answering (not even PING)
// is closed by the sweeper and its streams fail instead of hanging.
func TestSilentPeerIsDetected(t *testing.T) {
	addr := rawServer(t, func(fr *http2.Framer, _ *hpack.Decoder) {
		_, _ = readHeaders(fr)
		_, _ = io.Copy(io.Discard, struct{ io.Reader }{readerOf(fr)}) // read, never answer
	})
	p := newTestPool(t, Options{PingAfter: time.Minute, PingTimeout: 10 * time.Second})
	errc := make(chan error, 1)
	go func() {
		_, err := p.RoundTrip(context.Background(), addr, get("/"))
		errc <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	now := time.Now()
	p.Sweep(now)                       // notes the frames read so far
	p.Sweep(now.Add(61 * time.Second)) // quiet past PingAfter: PING
	select {
	case err := <-errc:
		t.Fatalf("RoundTrip ended before the PING timed out: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.Sweep(now.Add(72 * time.Second)) // no answer within PingTimeout
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "PING") {
			t.Fatalf("RoundTrip: %v, want the PING timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream on a silent connection still hangs")
	}
	if p.Conns() != 0 {
		t.Fatal("the dead connection is still pooled")
	}
}

// readerOf keeps reading frames (and so the socket) until the connection
// ends.
func readerOf(fr *http2.Framer) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if _, err := fr.ReadFrame(); err != nil {
			return 0, err
		}
		return 0, nil
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestMalformedResponsesFailTheirStreamOnly: a bad :status or DATA before
// HEADERS fails that stream with an error; the connection keeps serving.
func TestMalformedResponsesFailTheirStreamOnly(t *testing.T) {
	addr := rawServer(t, func(fr *http2.Framer, _ *hpack.Decoder) {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		head := func(id uint32, status string, end bool) {
			hb.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: end})
		}
		id, err := readHeaders(fr)
		if err != nil {
			return
		}
		head(id, "2OO", true) // not a number
		if id, err = readHeaders(fr); err != nil {
			return
		}
		_ = fr.WriteData(id, true, []byte("no head")) // DATA before HEADERS
		if id, err = readHeaders(fr); err != nil {
			return
		}
		head(id, "204", true)
		_, _ = io.Copy(io.Discard, struct{ io.Reader }{readerOf(fr)})
	})
	p := newTestPool(t, Options{})
	for i, want := range []string{"bad :status", "DATA outside"} {
		_, err := p.RoundTrip(context.Background(), addr, get("/"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("request %d: %v, want an error about %s", i, err, want)
		}
	}
	s, err := p.RoundTrip(context.Background(), addr, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s.Status != 204 {
		t.Fatalf("status %d", s.Status)
	}
}

// closeTracker is a request body that never delivers data and records
// being closed.
type closeTracker struct {
	io.Reader
	closed chan struct{}
	once   sync.Once
}

func (c *closeTracker) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestEarlyResponseStopsTheBody: a server that answers before the request
// body ends; closing the stream resets it and lets go of the body.
func TestEarlyResponseStopsTheBody(t *testing.T) {
	reset := make(chan struct{})
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.(http.Flusher).Flush()
		_, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			close(reset)
		}
	}), 0)
	p := newTestPool(t, Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	body := &closeTracker{Reader: pr, closed: make(chan struct{})}
	req := get("/upload")
	req.Method, req.Body = []byte("PUT"), body
	s, err := p.RoundTrip(context.Background(), addr, req)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != 404 {
		t.Fatalf("status %d", s.Status)
	}
	s.Close()
	select {
	case <-body.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the request body was not closed after the stream ended")
	}
	select {
	case <-reset:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the request end abnormally")
	}
}

// TestDialFailureClosesBody: when no connection can be had, RoundTrip
// fails and the body is released all the same.
func TestDialFailureClosesBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	p := newTestPool(t, Options{})
	body := &closeTracker{Reader: strings.NewReader("x"), closed: make(chan struct{})}
	req := get("/")
	req.Method, req.Body = []byte("POST"), body
	if _, err := p.RoundTrip(context.Background(), addr, req); err == nil {
		t.Fatal("RoundTrip to a closed port succeeded")
	}
	select {
	case <-body.closed:
	default:
		t.Fatal("the body of a request that never got a stream was not closed")
	}
}

func TestDrainAddrTakesNoNewStreams(t *testing.T) {
	addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}), 0)
	p := newTestPool(t, Options{})
	s, err := p.RoundTrip(context.Background(), addr, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	p.DrainAddr(addr)
	if p.Conns() != 0 {
		t.Fatal("a drained connection is still offered")
	}
	// The stream in flight still works; a new request dials afresh.
	s2, err := p.RoundTrip(context.Background(), addr, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Conns() != 1 {
		t.Fatalf("%d connections after a new request", p.Conns())
	}
	s.Close()
	s2.Close()
}

// BenchmarkUnary compares a gRPC-shaped exchange (POST with a 100-byte
// body, 100-byte response, trailers) through this client and through
// net/http's HTTP/2 Transport, against the same net/http h2c server, with
// many calls in flight on one connection.
func BenchmarkUnary(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(payload)
		w.Header().Set("Grpc-Status", "0")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	addr := ln.Addr().String()
	read := func(b *testing.B, r io.Reader) {
		if n, err := io.Copy(io.Discard, r); err != nil || n != 100 {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
	b.Run("h2client", func(b *testing.B) {
		var d net.Dialer
		p := NewPool(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }, Options{})
		defer p.Close()
		b.SetParallelism(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := &Request{Method: []byte("POST"), Scheme: []byte("http"), Authority: []byte("bench"), Path: []byte("/svc/Method"),
					Header: message.Headers{{Name: []byte("content-type"), Value: []byte("application/grpc")}}, TETrailers: true,
					Body: bytes.NewReader(payload)}
				s, err := p.RoundTrip(context.Background(), addr, req)
				if err != nil {
					b.Fatal(err)
				}
				read(b, s)
				s.Close()
			}
		})
	})
	b.Run("net-http-transport", func(b *testing.B) {
		var tp http.Protocols
		tp.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &tp}
		defer tr.CloseIdleConnections()
		b.SetParallelism(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("POST", "http://"+addr+"/svc/Method", bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/grpc")
				req.Header.Set("Te", "trailers")
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				read(b, resp.Body)
				resp.Body.Close()
			}
		})
	})
}
