package wire

import (
	"bytes"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// IsHopByHop reports whether a header belongs to one connection only
// (RFC 9110 §7.6.1) and must not be forwarded.
func IsHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return message.EqualFold(name, "te")
	case 7:
		return message.EqualFold(name, "upgrade") || message.EqualFold(name, "trailer")
	case 10:
		return message.EqualFold(name, "connection") || message.EqualFold(name, "keep-alive")
	case 16:
		return message.EqualFold(name, "proxy-connection")
	case 17:
		return message.EqualFold(name, "transfer-encoding")
	case 18:
		return message.EqualFold(name, "proxy-authenticate")
	case 19:
		// Credentials for this proxy, never for the upstream (as Go's ReverseProxy).
		return message.EqualFold(name, "proxy-authorization")
	}
	return false
}

// ConnectionTokens lists the header names a Connection header declares
// hop-by-hop, besides the standard ones.
func ConnectionTokens(hs message.Headers, dst [][]byte) [][]byte {
	for _, h := range hs {
		if !message.EqualFold(h.Name, "connection") {
			continue
		}
		v := h.Value
		for len(v) > 0 {
			var tok []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, nil
			}
			tok = bytes.TrimSpace(tok)
			if len(tok) > 0 && !message.EqualFold(tok, "close") && !message.EqualFold(tok, "keep-alive") && !message.EqualFold(tok, "upgrade") {
				dst = append(dst, tok)
			}
		}
	}
	return dst
}

// HasToken reports whether a comma-separated header value holds tok.
func HasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if message.EqualFold(bytes.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}
