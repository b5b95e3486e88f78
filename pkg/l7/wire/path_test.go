package wire

import "testing"

func TestNormalizeTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/":                      "/",
		"/a/b?x=../y":            "/a/b?x=../y",
		"/public/../admin":       "/admin",
		"/public/./x":            "/public/x",
		"/a/b/..":                "/a/",
		"/a/b/.":                 "/a/b/",
		"/../../etc/passwd":      "/etc/passwd",
		"/..":                    "/",
		"/a/..b/c":               "/a/..b/c",
		"/a/.hidden":             "/a/.hidden",
		"/a//b/../c?q=1":         "/a//c?q=1",
		"/x/%2e%2e/y":            "/x/%2e%2e/y",
		"*":                      "*",
		"/api/v1/../../internal": "/internal",
	} {
		var buf []byte
		if got := string(NormalizeTarget([]byte(in), &buf)); got != want {
			t.Errorf("NormalizeTarget(%q) = %q, want %q", in, got, want)
		}
	}
	clean := []byte("/already/clean?q")
	var buf []byte
	if got := NormalizeTarget(clean, &buf); &got[0] != &clean[0] || buf != nil {
		t.Error("a clean target should be returned as is, without copying")
	}
}
