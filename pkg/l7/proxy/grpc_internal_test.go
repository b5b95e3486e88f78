package proxy

import (
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

func TestGRPCTimeoutValues(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "400m": 400 * time.Millisecond,
		"5u": 5 * time.Microsecond, "6n": 6, "99999999S": 99999999 * time.Second,
	} {
		if d, ok := parseGRPCTimeout([]byte(v)); !ok || d != want {
			t.Errorf("parse %q = %v %v, want %v", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "1", "S", "100000000S", "-1S", "1x", "1.5S", "+1S"} {
		if d, ok := parseGRPCTimeout([]byte(v)); ok {
			t.Errorf("parse %q = %v, want rejected", v, d)
		}
	}
	for d, want := range map[time.Duration]string{
		400 * time.Millisecond: "400m", 1500 * time.Microsecond: "2m", 15 * time.Second: "15000m",
		48 * time.Hour: "172800S",
	} {
		if got := string(formatGRPCTimeout(d)); got != want {
			t.Errorf("format %v = %q, want %q", d, got, want)
		}
	}
}

func TestGRPCDeadlineCap(t *testing.T) {
	hs := message.Headers{{Name: []byte("grpc-timeout"), Value: []byte("10S")}}
	out, d, bounded := grpcDeadline(hs, 2*time.Second)
	if d != 2*time.Second || string(out[0].Value) != "2000m" || !bounded {
		t.Errorf("capped: %v %q %v", d, out[0].Value, bounded)
	}
	hs = message.Headers{{Name: []byte("grpc-timeout"), Value: []byte("100m")}}
	if out, d, bounded := grpcDeadline(hs, 2*time.Second); d != 100*time.Millisecond || string(out[0].Value) != "100m" || !bounded {
		t.Errorf("shorter client deadline: %v %q %v", d, out[0].Value, bounded)
	}
	if out, d, bounded := grpcDeadline(nil, 2*time.Second); d != 2*time.Second || len(out) != 0 || bounded {
		t.Errorf("no grpc-timeout: %v %v %v (none must be added; the body is not bounded)", d, out, bounded)
	}
	hs = message.Headers{{Name: []byte("Grpc-Timeout"), Value: []byte("bogus")}}
	if _, d, bounded := grpcDeadline(hs, 2*time.Second); d != 2*time.Second || bounded {
		t.Errorf("unparsable: %v %v", d, bounded)
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/grpcx": false, "application/json": false,
	} {
		req := &message.Request{ProtoMajor: 2, Headers: message.Headers{{Name: []byte("content-type"), Value: []byte(ct)}}}
		if got := isGRPC(req); got != want {
			t.Errorf("%q: %v", ct, got)
		}
	}
	req := &message.Request{ProtoMajor: 1, Headers: message.Headers{{Name: []byte("content-type"), Value: []byte("application/grpc")}}}
	if isGRPC(req) {
		t.Error("HTTP/1.1 is not gRPC")
	}
}
