package wire

import (
	"strings"
	"testing"
)

func TestIsHopByHop(t *testing.T) {
	hop := []string{
		"Connection", "connection", "Keep-Alive", "KEEP-ALIVE", "Proxy-Connection",
		"TE", "te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "proxy-authenticate",
	}
	for _, n := range hop {
		if !IsHopByHop([]byte(n)) {
			t.Errorf("IsHopByHop(%q) = false", n)
		}
	}
	end2end := []string{
		"", "Host", "Content-Length", "Content-Type", "Trailers", "Tee", "Upgrades", "Connectio",
		"Keep-Alivex", "Transfer-Encodings", "Proxy-Authenticat", "Cookie", "X-Connection", "Authorization",
	}
	for _, n := range end2end {
		if IsHopByHop([]byte(n)) {
			t.Errorf("IsHopByHop(%q) = true", n)
		}
	}
}

func TestConnectionTokens(t *testing.T) {
	hs := hdrs(
		"Connection", "keep-alive, X-Foo ,  ,close",
		"Other", "X-Not-A-Token",
		"connection", "Upgrade,X-Bar",
		"CONNECTION", "x-baz",
	)
	dst := make([][]byte, 0, 1)
	dst = append(dst, []byte("pre"))
	got := ConnectionTokens(hs, dst)
	var names []string
	for _, b := range got {
		names = append(names, string(b))
	}
	if strings.Join(names, "|") != "pre|X-Foo|X-Bar|x-baz" {
		t.Fatalf("tokens = %q", names)
	}
	if got := ConnectionTokens(hdrs("X", "y"), nil); len(got) != 0 {
		t.Fatalf("no Connection header: %q", got)
	}
}

func TestHasToken(t *testing.T) {
	tests := []struct {
		v, tok string
		want   bool
	}{
		{"close", "close", true},
		{"Close", "close", true},
		{"keep-alive, close", "close", true},
		{" keep-alive ,\tclose\t", "close", true},
		{"closed", "close", false},
		{"clo se", "close", false},
		{"", "close", false},
		{",,,", "close", false},
		{"upgrade,", "upgrade", true},
		{"a,b,c", "b", true},
	}
	for _, tt := range tests {
		if got := HasToken([]byte(tt.v), tt.tok); got != tt.want {
			t.Errorf("HasToken(%q, %q) = %v", tt.v, tt.tok, got)
		}
	}
}
