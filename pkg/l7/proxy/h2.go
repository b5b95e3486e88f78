package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// h2handler serves HTTP/2 streams (TLS with ALPN h2, or h2c prior
// knowledge) through the same core as HTTP/1.1.
type h2handler struct {
	srv *Server
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// errStreamAborted: the response could not be completed; the stream must be
// reset rather than ended cleanly, once the exchange has been cleaned up.
var errStreamAborted = errors.New("response body incomplete")

func (h *h2handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.srv.state.Load()
	ln, _ := r.Context().Value(listenerKey{}).(*listener)
	ls := st.listener(ln)
	if ls == nil {
		w.Header().Set(ReasonHeader, "listener_removed")
		http.Error(w, "listener_removed", http.StatusServiceUnavailable)
		return
	}
	// Pseudo-headers become the HTTP/1.1 request line and Host upstream:
	// hold them to the same rules as the HTTP/1.1 parser.
	if !wire.ValidMethod([]byte(r.Method)) || !wire.ValidOriginTarget([]byte(r.RequestURI)) || !wire.ValidHost([]byte(r.Host)) {
		w.Header().Set(ReasonHeader, "bad_request")
		http.Error(w, "bad_request", http.StatusBadRequest)
		return
	}
	tlsState := r.TLS
	if tlsState == nil {
		tlsState, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}
	s := scratchPool.Get().(*scratch)
	req := message.Request{
		Method:        []byte(r.Method),
		Target:        wire.NormalizeTarget([]byte(r.RequestURI), &s.norm),
		Host:          []byte(r.Host),
		ContentLength: r.ContentLength,
		Body:          r.Body,
		ProtoMajor:    r.ProtoMajor,
		TLS:           tlsState != nil,
		ClientCert:    clientCertInfo(tlsState),
	}
	if r.Body == nil || r.Body == http.NoBody {
		req.Body, req.ContentLength = nil, 0
	}
	for k, vs := range r.Header {
		// Framing and Host are the proxy's to write (from :authority and the
		// body it forwards); copying them would duplicate or contradict it.
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		name := []byte(k)
		for _, v := range vs {
			req.Headers = append(req.Headers, message.Header{Name: name, Value: []byte(v)})
		}
	}
	remoteIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	fe := &h2front{w: w, r: r}
	info := serve(r.Context(), st, ls, &req, []byte(remoteIP), fe, s)
	elapsed := time.Since(start)
	info.stats.Observe(info.status, elapsed)
	if st.server.accessLog {
		logRequest(h.srv.accessLog, ls, &req, r.RemoteAddr, info, info.rid, start, elapsed)
	}
	scratchPool.Put(s)
	if fe.aborted {
		// Reset the stream: ending it cleanly would pass a truncated body
		// off as complete.
		panic(http.ErrAbortHandler)
	}
}

type h2front struct {
	w       http.ResponseWriter
	r       *http.Request
	aborted bool
}

func (f *h2front) respond(resp *message.Response) (int64, error) {
	hdr := f.w.Header()
	for _, h := range resp.Headers {
		if wire.IsHopByHop(h.Name) {
			continue
		}
		hdr.Add(string(h.Name), string(h.Value))
	}
	if resp.ContentLength >= 0 && resp.Status != 204 && resp.Status != 304 {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	f.w.WriteHeader(resp.Status)
	if f.r.Method == "HEAD" || resp.Body == nil {
		return 0, nil
	}
	rc := http.NewResponseController(f.w)
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	src, _ := resp.Body.(buffered)
	var total int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			if _, werr := f.w.Write(buf[:n]); werr != nil {
				f.aborted = true
				return total, werr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				f.aborted = true
				return total, errStreamAborted
			}
			break
		}
		if src == nil || src.Buffered() == 0 {
			if err := rc.Flush(); err != nil {
				f.aborted = true
				return total, err
			}
		}
	}
	if resp.Trailers != nil {
		for _, t := range resp.Trailers() {
			hdr.Add(http.TrailerPrefix+string(t.Name), string(t.Value))
		}
	}
	return total, nil
}

// upgrade: WebSocket over HTTP/2 (RFC 8441) is not supported yet; an
// HTTP/2 request never carries an Upgrade, so this is not reached.
func (f *h2front) upgrade(_ *message.Response, x *upstream.Exchange, _ tunnel) (int64, error) {
	x.Finish(false)
	return f.respond(&message.Response{Status: 502, ContentLength: 0, Body: eofBody{}})
}

func (f *h2front) abandonBody() {
	if f.r.Body != nil {
		_ = f.r.Body.Close()
	}
}

func (f *h2front) beforeLocalReply() {}

// continueBody: net/http's HTTP/2 server sends 100 Continue on the first
// read of the body.
func (f *h2front) continueBody() {}

func (f *h2front) abortFunc() func() { return f.abandonBody }
