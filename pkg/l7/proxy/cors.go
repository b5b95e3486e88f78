package proxy

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// corsPolicy is a route's compiled CORS policy.
type corsPolicy struct {
	any     bool
	origins map[string]bool
	// wild are "scheme://*.domain[:port]" origins: scheme prefix and
	// ".domain[:port]" suffix; any subdomain matches, not the domain itself.
	wild    []wildOrigin
	methods []byte
	headers []byte
	expose  []byte
	maxAge  []byte
	creds   bool
}

var (
	hdrACAO    = []byte("Access-Control-Allow-Origin")
	hdrACAC    = []byte("Access-Control-Allow-Credentials")
	hdrACEH    = []byte("Access-Control-Expose-Headers")
	hdrACAM    = []byte("Access-Control-Allow-Methods")
	hdrACAH    = []byte("Access-Control-Allow-Headers")
	hdrACMA    = []byte("Access-Control-Max-Age")
	hdrVary    = []byte("Vary")
	valOrigin  = []byte("Origin")
	valTrue    = []byte("true")
	valStar    = []byte("*")
	valPreCT   = []byte("application/grpc-web")
	hdrCTLower = []byte("content-type")
)

func compileCORS(c *config.CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}, creds: c.AllowCredentials,
		methods: []byte(strings.Join(c.AllowMethods, ", ")),
		headers: []byte(strings.Join(c.AllowHeaders, ", ")),
		expose:  []byte(strings.Join(c.ExposeHeaders, ", ")),
		maxAge:  []byte(strconv.Itoa(int(c.MaxAge.D().Seconds())))}
	for _, o := range c.AllowOrigins {
		o = strings.ToLower(o)
		switch scheme, host, _ := strings.Cut(o, "://"); {
		case o == "*":
			p.any = true
		case strings.HasPrefix(host, "*."):
			p.wild = append(p.wild, wildOrigin{prefix: scheme + "://", suffix: host[1:]})
		default:
			p.origins[o] = true
		}
	}
	return p
}

type wildOrigin struct{ prefix, suffix string }

func (p *corsPolicy) allows(origin []byte) bool {
	if p.any {
		return true
	}
	o := string(bytes.ToLower(origin))
	if p.origins[o] {
		return true
	}
	for _, w := range p.wild {
		if host, ok := strings.CutPrefix(o, w.prefix); ok && len(host) > len(w.suffix) &&
			strings.HasSuffix(host, w.suffix) && !strings.ContainsAny(host, "/@?#") && host[0] != '.' {
			return true
		}
	}
	return false
}

// responseHeaders appends Access-Control-Allow-Origin ("*" for any origin
// without credentials, else the origin itself, with Vary: Origin) and the
// credentials flag.
func (p *corsPolicy) responseHeaders(hs message.Headers, origin []byte) message.Headers {
	if p.any && !p.creds {
		hs = append(hs, message.Header{Name: hdrACAO, Value: valStar})
	} else {
		hs = append(hs, message.Header{Name: hdrACAO, Value: origin}, message.Header{Name: hdrVary, Value: valOrigin})
	}
	if p.creds {
		hs = append(hs, message.Header{Name: hdrACAC, Value: valTrue})
	}
	return hs
}

// isPreflight: a browser asking whether it may send a cross-origin request.
func isPreflight(req *message.Request) bool {
	if string(req.Method) != "OPTIONS" {
		return false
	}
	_, o := req.Headers.Get("origin")
	_, m := req.Headers.Get("access-control-request-method")
	return o && m
}

// preflightRoute finds the route of the request a preflight announces: its
// method, and (unless it names one) the gRPC-Web content type, so routes
// that match gRPC calls answer their browsers' preflights.
func preflightRoute(ls *listenerState, req *message.Request) *Route {
	m, _ := req.Headers.Get("access-control-request-method")
	pre := *req
	pre.Method = m
	if _, ok := req.Headers.Get("content-type"); !ok {
		pre.Headers = append(req.Headers[:len(req.Headers):len(req.Headers)], message.Header{Name: hdrCTLower, Value: valPreCT})
	}
	r, ok := ls.table.Lookup(&pre)
	if !ok || r.cors == nil {
		return nil
	}
	return r
}

// corsPreflight answers a preflight from the route's policy: 204 with the
// allowed methods and headers, or 403 for an origin it does not allow.
func corsPreflight(fe frontend, s *scratch, r *Route, req *message.Request, rid []byte, st *State) reqInfo {
	origin, _ := req.Headers.Get("origin")
	stats := st.noRoute
	if len(r.backends) > 0 {
		stats = r.backends[0].stats
	}
	if !r.cors.allows(origin) {
		res := localReply(fe, s, stats, 403, "cors_origin_not_allowed", rid, st)
		res.route = r.Name
		return res
	}
	fe.beforeLocalReply()
	hs := r.cors.responseHeaders(s.resp[:0], origin)
	hs = append(hs,
		message.Header{Name: hdrACAM, Value: r.cors.methods},
		message.Header{Name: hdrACAH, Value: r.cors.headers},
		message.Header{Name: hdrACMA, Value: r.cors.maxAge},
		message.Header{Name: st.server.requestIDHeader, Value: rid})
	s.resp = hs
	n, _ := fe.respond(&message.Response{Status: 204, Headers: hs, Body: eofBody{}})
	return reqInfo{status: 204, route: r.Name, bytes: n, stats: stats}
}
