package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
)

// rfc8441Transport lets an unmodified WebSocket client (coder/websocket)
// run over HTTP/2: its HTTP/1.1 Upgrade request becomes an extended
// CONNECT (RFC 8441) on an h2c connection, and the 200 answer is handed
// back as the 101 the client expects, the stream as its connection.
type rfc8441Transport struct{ h2 http.RoundTripper }

func (t rfc8441Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	h := req.Header.Clone()
	key := h.Get("Sec-WebSocket-Key")
	for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Key"} {
		h.Del(k)
	}
	h.Set(":protocol", "websocket")
	creq := (&http.Request{Method: "CONNECT", URL: req.URL, Host: req.Host, Header: h, Body: pr, ContentLength: -1}).WithContext(req.Context())
	resp, err := t.h2.RoundTrip(creq)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return nil, fmt.Errorf("extended CONNECT answered %s (%s)", resp.Status, resp.Proto)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	hdr := resp.Header.Clone()
	hdr.Set("Upgrade", "websocket")
	hdr.Set("Connection", "Upgrade")
	hdr.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	return &http.Response{StatusCode: http.StatusSwitchingProtocols, Proto: resp.Proto, ProtoMajor: 2,
		Header: hdr, Body: streamRWC{resp.Body, pw}, Request: req}, nil
}

type streamRWC struct {
	io.ReadCloser
	w *io.PipeWriter
}

func (s streamRWC) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s streamRWC) Close() error {
	s.w.Close()
	return s.ReadCloser.Close()
}

// TestWebSocketOverHTTP2: coder/websocket's client over HTTP/2 (RFC 8441
// extended CONNECT) to a coder/websocket server on HTTP/1.1 behind the
// proxy: subprotocol, 4 MB and fragmented messages, ping/pong, close code.
func TestWebSocketOverHTTP2(t *testing.T) {
	backend := wsEcho(t)
	e := startProxy(t, fmt.Sprintf(wsConfig, freePort(t), "1h", "0s", 0, backend))
	// x/net/http2's client (h2c) sends extended CONNECT once the server
	// advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; net/http's refuses the
	// :protocol header, so the deprecated h2c dial hook is the only way.
	//lint:ignore SA1019 see above
	h2 := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	hc := &http.Client{Transport: rfc8441Transport{h2: h2}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+e.addr+"/ws", &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"echo.v1"}})
	if err != nil {
		t.Fatalf("dial over HTTP/2: %v", err)
	}
	defer c.CloseNow()
	if resp.ProtoMajor != 2 || c.Subprotocol() != "echo.v1" {
		t.Fatalf("proto %d, subprotocol %q", resp.ProtoMajor, c.Subprotocol())
	}
	c.SetReadLimit(16 << 20)
	wsEchoOnce(t, c, websocket.MessageText, []byte("hello over h2"))
	wsEchoOnce(t, c, websocket.MessageBinary, bytes.Repeat([]byte{7}, 4<<20))
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		fmt.Fprintf(w, "frag-%d;", i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || !bytes.HasPrefix(got, []byte("frag-0;frag-1;")) || !bytes.HasSuffix(got, []byte("frag-19;")) {
		t.Fatalf("fragmented: %v %q", err, got)
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				readErr <- err
				return
			}
		}
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 {
			t.Fatalf("close: %v, want 4001", err)
		}
	case <-ctx.Done():
		t.Fatal("no close frame")
	}
	if v := metricValue(t, e, "edge_agent_websocket_connections_total", "ws"); v != 1 {
		t.Errorf("websocket_connections_total = %v", v)
	}
}
