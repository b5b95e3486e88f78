package wire

import (
	"bytes"
	"testing"
)

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
		"/a//b/../c?q=1":         "/a/c?q=1",
		"/x/%2e%2e/y":            "/y",
		"/x/%2E%2e/y":            "/y",
		"/public/%2e%2e/admin":   "/admin",
		"//admin":                "/admin",
		"/a///b//":               "/a/b/",
		"/%61dmin":               "/admin",
		"/a%7eb":                 "/a~b",
		"/a%3fb?x=%2e":           "/a%3Fb?x=%2e",
		"/a%zz":                  "/a%25zz",
		"/a%2":                   "/a%252",
		"/%7%410":                "/%257A0",
		"/%2e":                   "/",
		"/a/.%2e":                "/",
		"*":                      "*",
		"/api/v1/../../internal": "/internal",
	} {
		var buf []byte
		if got := string(NormalizeTarget([]byte(in), &buf)); got != want {
			t.Errorf("NormalizeTarget(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{
		"/a%2fb": true, "/a%2Fb": true, "/a%5cb": true, "/a\\b": true,
		"/a/b?redirect=%2F": false, "/a%20b": false, "/a": false,
		"/public/..;/admin": true, "/public/.;x/a": true, "/a;jsessionid=1": false, "/a..;b": false,
	} {
		if got := HasEncodedSeparator([]byte(in)); got != want {
			t.Errorf("HasEncodedSeparator(%q) = %v", in, got)
		}
	}
	clean := []byte("/already/clean?q")
	var buf []byte
	if got := NormalizeTarget(clean, &buf); &got[0] != &clean[0] || buf != nil {
		t.Error("a clean target should be returned as is, without copying")
	}
}

// FuzzNormalizeTarget checks the normalizer's invariants on any input:
// the result is a fixed point, has no dot segments, no double slashes and
// no escaped unreserved characters, and keeps the query untouched.
func FuzzNormalizeTarget(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/x", "//a//b", "/a?b=/../c", "/%41%7e%2F", "/a/./b/.", "/..%2e/x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || in[0] != '/' {
			return
		}
		var buf, buf2 []byte
		out := append([]byte(nil), NormalizeTarget(in, &buf)...)
		again := NormalizeTarget(out, &buf2)
		if string(again) != string(out) {
			t.Fatalf("not a fixed point: %q -> %q -> %q", in, out, again)
		}
		path, query := out, []byte(nil)
		if i := bytes.IndexByte(out, '?'); i >= 0 {
			path, query = out[:i], out[i:]
		}
		if j := bytes.IndexByte(in, '?'); j >= 0 && string(in[j:]) != string(query) {
			t.Fatalf("query changed: %q -> %q", in, out)
		}
		if len(path) == 0 || path[0] != '/' || bytes.Contains(path, []byte("//")) || hasDotSegmentTest(path) {
			t.Fatalf("%q -> %q: not normal", in, out)
		}
		for i := 0; i+2 < len(path); i++ {
			if path[i] == '%' && Unhex(path[i+1]) >= 0 && Unhex(path[i+2]) >= 0 && unreserved(byte(Unhex(path[i+1])<<4|Unhex(path[i+2]))) {
				t.Fatalf("%q -> %q: an unreserved character is still escaped", in, out)
			}
		}
	})
}

func hasDotSegmentTest(p []byte) bool {
	for _, seg := range bytes.Split(p, []byte("/")) {
		if string(seg) == "." || string(seg) == ".." {
			return true
		}
	}
	return false
}
