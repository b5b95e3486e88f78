package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
)

// gRPC-Web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md)
// is gRPC over any HTTP version for browsers: the proxy turns a gRPC-Web
// call into a gRPC call upstream, and the upstream's HTTP/2 trailers into a
// trailer frame at the end of the response body. The "-text" variant is
// the same stream base64-encoded.

var (
	valGRPCWeb     = []byte("application/grpc-web")
	valGRPCWebText = []byte("application/grpc-web-text")
)

// grpcWebType says whether a content type is gRPC-Web, and whether
// text-encoded.
func grpcWebType(ct []byte) (web, text bool) {
	if !bytes.HasPrefix(ct, valGRPCWeb) {
		return false, false
	}
	rest := ct[len(valGRPCWeb):]
	if bytes.HasPrefix(rest, []byte("-text")) {
		text, rest = true, rest[len("-text"):]
	}
	return len(rest) == 0 || rest[0] == '+' || rest[0] == ';', text
}

// grpcWebRequest makes out a gRPC request: content type
// application/grpc[+codec], the body decoded when text, "te: trailers".
func grpcWebRequest(out *upstream.OutRequest, text bool) {
	for i := range out.Headers {
		h := &out.Headers[i]
		if message.EqualFold(h.Name, "content-type") {
			suffix := h.Value[len(valGRPCWeb):]
			if text {
				suffix = suffix[len("-text"):]
			}
			h.Value = append(append([]byte(nil), valGRPC...), suffix...)
		}
	}
	if text && out.Body != nil {
		out.Body = &base64Reader{src: out.Body}
		out.ContentLength = -1
		out.BodyBuffered = false
	}
	out.TETrailers = true
}

// grpcWebResponse turns the upstream's gRPC response into gRPC-Web: the
// content type mirrors the request's, and the trailers become the body's
// last frame.
func grpcWebResponse(resp *message.Response, text bool) {
	for i := range resp.Headers {
		h := &resp.Headers[i]
		if message.EqualFold(h.Name, "content-type") && bytes.HasPrefix(h.Value, valGRPC) {
			v := append([]byte(nil), valGRPCWeb...)
			if text {
				v = append(v, "-text"...)
			}
			h.Value = append(v, h.Value[len(valGRPC):]...)
		}
	}
	resp.Body = &grpcWebBody{src: resp.Body, trailers: resp.Trailers, text: text}
	resp.Trailers = nil
	resp.ContentLength = -1
}

// grpcWebBody streams the upstream body, then the trailer frame (flag
// 0x80, 4-byte length, "name: value\r\n" lines in lower case). In text
// mode each read is base64-encoded on its own, padded, as gRPC-Web
// clients accept, so streamed messages are not held back.
type grpcWebBody struct {
	src      io.Reader
	trailers func() message.Headers
	text     bool
	tail     []byte // trailer frame (encoded) still to send
	done     bool   // src is at EOF and tail built
	raw      []byte
}

func (b *grpcWebBody) Read(p []byte) (int, error) {
	if b.done {
		if len(b.tail) == 0 {
			return 0, io.EOF
		}
		n := copy(p, b.tail)
		b.tail = b.tail[n:]
		return n, nil
	}
	if b.src == nil {
		b.finish()
		return b.Read(p)
	}
	dst := p
	if b.text {
		// 3 raw bytes become 4 characters.
		if cap(b.raw) < len(p)/4*3 {
			b.raw = make([]byte, len(p)/4*3)
		}
		dst = b.raw[:len(p)/4*3]
		if len(dst) == 0 {
			return 0, io.ErrShortBuffer
		}
	}
	n, err := b.src.Read(dst)
	if b.text && n > 0 {
		base64.StdEncoding.Encode(p, dst[:n])
		n = base64.StdEncoding.EncodedLen(n)
	}
	if errors.Is(err, io.EOF) {
		b.finish()
		err = nil
	}
	return n, err
}

func (b *grpcWebBody) finish() {
	b.done = true
	if b.trailers == nil {
		return
	}
	tr := b.trailers()
	if len(tr) == 0 {
		return // trailers-only: grpc-status went out in the headers
	}
	var block []byte
	for _, h := range tr {
		block = append(block, bytes.ToLower(h.Name)...)
		block = append(block, ": "...)
		block = append(block, h.Value...)
		block = append(block, "\r\n"...)
	}
	frame := make([]byte, 5, 5+len(block))
	frame[0] = 0x80
	binary.BigEndian.PutUint32(frame[1:], uint32(len(block)))
	frame = append(frame, block...)
	if b.text {
		frame = []byte(base64.StdEncoding.EncodeToString(frame))
	}
	b.tail = frame
}

// base64Reader decodes a gRPC-Web-text body: standard base64, possibly
// several padded segments back to back (each client write may be encoded
// on its own), line breaks ignored.
type base64Reader struct {
	src  io.Reader
	in   []byte // characters not yet forming a full quad
	out  []byte // decoded, not yet read
	buf  [4096]byte
	done bool
}

var errBadBase64 = errors.New("grpc-web-text: malformed base64 body")

func (r *base64Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.done {
			if len(r.in) != 0 {
				return 0, errBadBase64
			}
			return 0, io.EOF
		}
		n, err := r.src.Read(r.buf[:])
		for _, c := range r.buf[:n] {
			if c != '\r' && c != '\n' {
				r.in = append(r.in, c)
			}
		}
		quads := len(r.in) / 4 * 4
		for i := 0; i < quads; i += 4 {
			var dec [3]byte
			m, derr := base64.StdEncoding.Decode(dec[:], r.in[i:i+4])
			if derr != nil {
				return 0, errBadBase64
			}
			r.out = append(r.out, dec[:m]...)
		}
		r.in = append(r.in[:0], r.in[quads:]...)
		if errors.Is(err, io.EOF) {
			r.done = true
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}
