package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/extauth"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
	"github.com/edge-agent/edge-agent/pkg/metrics"
)

var errEOF = io.EOF

// ReasonHeader tells a client why the proxy itself answered (no route,
// upstream failure) with a stable, machine-readable reason.
const ReasonHeader = "Edge-Agent-Reason"

// frontend is what the core needs from a client protocol (HTTP/1.1, HTTP/2).
type frontend interface {
	// respond sends the response head and streams its body.
	respond(resp *message.Response) (int64, error)
	// upgrade sends a 101 head and then relays bytes both ways, within
	// the route's tunnel limits.
	upgrade(resp *message.Response, x *upstream.Exchange, t tunnel) (int64, error)
	// abandonBody is told when the request body may be partly unread: the
	// client connection cannot be reused, and a blocked body read must end
	// (before WaitBody).
	abandonBody()
	// beforeLocalReply runs before the proxy answers by itself.
	beforeLocalReply()
	// continueBody runs when the request will be proxied (Expect: 100-continue).
	continueBody()
	// abortFunc returns a func that unblocks request-body reads.
	abortFunc() func()
}

// scratch is per-request working memory, reused across requests on one
// HTTP/1.1 connection so the hot path does not allocate.
type scratch struct {
	out    upstream.OutRequest
	hdrs   message.Headers
	resp   message.Headers
	tokens [][]byte
	xff    []byte
	rid    []byte
	target []byte
	norm   []byte // the request target without dot segments
	x      upstream.Exchange
	local  localBody
	// grpc: the request is a gRPC (or gRPC-Web) call; the proxy's own
	// answers use gRPC status codes. web/webText: gRPC-Web, base64 or not.
	grpc, web, webText bool
	// cors holds the CORS response headers for this request's origin.
	cors message.Headers
	// extra are more response headers the proxy adds (rate limits,
	// attempts, the breaker that overflowed); num is their number text.
	extra message.Headers
	num   []byte
	// client is the request's client address (after trusted proxies).
	client []byte
	// authHdrs are headers access control adds to the upstream request
	// (claims, an authorization service's answer), replacing any incoming
	// ones of the same name; drop are headers it removes (an API key, claim headers).
	authHdrs message.Headers
	drop     []string
	// extOps are the header changes an authorization service asked for.
	extOps []extauth.HeaderOp
	// The WAF's view of the body, and the reader that sends it on.
	wafBuf    []byte
	replay2   prefixBody
	replayErr error
	view      message.Headers // authView's list
	// Retries: the endpoints tried, and the body kept to send again.
	tried  []*upstream.Endpoint
	rec    bodyRecorder
	replay replayBody
	bodyRd bytes.Reader
	limit  limitedBody
}

// reqInfo describes one handled request for metrics and the access log.
type reqInfo struct {
	status   int
	route    string
	cluster  string
	endpoint string
	reason   string
	bytes    int64
	stats    *metrics.RouteStats
	rid      []byte
	attempts int
}

var (
	hdrXFF       = []byte("X-Forwarded-For")
	hdrXFProto   = []byte("X-Forwarded-Proto")
	hdrXFHost    = []byte("X-Forwarded-Host")
	valHTTP      = []byte("http")
	valHTTPS     = []byte("https")
	hdrReason    = []byte(ReasonHeader)
	hdrCType     = []byte("Content-Type")
	valTextPlain = []byte("text/plain; charset=utf-8")
	hdrLocation  = []byte("Location")
)

// serve routes req and answers it through fe. remoteIP is the client address
// for X-Forwarded-For.
func serve(ctx context.Context, st *State, ls *listenerState, req *message.Request, remoteIP []byte, fe frontend, s *scratch) reqInfo {
	rid := requestID(req, st.server.requestIDHeader, s)
	req.Headers = withClientCert(req.Headers, req.ClientCert)
	ct, _ := req.Headers.Get("content-type")
	s.web, s.webText = grpcWebType(ct)
	s.grpc = s.web || (req.ProtoMajor == 2 && grpcType(ct))
	s.cors, s.extra, s.num = s.cors[:0], s.extra[:0], s.num[:0]
	s.authHdrs, s.drop, s.extOps, s.replayErr = s.authHdrs[:0], nil, nil, nil
	s.release()
	s.client = clientIP(st.trusted, req, remoteIP)
	info := serveRoute(ctx, st, ls, req, remoteIP, rid, fe, s)
	info.rid = rid
	return info
}

func serveRoute(ctx context.Context, st *State, ls *listenerState, req *message.Request, remoteIP, rid []byte, fe frontend, s *scratch) reqInfo {
	if string(req.Method) == "CONNECT" {
		return localReply(fe, s, st.noRoute, 405, "connect_not_supported", rid, st)
	}
	if wire.HasEncodedSeparator(req.Target) {
		// An upstream might decode it into a separator the route never saw.
		return localReply(fe, s, st.noRoute, 400, "encoded_path_separator", rid, st)
	}
	if isPreflight(req) {
		if r := preflightRoute(ls, req); r != nil {
			return corsPreflight(fe, s, r, req, rid, st)
		}
	}
	route, ok := ls.table.Lookup(req)
	if !ok {
		return localReply(fe, s, st.noRoute, 404, "no_route", rid, st)
	}
	if route.cors != nil {
		if origin, ok := req.Headers.Get("origin"); ok && route.cors.allows(origin) {
			s.cors = route.cors.responseHeaders(s.cors[:0], origin)
			s.cors = append(s.cors, message.Header{Name: hdrACEH, Value: route.cors.expose})
		}
	}
	// Access control runs before anything is answered for the route.
	if route.ipRules != nil && !route.ipRules.allows(s.client) {
		return routeReply(localReply(fe, s, route.backends[0].stats, 403, "ip_denied", rid, st), route)
	}
	if route.rateLimit != nil && !route.rateLimit.check(req, s.client, s) {
		return routeReply(localReply(fe, s, route.backends[0].stats, 429, "rate_limited", rid, st), route)
	}
	if res, denied := authorize(ctx, st, route, req, rid, fe, s); denied {
		return routeReply(res, route)
	}
	if route.redirect != nil {
		return redirect(fe, s, route, req, rid, st)
	}
	b := pickBackend(route)
	info := reqInfo{route: route.Name, cluster: b.cluster.Name, stats: b.stats}

	if route.fault != nil {
		if code := route.fault.inject(ctx); code != 0 {
			return withRoute(localReply(fe, s, b.stats, code, "fault_injected", rid, st), info)
		}
	}
	return proxyRequest(ctx, st, ls, route, b, req, remoteIP, rid, fe, s, info)
}

// proxyRequest sends req to b's cluster, retrying as the route says, and
// streams the response back.
func proxyRequest(ctx context.Context, st *State, ls *listenerState, route *Route, b *backend, req *message.Request, remoteIP, rid []byte, fe frontend, s *scratch, info reqInfo) reqInfo {
	cl := b.cluster
	if !cl.StartRequest() {
		s.extra = append(s.extra, message.Header{Name: hdrOverflow, Value: []byte(upstream.BreakerMaxRequests)})
		return withRoute(localReply(fe, s, b.stats, 503, "upstream_overflow", rid, st), info)
	}
	defer cl.EndRequest()
	var hash uint64
	var hasHash bool
	if hp := cl.HashPolicy(); hp != nil {
		hash, hasHash = hashKey(hp, req, s.client)
	}

	out := &s.out
	*out = upstream.OutRequest{
		Method:        req.Method,
		Target:        rewriteTarget(route, req, s),
		Host:          req.Host,
		Headers:       requestHeaders(st, ls, route, req, remoteIP, rid, s),
		ContentLength: req.ContentLength,
		Body:          req.Body,
		Upgrade:       req.Upgrade,
		Timeout:       route.timeout,
		IdleTimeout:   route.idleTimeout,
		Ctx:           ctx,
		AbortBody:     fe.abortFunc(),
		TETrailers:    teTrailers(req.Headers),
	}
	if route.rewrite != nil && route.rewrite.Host != "" {
		out.Host = []byte(route.rewrite.Host)
	}
	if len(s.extOps) > 0 {
		d := extauth.Decision{Upstream: s.extOps}
		out.Headers = d.ApplyUpstream(out.Headers)
		s.hdrs = out.Headers
	}
	bounded := true // the route timeout covers the response body
	if s.grpc {
		out.Headers, out.Timeout, bounded = grpcDeadline(out.Headers, route.timeout)
	}
	if s.web {
		grpcWebRequest(out, s.webText)
	}
	if lb, ok := req.Body.(*wire.LengthReader); ok && int64(lb.Buffered()) >= lb.N {
		out.BodyBuffered = true
	}
	if route.maxBody > 0 && (route.maxBodyGRPC || !s.grpc) && req.Upgrade == nil {
		switch {
		case out.ContentLength > route.maxBody:
			return withRoute(localReply(fe, s, b.stats, 413, "request_body_too_large", rid, st), info)
		case out.ContentLength < 0:
			s.limit = limitedBody{r: out.Body, n: route.maxBody}
			out.Body = &s.limit
		}
	}
	fe.continueBody()
	now := time.Now()
	deadline := now.Add(out.Timeout)
	if bounded && !route.streaming && req.Upgrade == nil {
		out.Deadline = deadline
	}
	rp := route.retry
	if mp := route.mirror; mp != nil && req.Upgrade == nil && chance(mp.percent) {
		mirror(mp, out, rp, s)
	}
	replayable := false
	if rp != nil && req.Upgrade == nil {
		rp.budget.request(now)
		replayable = prepareReplay(out, rp.bufferLimit, s)
	}
	x := &s.x
	s.tried = s.tried[:0]
	attempts := 1
	var err error
	for {
		ep := cl.Choose(hash, hasHash, s.tried)
		if ep == nil {
			return withRoute(localReply(fe, s, b.stats, 503, "no_healthy_upstream", rid, st), info)
		}
		info.endpoint = ep.Address
		if rp != nil {
			out.Timeout = time.Until(deadline)
			if rp.perTry > 0 && rp.perTry < out.Timeout {
				out.Timeout = rp.perTry
			}
			if s.grpc && rp.perTry > 0 {
				// The server should give up when this attempt does.
				out.Headers = setGRPCTimeout(out.Headers, out.Timeout)
				s.hdrs = out.Headers
			}
		}
		err = cl.RoundTrip(ep, out, x)
		var kind upstream.Kind
		var status int
		if err != nil {
			if ue, _ := upstream.AsError(err); ue != nil {
				kind = ue.Kind
			} else {
				kind = upstream.Reset
			}
		} else {
			status = x.Response.Status
		}
		cl.Report(ep, upstream.Outcome{Status: status, Failure: kind})
		if attempts > 1 {
			cl.EndRetry()
		}
		if rp == nil || attempts > rp.attempts || !replayable || !rp.retriable(req.Method, kind, &x.Response, s.grpc) {
			break
		}
		// The backoff must fit before the deadline, or the answer we have
		// is better than none.
		wait := rp.backoff(attempts)
		if !time.Now().Add(wait).Before(deadline) || x.BodyAborted() || !retryNow(rp, cl, deadline, s) {
			break
		}
		// Let this attempt go. A body writer still reading from the
		// client means its body cannot be replayed: stop retrying.
		if !x.Finish(false) {
			fe.abandonBody()
			x.WaitBody()
			cl.EndRetry()
			s.extra = appendIntHeader(s, hdrAttempts, int64(attempts))
			return withRoute(localReply(fe, s, b.stats, 502, "upstream_reset", rid, st), info)
		}
		if !sleepBackoff(ctx, wait, deadline) {
			cl.EndRetry()
			err = &upstream.Error{Kind: upstream.Timeout}
			if ctx.Err() != nil {
				err = &upstream.Error{Kind: upstream.Canceled}
			}
			x.Response = message.Response{}
			break
		}
		replayable = rewindBody(out, s)
		s.tried = append(s.tried, ep)
		attempts++
	}
	info.attempts = attempts
	if rp != nil {
		s.extra = appendIntHeader(s, hdrAttempts, int64(attempts))
	}
	if err != nil {
		ue, _ := upstream.AsError(err)
		kind := upstream.Reset
		if errors.Is(err, errBodyTooLarge) {
			if !x.Finish(false) {
				fe.abandonBody()
				x.WaitBody()
			}
			res := localReply(fe, s, b.stats, 413, "request_body_too_large", rid, st)
			res.attempts = attempts
			return withRoute(res, info)
		}
		if ue != nil {
			kind = ue.Kind
			// A gRPC server gives up at the same deadline and may reset
			// the stream rather than answer: the call ran out of time.
			if s.grpc && kind == upstream.Reset && !time.Now().Before(deadline.Add(-10*time.Millisecond)) {
				kind = upstream.Timeout
			}
			if ue.Kind == upstream.Overflow {
				s.extra = append(s.extra, message.Header{Name: hdrOverflow, Value: []byte(ue.Breaker)})
			}
		}
		if !x.Finish(false) {
			// An h2c transport may still be reading the request body.
			fe.abandonBody()
			x.WaitBody()
		}
		res := localReply(fe, s, b.stats, kind.Status(), kind.Reason(), rid, st)
		res.reason, res.attempts = kind.Reason(), attempts
		return withRoute(res, info)
	}
	resp := &x.Response
	// Keep the grown slice in s.resp, so the next request reuses it.
	s.resp = append(append(responseHeaders(route, resp.Headers, st, rid, s), s.cors...), s.extra...)
	resp.Headers = s.resp
	if s.web && resp.Status == 200 {
		grpcWebResponse(resp, s.webText)
	}
	var n int64
	var werr error
	if resp.Status == 101 {
		n, werr = fe.upgrade(resp, x, wsTunnel(route, st.metrics))
	} else {
		n, werr = fe.respond(resp)
	}
	if !x.Finish(werr == nil) {
		fe.abandonBody()
		x.WaitBody()
	}
	info.status, info.bytes = resp.Status, n
	if werr != nil {
		info.reason = "downstream_or_upstream_reset"
	}
	return info
}

// prepareReplay arranges for out's body to be sent again by a retry: a
// body already in memory is read from there, others are recorded as they
// stream (up to limit). It reports whether a retry can send the body.
func prepareReplay(out *upstream.OutRequest, limit int, s *scratch) bool {
	switch out.Body.(type) {
	case nil, *bytes.Reader: // none, or in memory already (mirrored)
		return true
	}
	switch {
	case out.ContentLength == 0:
		return true
	case out.ContentLength > int64(limit):
		return false
	}
	s.rec = bodyRecorder{r: out.Body, buf: s.rec.buf[:0], limit: limit}
	out.Body = &s.rec
	return true
}

// rewindBody points out's body back at its start for the next attempt.
func rewindBody(out *upstream.OutRequest, s *scratch) bool {
	switch out.Body.(type) {
	case nil:
		return true
	case *bytes.Reader:
		s.bodyRd.Seek(0, io.SeekStart)
		return true
	}
	if s.rec.overflow {
		return false
	}
	s.replay = replayBody{rec: &s.rec}
	out.Body = &s.replay
	out.BodyBuffered = false
	return true
}

// retryNow asks the retry budget and the max_retries breaker for a retry
// while there is time left for one.
func retryNow(rp *retryPolicy, cl *upstream.Cluster, deadline time.Time, s *scratch) bool {
	now := time.Now()
	if !now.Before(deadline) {
		return false
	}
	// The breaker first: a retry it refuses must not use up budget.
	if !cl.StartRetry() {
		rp.noBreaker.Inc()
		return false
	}
	if !rp.budget.allow(now) {
		cl.EndRetry()
		rp.noBudget.Inc()
		return false
	}
	rp.attempted.Inc()
	return true
}

// sleepBackoff waits d unless the client leaves or the deadline comes
// first (then it reports false).
func sleepBackoff(ctx context.Context, d time.Duration, deadline time.Time) bool {
	if time.Now().Add(d).After(deadline) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// mirror sends a copy of out to the route's mirror cluster. The body must
// be complete in memory: a body of known length within the retry buffer
// limit (64KiB without a retry policy) is read first; others are not
// mirrored.
func mirror(mp *mirrorPolicy, out *upstream.OutRequest, rp *retryPolicy, s *scratch) {
	if out.ContentLength == 0 || out.Body == nil {
		mp.send(out, nil)
		return
	}
	limit := config.DefaultRetryBufferLimit
	if rp != nil {
		limit = rp.bufferLimit
	}
	if out.ContentLength < 0 || out.ContentLength > int64(limit) {
		mp.noBody.Inc()
		return
	}
	buf := s.rec.buf[:0]
	if cap(buf) < int(out.ContentLength) {
		buf = make([]byte, out.ContentLength)
	}
	buf = buf[:out.ContentLength]
	src := out.Body
	if _, err := io.ReadFull(src, buf); err != nil {
		// The client's body is short or broken: the primary request
		// fails the same way (the reader reports it again).
		s.rec = bodyRecorder{buf: buf[:0]}
		out.Body = &failedBody{err: err}
		mp.noBody.Inc()
		return
	}
	// The body is in memory now, for the primary, its retries and the mirror.
	s.rec = bodyRecorder{buf: buf, limit: len(buf), eof: true}
	s.bodyRd.Reset(buf)
	out.Body, out.BodyBuffered = &s.bodyRd, true
	mp.send(out, buf)
}

// failedBody repeats a body read error.
type failedBody struct{ err error }

func (f *failedBody) Read([]byte) (int, error) { return 0, f.err }

// routeReply labels a reply the proxy made for route before a backend was
// chosen.
func routeReply(res reqInfo, r *Route) reqInfo {
	res.route = r.Name
	if c := r.backends[0].cluster; c != nil {
		res.cluster = c.Name
	}
	return res
}

func withRoute(res, info reqInfo) reqInfo {
	res.route, res.cluster, res.endpoint, res.stats = info.route, info.cluster, info.endpoint, info.stats
	return res
}

func pickBackend(r *Route) *backend {
	if len(r.backends) == 1 {
		return &r.backends[0]
	}
	x := rand.IntN(r.total)
	for i := range r.backends {
		if x < r.backends[i].weight {
			return &r.backends[i]
		}
		x -= r.backends[i].weight
	}
	return &r.backends[len(r.backends)-1]
}

func teTrailers(hs message.Headers) bool {
	v, ok := hs.Get("te")
	return ok && wire.HasToken(v, "trailers")
}

// rewriteTarget applies a prefix rewrite to the request target.
func rewriteTarget(r *Route, req *message.Request, s *scratch) []byte {
	if r.rewrite == nil || r.rewrite.Prefix == "" {
		return req.Target
	}
	rest := req.Target[len(r.prefix):]
	repl := r.rewrite.Prefix
	s.target = append(s.target[:0], repl...)
	// Keep exactly one slash at the seam: "/api" → "/" on "/api/x" is "/x".
	if len(s.target) > 0 && s.target[len(s.target)-1] == '/' && len(rest) > 0 && rest[0] == '/' {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] == '?' && (len(s.target) == 0) {
		s.target = append(s.target, '/')
	}
	s.target = append(s.target, rest...)
	if len(s.target) == 0 || s.target[0] != '/' {
		s.target = append([]byte{'/'}, s.target...)
	}
	return s.target
}

// requestHeaders builds the upstream header list: hop-by-hop and
// Connection-named headers removed, route mutations applied, and the
// X-Forwarded-* and request id headers set by the proxy.
func requestHeaders(st *State, ls *listenerState, r *Route, req *message.Request, remoteIP, rid []byte, s *scratch) message.Headers {
	s.tokens = wire.ConnectionTokens(req.Headers, s.tokens[:0])
	hs := s.hdrs[:0]
	s.xff = s.xff[:0]
	for _, h := range req.Headers {
		switch {
		case wire.IsHopByHop(h.Name), isToken(h.Name, s.tokens), r.reqOps.drops(h.Name):
			continue
		case (len(s.authHdrs) > 0 || len(s.drop) > 0) && replacedByAuth(h.Name, s):
			continue
		case message.EqualFold(h.Name, "x-forwarded-for"):
			if len(h.Value) > 0 {
				s.xff = append(append(s.xff, h.Value...), ", "...)
			}
			continue
		case message.EqualFold(h.Name, "x-forwarded-proto"), message.EqualFold(h.Name, "x-forwarded-host"),
			bytes.EqualFold(h.Name, st.server.requestIDHeader):
			continue
		}
		hs = append(hs, h)
	}
	hs = append(hs, r.reqOps.set...)
	hs = append(hs, r.reqOps.add...)
	hs = append(hs, s.authHdrs...)
	s.xff = append(s.xff, remoteIP...)
	proto := valHTTP
	if ls.tls || req.TLS {
		proto = valHTTPS
	}
	hs = append(hs,
		message.Header{Name: hdrXFF, Value: s.xff},
		message.Header{Name: hdrXFProto, Value: proto},
		message.Header{Name: hdrXFHost, Value: req.Host},
		message.Header{Name: st.server.requestIDHeader, Value: rid},
	)
	s.hdrs = hs
	return hs
}

func isToken(name []byte, tokens [][]byte) bool {
	for _, t := range tokens {
		if bytes.EqualFold(name, t) {
			return true
		}
	}
	return false
}

// responseHeaders filters the upstream's response headers and applies the
// route's response mutations.
func responseHeaders(r *Route, in message.Headers, st *State, rid []byte, s *scratch) message.Headers {
	s.tokens = wire.ConnectionTokens(in, s.tokens[:0])
	hs := s.resp[:0]
	for _, h := range in {
		if wire.IsHopByHop(h.Name) || isToken(h.Name, s.tokens) || r.respOps.drops(h.Name) ||
			bytes.EqualFold(h.Name, st.server.requestIDHeader) {
			continue
		}
		hs = append(hs, h)
	}
	hs = append(hs, r.respOps.set...)
	hs = append(hs, r.respOps.add...)
	hs = append(hs, message.Header{Name: st.server.requestIDHeader, Value: rid})
	s.resp = hs
	return hs
}

// requestID keeps a well-formed incoming id (so traces join up across
// proxies) and otherwise makes a random 128-bit one.
func requestID(req *message.Request, name []byte, s *scratch) []byte {
	if v, ok := req.Headers.Get(string(name)); ok && validRequestID(v) {
		return v
	}
	const hex = "0123456789abcdef"
	s.rid = s.rid[:0]
	for _, w := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for i := 60; i >= 0; i -= 4 {
			s.rid = append(s.rid, hex[(w>>uint(i))&0xf])
		}
	}
	return s.rid
}

func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// localBody is a small in-memory body for replies the proxy makes itself.
type localBody struct {
	b   []byte
	off int
}

func (l *localBody) Read(p []byte) (int, error) {
	if l.off >= len(l.b) {
		return 0, errEOF
	}
	n := copy(p, l.b[l.off:])
	l.off += n
	return n, nil
}

// localReply answers with status and a text body naming the reason.
func localReply(fe frontend, s *scratch, stats *metrics.RouteStats, status int, reason string, rid []byte, st *State) reqInfo {
	fe.beforeLocalReply()
	if s.grpc {
		n := grpcLocalReply(fe, s, status, reason, rid, st)
		return reqInfo{status: 200, reason: reason, bytes: n, stats: stats}
	}
	s.local = localBody{b: append(append(s.local.b[:0], reason...), '\n')}
	hs := append(s.resp[:0], message.Header{Name: hdrCType, Value: valTextPlain})
	hs = append(replyHeaders(hs, reason, rid, s, st), s.extra...)
	n := sendLocal(fe, s, status, hs)
	return reqInfo{status: status, reason: reason, bytes: n, stats: stats}
}

// replyHeaders adds what every reply the proxy makes itself carries: the
// reason, the request id and the CORS headers for the request's origin.
func replyHeaders(hs message.Headers, reason string, rid []byte, s *scratch, st *State) message.Headers {
	hs = append(hs, message.Header{Name: hdrReason, Value: []byte(reason)})
	if len(rid) > 0 {
		hs = append(hs, message.Header{Name: st.server.requestIDHeader, Value: rid})
	}
	return append(hs, s.cors...)
}

// sendLocal answers with status, headers hs and the body in s.local.
func sendLocal(fe frontend, s *scratch, status int, hs message.Headers) int64 {
	s.resp = hs
	n, _ := fe.respond(&message.Response{Status: status, Headers: hs, ContentLength: int64(len(s.local.b)), Body: &s.local})
	return n
}

// redirect answers with the route's redirect, keeping unset parts of the
// request URL.
func redirect(fe frontend, s *scratch, r *Route, req *message.Request, rid []byte, st *State) reqInfo {
	rd := r.redirect
	scheme := "http"
	if req.TLS {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host := string(req.Host)
	port := ""
	if h, p, ok := splitHostPort(host); ok {
		host, port = h, p
	}
	if rd.Host != "" {
		host = rd.Host
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(rd.Port)
	case rd.Scheme != "" || rd.Host != "":
		port = "" // a new scheme or host does not inherit the old port
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	path := req.Path()
	switch {
	case rd.Path != "":
		path = []byte(rd.Path)
	case rd.Prefix != "":
		rest := path[len(r.prefix):]
		p := rd.Prefix
		if len(p) > 1 && p[len(p)-1] == '/' && len(rest) > 0 && rest[0] == '/' {
			rest = rest[1:]
		}
		path = append([]byte(p), rest...)
	}
	loc := scheme + "://" + host
	if port != "" {
		loc += ":" + port
	}
	loc += string(path)
	if q := req.Query(); q != nil {
		loc += "?" + string(q)
	}
	fe.beforeLocalReply()
	resp := message.Response{
		Status: rd.Code,
		Headers: append(s.resp[:0],
			message.Header{Name: hdrLocation, Value: []byte(loc)},
			message.Header{Name: st.server.requestIDHeader, Value: rid}),
		Body: eofBody{},
	}
	n, _ := fe.respond(&resp)
	return reqInfo{status: rd.Code, route: r.Name, bytes: n, stats: r.backends[0].stats}
}

func splitHostPort(h string) (string, string, bool) {
	i := len(h) - 1
	for i >= 0 && h[i] >= '0' && h[i] <= '9' {
		i--
	}
	if i < 0 || h[i] != ':' || i == len(h)-1 || (h[0] == '[' && h[i-1] != ']') {
		return h, "", false
	}
	return h[:i], h[i+1:], true
}

type eofBody struct{}

func (eofBody) Read([]byte) (int, error) { return 0, errEOF }

// Pending: the end is always at hand.
func (eofBody) Pending() bool { return true }

// logRequest writes one JSON access-log line.
func logRequest(log *slog.Logger, ls *listenerState, req *message.Request, remote string, info reqInfo, rid []byte, start time.Time, elapsed time.Duration) {
	attrs := []slog.Attr{
		slog.String("listener", ls.name),
		slog.String("client", remote),
		slog.String("method", string(req.Method)),
		slog.String("host", string(req.Host)),
		slog.String("path", string(req.Target)),
		slog.Int("proto", req.ProtoMajor),
		slog.Int("status", info.status),
		slog.String("route", info.route),
		slog.String("cluster", info.cluster),
		slog.String("upstream", info.endpoint),
		slog.Int64("bytes", info.bytes),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.String("request_id", string(rid)),
		slog.Time("start", start),
	}
	if info.reason != "" {
		attrs = append(attrs, slog.String("reason", info.reason))
	}
	if info.attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", info.attempts))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}

// maxKeptBuffer is the largest body buffer a connection keeps between
// requests: larger ones (a retried or inspected body) go back to the GC,
// so idle keep-alive connections hold little memory.
const maxKeptBuffer = 16 << 10

// release drops what the previous request left in s: readers of its body
// and buffers too large to keep.
func (s *scratch) release() {
	s.rec.r, s.replay.rec, s.replay2.rest, s.replay2.pre, s.limit.r = nil, nil, nil, nil, nil
	if cap(s.rec.buf) > maxKeptBuffer {
		s.rec.buf = nil
	}
	if cap(s.wafBuf) > maxKeptBuffer {
		s.wafBuf = nil
	}
	s.bodyRd.Reset(nil)
}
