package wire

import "bytes"

// NormalizeTarget removes "." and ".." segments from an origin-form target's
// path (RFC 3986 §5.2.4), keeping the query. Routing and the upstream then
// see the same path, so "/public/../admin" cannot reach an /admin route
// through a /public one. It returns t itself when there is nothing to do,
// and otherwise writes into *buf (grown as needed, reused next time).
func NormalizeTarget(t []byte, buf *[]byte) []byte {
	path, query := t, []byte(nil)
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		path, query = t[:i], t[i:]
	}
	if len(path) == 0 || path[0] != '/' || !hasDotSegment(path) {
		return t
	}
	out := (*buf)[:0]
	for i := 0; i < len(path); {
		// path[i] == '/': take the segment up to the next slash.
		j := i + 1
		for j < len(path) && path[j] != '/' {
			j++
		}
		seg := path[i+1 : j]
		last := j == len(path)
		switch string(seg) {
		case ".":
			if last {
				out = append(out, '/')
			}
		case "..":
			if k := bytes.LastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	out = append(out, query...)
	*buf = out
	return out
}

func hasDotSegment(p []byte) bool {
	for i := 0; i+1 < len(p); i++ {
		if p[i] == '/' && p[i+1] == '.' {
			end := i + 2
			if end < len(p) && p[end] == '.' {
				end++
			}
			if end == len(p) || p[end] == '/' {
				return true
			}
		}
	}
	return false
}
