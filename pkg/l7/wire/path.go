package wire

import "bytes"

// NormalizeTarget normalizes an origin-form target's path (RFC 3986 §6.2.2)
// before routing, keeping the query as sent:
//   - percent-encoded unreserved characters are decoded ("%2e" is ".",
//     "%41" is "A"), other escapes get upper-case hex, and a '%' that
//     starts no escape becomes "%25";
//   - runs of slashes become one ("//admin" is "/admin");
//   - "." and ".." segments are removed (§5.2.4).
//
// Routing and the upstream then see the same path, so neither
// "/public/../admin", "/public/%2e%2e/admin" nor "//admin" can reach an
// /admin route through another one. Encoded slashes and backslashes are
// refused before this (HasEncodedSeparator). It returns t itself when
// there is nothing to do, and otherwise writes into *buf (grown as
// needed, reused next time).
func NormalizeTarget(t []byte, buf *[]byte) []byte {
	path, query := t, []byte(nil)
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		path, query = t[:i], t[i:]
	}
	if len(path) == 0 || path[0] != '/' || !needsNormalizing(path) {
		return t
	}
	out := (*buf)[:0]
	// Pass 1: decode unreserved escapes and merge slashes.
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' {
			hi, lo := -1, -1
			if i+2 < len(path) {
				hi, lo = Unhex(path[i+1]), Unhex(path[i+2])
			}
			if hi < 0 || lo < 0 {
				// A stray '%' is escaped itself: otherwise it could join
				// with what follows into a new escape ("%7%41" → "%7A"),
				// and the upstream would decode a path we did not route.
				out = append(out, "%25"...)
				continue
			}
			d := byte(hi<<4 | lo)
			i += 2
			if !unreserved(d) {
				out = append(out, '%', upperHex[hi], upperHex[lo])
				continue
			}
			c = d
		}
		if c == '/' && len(out) > 0 && out[len(out)-1] == '/' {
			continue
		}
		out = append(out, c)
	}
	// Pass 2, in place: remove dot segments. The write position never
	// passes the read position, since segments only go away.
	w := 0
	for i := 0; i < len(out); {
		// out[i] == '/': the segment runs to the next slash.
		j := i + 1
		for j < len(out) && out[j] != '/' {
			j++
		}
		last := j == len(out)
		switch string(out[i+1 : j]) {
		case ".":
			if last {
				out[w] = '/'
				w++
			}
		case "..":
			if k := bytes.LastIndexByte(out[:w], '/'); k >= 0 {
				w = k
			}
			if last {
				out[w] = '/'
				w++
			}
		default:
			w += copy(out[w:], out[i:j])
		}
		i = j
	}
	out = out[:w]
	if len(out) == 0 {
		out = append(out, '/')
	}
	out = append(out, query...)
	*buf = out
	return out
}

// HasEncodedSeparator reports a path (before any query) with an encoded
// slash or backslash ("%2F", "%5C") or a raw backslash. Upstreams differ
// in whether they decode these into separators, so a route match on such
// a path cannot be trusted: the proxy refuses them (400).
//
// It also reports "." and ".." segments carrying path parameters
// ("/..;/admin"): Tomcat and Spring drop the parameter and resolve the
// dot segment the route match never saw.
func HasEncodedSeparator(t []byte) bool {
	for i, c := range t {
		switch c {
		case '?':
			return false
		case '\\':
			return true
		case ';':
			seg := t[:i]
			if j := bytes.LastIndexByte(seg, '/'); j >= 0 {
				seg = seg[j+1:]
			}
			if string(seg) == "." || string(seg) == ".." {
				return true
			}
		case '%':
			if i+2 < len(t) && (t[i+1] == '2' && (t[i+2] == 'f' || t[i+2] == 'F') || t[i+1] == '5' && (t[i+2] == 'c' || t[i+2] == 'C')) {
				return true
			}
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

// Unhex is the value of a hex digit, or -1.
func Unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unreserved: RFC 3986 §2.3, the characters an escape must not hide.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// needsNormalizing: an escape, a double slash or a dot segment.
func needsNormalizing(p []byte) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%':
			return true
		case '/':
			if i+1 < len(p) {
				switch p[i+1] {
				case '/':
					return true
				case '.':
					end := i + 2
					if end < len(p) && p[end] == '.' {
						end++
					}
					if end == len(p) || p[end] == '/' {
						return true
					}
				}
			}
		}
	}
	return false
}
