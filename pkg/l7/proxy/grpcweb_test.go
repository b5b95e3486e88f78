package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

const grpcWebRoute = `    cors:
      allowOrigins: ["https://app.example.com"]
      allowHeaders: [content-type, x-grpc-web, x-user-agent, grpc-timeout, x-fail, x-echo]
`

// TestGRPCWebWithConnectClient: connect-go's gRPC-Web client (not ours),
// over HTTP/1.1 as a browser would, against a grpc-go server behind the
// proxy: unary, server streaming, a status with details.
func TestGRPCWebWithConnectClient(t *testing.T) {
	g := startGRPC(t, grpcWebRoute)
	base := "http://" + g.addr + "/grpc.testing.TestService/"
	hc := &http.Client{} // HTTP/1.1
	unary := connect.NewClient[testgrpc.SimpleRequest, testgrpc.SimpleResponse](hc, base+"UnaryCall", connect.WithGRPCWeb())
	ctx := context.Background()
	req := connect.NewRequest(&testgrpc.SimpleRequest{ResponseSize: 1000, Payload: &testgrpc.Payload{Body: []byte("abcd")}})
	req.Header().Set("x-echo", "web")
	resp, err := unary.CallUnary(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.GetPayload().GetBody()) != 1000 || resp.Msg.GetUsername() != "4" {
		t.Errorf("response %v", resp.Msg)
	}
	if resp.Header().Get("x-echo") != "web" || resp.Trailer().Get("x-trailer") != "done" {
		t.Errorf("metadata: header %v trailer %v", resp.Header(), resp.Trailer())
	}

	stream := connect.NewClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse](hc, base+"StreamingOutputCall", connect.WithGRPCWeb())
	var params []*testgrpc.ResponseParameters
	for i := range 10 {
		params = append(params, &testgrpc.ResponseParameters{Size: int32(10 * (i + 1)), IntervalUs: 2000})
	}
	ss, err := stream.CallServerStream(ctx, connect.NewRequest(&testgrpc.StreamingOutputCallRequest{ResponseParameters: params}))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ss.Receive() {
		n++
		if len(ss.Msg().GetPayload().GetBody()) != 10*n {
			t.Fatalf("message %d has %d bytes", n, len(ss.Msg().GetPayload().GetBody()))
		}
	}
	if err := ss.Err(); err != nil || n != 10 {
		t.Fatalf("stream: %d messages, %v", n, err)
	}

	bad := connect.NewRequest(&testgrpc.SimpleRequest{})
	bad.Header().Set("x-fail", "web")
	_, err = unary.CallUnary(ctx, bad)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		t.Fatalf("error %v, want FailedPrecondition", err)
	}
	found := false
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ei, ok := v.(*errdetails.ErrorInfo); ok && ei.GetReason() == "QUOTA" {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("details lost: %v", ce.Details())
	}
}

// webFrame is one gRPC-Web body frame.
func webFrame(flag byte, payload []byte) []byte {
	f := []byte{flag, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(f[1:], uint32(len(payload)))
	return append(f, payload...)
}

// TestGRPCWebText: application/grpc-web-text with a request body sent in
// two separately padded base64 pieces; the response is decoded the same
// way and must hold the messages and the trailer frame.
func TestGRPCWebText(t *testing.T) {
	g := startGRPC(t, grpcWebRoute)
	var params []*testgrpc.ResponseParameters
	for i := range 3 {
		params = append(params, &testgrpc.ResponseParameters{Size: int32(i + 1)})
	}
	msg, err := proto.Marshal(&testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	frame := webFrame(0, msg)
	body := base64.StdEncoding.EncodeToString(frame[:7]) + base64.StdEncoding.EncodeToString(frame[7:])
	req, _ := http.NewRequest("POST", "http://"+g.addr+"/grpc.testing.TestService/StreamingOutputCall", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/grpc-web-text+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/grpc-web-text+proto" {
		t.Fatalf("content type %q", ct)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Decode padded segments back to back.
	var decoded []byte
	for s := string(raw); len(s) > 0; {
		end := strings.IndexByte(s, '=')
		for end >= 0 && end+1 < len(s) && s[end+1] == '=' {
			end++
		}
		seg := s
		if end >= 0 {
			seg, s = s[:end+1], s[end+1:]
		} else {
			s = ""
		}
		b, err := base64.StdEncoding.DecodeString(seg)
		if err != nil {
			t.Fatalf("segment %q: %v", seg, err)
		}
		decoded = append(decoded, b...)
	}
	var sizes []int
	var trailer string
	for r := bufio.NewReader(bytes.NewReader(decoded)); ; {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatal(err)
		}
		if hdr[0]&0x80 != 0 {
			trailer = string(p)
			continue
		}
		var m testgrpc.StreamingOutputCallResponse
		if err := proto.Unmarshal(p, &m); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[1 2 3]" || !strings.Contains(trailer, "grpc-status: 0\r\n") {
		t.Fatalf("messages %v, trailer %q", sizes, trailer)
	}
}

// CORS: the route answers its browsers' preflights and marks responses
// readable by the allowed origin only.
func TestGRPCWebCORS(t *testing.T) {
	g := startGRPC(t, grpcWebRoute)
	url := "http://" + g.addr + "/grpc.testing.TestService/UnaryCall"
	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", url, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-grpc-web")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := pre("https://app.example.com")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "x-grpc-web") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") || resp.Header.Get("Access-Control-Max-Age") != "600" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := pre("https://evil.example.com"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	// The call itself carries the CORS headers for the allowed origin.
	msg, _ := proto.Marshal(&testgrpc.SimpleRequest{ResponseSize: 1})
	req, _ := http.NewRequest("POST", url, bytes.NewReader(webFrame(0, msg)))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Origin", "https://app.example.com")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "grpc-status") {
		t.Errorf("response CORS headers: %v", r.Header)
	}
}
