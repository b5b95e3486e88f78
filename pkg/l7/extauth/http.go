package extauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// httpAuth asks an HTTP service: the client request's method, PathPrefix
// plus its target, its Host, and chosen headers, without a body.
type httpAuth struct {
	base
	cluster *upstream.Cluster
	prefix  []byte
	// allowReq and allowUp are the configured header lists, without
	// duplicates and without the headers that are always sent or may not
	// be set.
	allowReq []string
	allowUp  []string
	states   sync.Pool
}

// httpState is one check's scratch space, pooled.
type httpState struct {
	x      upstream.Exchange
	out    upstream.OutRequest
	target []byte
	hdrs   message.Headers
	tokens [][]byte
}

var (
	hdrXFHost    = []byte("X-Forwarded-Host")
	hdrXFF       = []byte("X-Forwarded-For")
	hdrXFProto   = []byte("X-Forwarded-Proto")
	hdrRequestID = []byte("X-Request-Id")
	valHTTP      = []byte("http")
	valHTTPS     = []byte("https")
)

// NewHTTP returns an authorizer that asks the HTTP service on cluster
// (cfg.HTTP must be set).
//
// The service gets the client's method, cfg.HTTP.PathPrefix followed by the
// client's path and query, the client's Host (also as X-Forwarded-Host),
// Authorization, Cookie, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id
// and the AllowedRequestHeaders (any case), with no body. A 2xx answer
// allows the request: its AllowedUpstreamHeaders replace the client's
// headers of those names. A 5xx answer, or no answer, is a failure (see the
// package comment). Any other answer denies the request and is returned to
// the client (body cut at MaxBody).
func NewHTTP(cfg config.ExtAuth, cluster *upstream.Cluster) Authorizer {
	a := &httpAuth{base: newBase(cfg), cluster: cluster}
	if h := cfg.HTTP; h != nil {
		// "/auth/" + "/x" is "/auth/x"; the prefix always starts with "/".
		if p := strings.TrimRight(h.PathPrefix, "/"); p != "" {
			a.prefix = []byte(p)
			if p[0] != '/' {
				a.prefix = append([]byte{'/'}, p...)
			}
		}
		a.allowReq = headerList(h.AllowedRequestHeaders, func(n string) bool {
			switch n {
			case "authorization", "cookie", "x-forwarded-host", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
				"transfer-encoding":
				return false
			}
			return !reserved([]byte(n))
		})
		a.allowUp = headerList(h.AllowedUpstreamHeaders, func(n string) bool {
			return !reserved([]byte(n)) && n != "transfer-encoding"
		})
	}
	a.states.New = func() any { return new(httpState) }
	return a
}

// headerList lower-cases names and drops invalid, duplicate and refused ones.
func headerList(names []string, keep func(string) bool) []string {
	var out []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if !validName([]byte(n)) || !keep(n) {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == n
		}
		if !dup {
			out = append(out, n)
		}
	}
	return out
}

func inList(name []byte, list []string) bool {
	for _, n := range list {
		if message.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// Close does nothing: the cluster owns the connections.
func (a *httpAuth) Close() {}

func (a *httpAuth) Check(ctx context.Context, r *Request) Decision {
	cl := a.cluster
	if cl == nil {
		return a.fail(errNoEndpoints)
	}
	if !cl.StartRequest() {
		return a.fail(errOverflow)
	}
	defer cl.EndRequest()
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	deadline, _ := ctx.Deadline()

	s := a.states.Get().(*httpState)
	defer a.put(s)
	a.build(s, r)
	var tried [1]*upstream.Endpoint
	avoid := tried[:0]
	for attempt := 0; ; attempt++ {
		ep := cl.Choose(0, false, avoid)
		if ep == nil {
			return a.fail(errNoEndpoints)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return a.fail(errTimeout)
		}
		s.out.Timeout, s.out.Deadline, s.out.Ctx = remaining, deadline, ctx
		err := cl.RoundTrip(ep, &s.out, &s.x)
		if err != nil {
			if !s.x.Finish(false) {
				s.x.WaitBody()
			}
			kind := upstream.Reset
			if ue, ok := upstream.AsError(err); ok {
				kind = ue.Kind
			}
			// The exchange's own timeout (the time left) may fire just
			// before ctx's: both are the check's timeout.
			if kind == upstream.Timeout && !errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			err = timedOut(ctx, err)
			if errors.Is(err, ErrTimeout) {
				kind = upstream.Timeout
			}
			cl.Report(ep, upstream.Outcome{Failure: kind})
			// The check changes nothing on the service, so it is safe to
			// send again after a reset (say, a keep-alive connection the
			// service closed) or a failed connect (to another endpoint if
			// there is one), once, while there is time.
			if attempt == 0 && (kind == upstream.Reset || kind == upstream.ConnectFailure) && ctx.Err() == nil {
				avoid = append(avoid, ep)
				continue
			}
			return a.fail(fmt.Errorf("ext_auth http: %w", err))
		}
		cl.Report(ep, upstream.Outcome{Status: s.x.Response.Status})
		return a.answer(s)
	}
}

// build fills s.out with the request for the service.
func (a *httpAuth) build(s *httpState, r *Request) {
	s.target = append(s.target[:0], a.prefix...)
	if len(r.Target) == 0 || r.Target[0] != '/' {
		s.target = append(s.target, '/') // "" or "*": keep it a path
	}
	s.target = append(s.target, r.Target...)
	s.tokens = wire.ConnectionTokens(r.Headers, s.tokens[:0])
	hs := s.hdrs[:0]
	for _, h := range r.Headers {
		if message.EqualFold(h.Name, "authorization") || message.EqualFold(h.Name, "cookie") ||
			(inList(h.Name, a.allowReq) && !inTokens(h.Name, s.tokens)) {
			hs = append(hs, h)
		}
	}
	hs = append(hs, message.Header{Name: hdrXFHost, Value: r.Host})
	if xff := r.ForwardedFor; len(xff) > 0 {
		hs = append(hs, message.Header{Name: hdrXFF, Value: xff})
	} else if len(r.ClientIP) > 0 {
		hs = append(hs, message.Header{Name: hdrXFF, Value: r.ClientIP})
	}
	proto := valHTTP
	if r.Scheme == "https" {
		proto = valHTTPS
	}
	hs = append(hs, message.Header{Name: hdrXFProto, Value: proto})
	if len(r.RequestID) > 0 {
		hs = append(hs, message.Header{Name: hdrRequestID, Value: r.RequestID})
	}
	s.hdrs = hs
	method := r.Method
	if len(method) == 0 {
		method = []byte("GET")
	}
	s.out = upstream.OutRequest{Method: method, Target: s.target, Host: r.Host, Headers: hs}
}

func inTokens(name []byte, tokens [][]byte) bool {
	for _, t := range tokens {
		if message.EqualFold(name, string(t)) {
			return true
		}
	}
	return false
}

// answer turns the service's response into a decision and ends the
// exchange.
func (a *httpAuth) answer(s *httpState) Decision {
	x := &s.x
	resp := &x.Response
	status := resp.Status
	if status >= 200 && status < 300 {
		ops := a.upstreamOps(resp.Headers)
		a.finish(x, drain(resp.Body))
		return Decision{Allowed: true, Upstream: ops}
	}
	hs := responseHeaders(resp.Headers)
	// The status is the service's word even if its body fails: a denial
	// stays a denial.
	body, complete := readBody(resp.Body, resp.ContentLength)
	a.finish(x, complete)
	if status >= 500 {
		err := fmt.Errorf("ext_auth http: authorization service answered %d", status)
		return a.failWith(err, status, hs, body)
	}
	return Decision{Status: status, Headers: hs, Body: body, Reason: ReasonDenied}
}

func (a *httpAuth) finish(x *upstream.Exchange, delivered bool) {
	if !x.Finish(delivered) {
		x.WaitBody()
	}
}

func (a *httpAuth) put(s *httpState) {
	s.out = upstream.OutRequest{}
	clear(s.hdrs)
	clear(s.tokens)
	a.states.Put(s)
}

// upstreamOps copies the allowed upstream headers of an allowing answer:
// the first of a name replaces the client's, the next ones are added.
func (a *httpAuth) upstreamOps(hs message.Headers) []HeaderOp {
	if len(a.allowUp) == 0 {
		return nil
	}
	n, size := 0, 0
	for _, h := range hs {
		if inList(h.Name, a.allowUp) {
			n++
			size += len(h.Name) + len(h.Value)
		}
	}
	if n == 0 {
		return nil
	}
	ops := make([]HeaderOp, 0, n)
	ar := make(arena, 0, size)
	for _, h := range hs {
		if !inList(h.Name, a.allowUp) {
			continue
		}
		act := Set
		for _, o := range ops {
			if message.EqualFold(o.Name, string(h.Name)) {
				act = Append
				break
			}
		}
		ops = append(ops, HeaderOp{Name: ar.copy(h.Name), Value: ar.copy(h.Value), Action: act})
	}
	return ops
}

// responseHeaders copies the headers of a denying answer for the client:
// all but hop-by-hop and framing headers.
func responseHeaders(in message.Headers) message.Headers {
	var tokens [][]byte
	tokens = wire.ConnectionTokens(in, tokens)
	n, size := 0, 0
	for _, h := range in {
		if !skipResponseHeader(h.Name, tokens) {
			n++
			size += len(h.Name) + len(h.Value)
		}
	}
	if n == 0 {
		return nil
	}
	out := make(message.Headers, 0, n)
	ar := make(arena, 0, size)
	for _, h := range in {
		if !skipResponseHeader(h.Name, tokens) {
			out = append(out, message.Header{Name: ar.copy(h.Name), Value: ar.copy(h.Value)})
		}
	}
	return out
}

func skipResponseHeader(name []byte, tokens [][]byte) bool {
	return wire.IsHopByHop(name) || message.EqualFold(name, "content-length") || inTokens(name, tokens)
}

// drain reads and drops a short body so the connection can be reused; it
// reports whether the body ended. (The body is read through
// Response.Body, which is an empty reader when there is none.)
func drain(body io.Reader) bool {
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	total := 0
	for total <= MaxBody {
		n, err := body.Read(buf)
		total += n
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// readBody reads up to MaxBody bytes of the body; it reports whether the
// body ended there.
func readBody(r io.Reader, contentLength int64) ([]byte, bool) {
	var body []byte
	if contentLength > 0 {
		body = make([]byte, 0, min(contentLength, MaxBody))
	}
	bp := upstream.GetBuffer()
	defer upstream.PutBuffer(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		room := MaxBody - len(body)
		body = append(body, buf[:min(n, room)]...)
		if err == io.EOF {
			return body, n <= room
		}
		if err != nil || n > room || len(body) == MaxBody {
			return body, false
		}
	}
}
