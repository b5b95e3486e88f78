package router

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

type valueMatcher struct {
	name   string
	host   bool // matches the request's Host (or :authority)
	exact  []byte
	prefix []byte
	re     *regexp.Regexp
}

func compileValues(vs []config.ValueMatch) ([]valueMatcher, error) {
	out := make([]valueMatcher, 0, len(vs))
	for _, v := range vs {
		m := valueMatcher{name: v.Name, host: strings.EqualFold(v.Name, "host")}
		switch {
		case v.Exact != "":
			m.exact = []byte(v.Exact)
		case v.Prefix != "":
			m.prefix = []byte(v.Prefix)
		case v.Regex != "":
			re, err := config.CompileMatchRegex(v.Regex)
			if err != nil {
				return nil, err
			}
			m.re = re
		}
		out = append(out, m)
	}
	return out, nil
}

func (m *valueMatcher) matches(v []byte) bool {
	if m.re != nil {
		return m.re.Match(v)
	}
	return m.matchesPlain(v)
}

// matchesPlain is matches without the regex case; unlike regexp's Match it
// does not make v escape, so v may point into a stack buffer.
func (m *valueMatcher) matchesPlain(v []byte) bool {
	switch {
	case m.exact != nil:
		return bytes.Equal(v, m.exact)
	case m.prefix != nil:
		return bytes.HasPrefix(v, m.prefix)
	}
	return true // presence only
}

// matchHeader passes when any field with the name matches.
func matchHeader(m *valueMatcher, req *message.Request) bool {
	if m.host {
		// Host is kept apart from the other headers (it may come from
		// :authority or an absolute-form target).
		return m.matches(req.Host)
	}
	hs := req.Headers
	for i := range hs {
		if message.EqualFold(hs[i].Name, m.name) && m.matches(hs[i].Value) {
			return true
		}
	}
	return false
}

// matchQuery passes when any parameter with the name matches its decoded value.
func matchQuery(m *valueMatcher, q []byte) bool {
	var nameBuf, valBuf [256]byte
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		k, v, _ := bytes.Cut(pair, []byte("="))
		k, ok := unescape(k, nameBuf[:0])
		if !ok || string(k) != m.name {
			continue
		}
		if m.re != nil {
			// regexp's Match lets its argument escape: a stack buffer would
			// be moved to the heap on every call, so decode into a fresh
			// slice, which allocates only when there is something to decode.
			if dv, ok := unescape(v, nil); ok && m.re.Match(dv) {
				return true
			}
			continue
		}
		if dv, ok := unescape(v, valBuf[:0]); ok && m.matchesPlain(dv) {
			return true
		}
	}
	return false
}

// unescape decodes query escapes ('+' and %XX); it returns b itself when
// there is nothing to decode.
func unescape(b, dst []byte) ([]byte, bool) {
	if bytes.IndexByte(b, '%') < 0 && bytes.IndexByte(b, '+') < 0 {
		return b, true
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(b) {
				return nil, false
			}
			h, l := wire.Unhex(b[i+1]), wire.Unhex(b[i+2])
			if h < 0 || l < 0 {
				return nil, false
			}
			dst = append(dst, byte(h<<4|l))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

// matchCookie looks through every Cookie header's "name=value" pairs.
func matchCookie(m *valueMatcher, hs message.Headers) bool {
	for k, v := range hs.Cookies {
		if string(k) == m.name && m.matches(v) {
			return true
		}
	}
	return false
}
