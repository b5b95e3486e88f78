package extauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
	"github.com/edge-agent/edge-agent/pkg/l7/wire"
)

// grpcAuth calls envoy.service.auth.v3.Authorization/Check, with one gRPC
// client connection per endpoint address of the cluster.
type grpcAuth struct {
	base
	cluster *upstream.Cluster

	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
	clients  map[string]authv3.AuthorizationClient
	inflight int
	closed   bool
}

// NewGRPC returns an authorizer that calls the Envoy ext_authz v3 service
// on cluster (protocol h2c; cfg.GRPC should be set). Connections are
// cleartext HTTP/2, opened on first use, one per endpoint address.
//
// The CheckRequest carries attributes.source.address (Request.ClientIP)
// and attributes.request.http: id, method, path (with query), host, scheme,
// protocol, size and headers (names lower-cased; the pseudo-headers
// :authority, :method, :path and :scheme; X-Forwarded-For,
// X-Forwarded-Proto and X-Request-Id as given; repeated names joined with
// "," or "; " for cookie; hop-by-hop headers left out).
//
// The answer:
//   - status OK allows; ok_response.headers change the upstream request
//     (append true: Append; append false or unset with the default
//     append_action: Set, as the API documents for this message; other
//     append_action values as named), then headers_to_remove are removed.
//   - another status with error_response is a failure (see the package
//     comment); failing closed, its status (default 503), headers and body
//     go to the client.
//   - another status denies: denied_response's status (default 403),
//     headers and body go to the client.
//   - an RPC that fails with Unavailable, DeadlineExceeded, Canceled,
//     Unknown, Internal or Unimplemented (unreachable, timed out, or not an
//     ext_authz service) is a failure; any other gRPC error denies with 403.
func NewGRPC(cfg config.ExtAuth, cluster *upstream.Cluster) Authorizer {
	return &grpcAuth{base: newBase(cfg), cluster: cluster,
		conns: map[string]*grpc.ClientConn{}, clients: map[string]authv3.AuthorizationClient{}}
}

// connectParams let a connection to a service that was down come back
// within a few seconds, not the default two minutes of backoff.
var connectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// acquire returns the client for addr, counting the check in flight; the
// caller must call release.
func (a *grpcAuth) acquire(addr string) (authv3.AuthorizationClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight++
	if c := a.clients[addr]; c != nil {
		return c, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(connectParams))
	if err != nil {
		return nil, err
	}
	c := authv3.NewAuthorizationClient(cc)
	a.conns[addr], a.clients[addr] = cc, c
	return c, nil
}

// release ends a check; after Close, the last one closes the connections.
func (a *grpcAuth) release() {
	a.mu.Lock()
	a.inflight--
	var conns []*grpc.ClientConn
	if a.closed && a.inflight == 0 {
		conns = a.takeConns()
	}
	a.mu.Unlock()
	closeAll(conns)
}

// Close closes the connections now if no check is running, else when the
// last one ends.
func (a *grpcAuth) Close() {
	a.mu.Lock()
	a.closed = true
	var conns []*grpc.ClientConn
	if a.inflight == 0 {
		conns = a.takeConns()
	}
	a.mu.Unlock()
	closeAll(conns)
}

func (a *grpcAuth) takeConns() []*grpc.ClientConn {
	conns := make([]*grpc.ClientConn, 0, len(a.conns))
	for addr, cc := range a.conns {
		conns = append(conns, cc)
		delete(a.conns, addr)
		delete(a.clients, addr)
	}
	return conns
}

func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		_ = cc.Close()
	}
}

func (a *grpcAuth) Check(ctx context.Context, r *Request) Decision {
	cl := a.cluster
	if cl == nil {
		return a.fail(errNoEndpoints)
	}
	if !cl.StartRequest() {
		return a.fail(errOverflow)
	}
	defer cl.EndRequest()
	ep := cl.Pick()
	if ep == nil {
		return a.fail(errNoEndpoints)
	}
	client, err := a.acquire(ep.Address)
	defer a.release()
	if err != nil {
		return a.fail(fmt.Errorf("ext_auth grpc: %w", err))
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	resp, err := client.Check(ctx, checkRequest(r))
	if err != nil {
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal, codes.Unimplemented:
			// DeadlineExceeded may come from the service, which got the
			// deadline with the call, just before ctx's own fires.
			if st.Code() == codes.DeadlineExceeded && !errors.Is(err, ErrTimeout) {
				err = fmt.Errorf("%w: %w", ErrTimeout, err)
			}
			err = timedOut(ctx, err)
			kind := upstream.Reset
			if errors.Is(err, ErrTimeout) {
				kind = upstream.Timeout
			}
			cl.Report(ep, upstream.Outcome{Failure: kind})
			return a.fail(fmt.Errorf("ext_auth grpc: %w", err))
		}
		cl.Report(ep, upstream.Outcome{Status: 200})
		return Decision{Status: 403, Reason: ReasonDenied}
	}
	cl.Report(ep, upstream.Outcome{Status: 200})
	return a.decide(resp)
}

// decide maps a CheckResponse to a decision, as Envoy does.
func (a *grpcAuth) decide(resp *authv3.CheckResponse) Decision {
	if code := resp.GetStatus().GetCode(); code == int32(codes.OK) {
		ok := resp.GetOkResponse()
		return Decision{Allowed: true, Upstream: upstreamOps(ok.GetHeaders(), ok.GetHeadersToRemove())}
	}
	if er := resp.GetErrorResponse(); er != nil {
		err := fmt.Errorf("ext_auth grpc: authorization service reported an error (%s)",
			codes.Code(resp.GetStatus().GetCode()))
		return a.failWith(err, httpStatus(er.GetStatus().GetCode(), 503), clientHeaders(er.GetHeaders()), bodyOf(er.GetBody()))
	}
	dr := resp.GetDeniedResponse()
	return Decision{Status: httpStatus(dr.GetStatus().GetCode(), 403), Headers: clientHeaders(dr.GetHeaders()),
		Body: bodyOf(dr.GetBody()), Reason: ReasonDenied}
}

// httpStatus is the service's status, or def when it is unset or cannot
// be sent as a final response.
func httpStatus[T ~int32](code T, def int) int {
	if c := int(code); c >= 200 && c <= 599 {
		return c
	}
	return def
}

func bodyOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s[:min(len(s), MaxBody)])
}

func headerValue(h *corev3.HeaderValue) string {
	if v := h.GetValue(); v != "" {
		return v
	}
	return string(h.GetRawValue())
}

// upstreamOps converts ok_response's header mutations, dropping the
// invalid ones and those on Host, framing and hop-by-hop headers.
func upstreamOps(set []*corev3.HeaderValueOption, remove []string) []HeaderOp {
	if len(set) == 0 && len(remove) == 0 {
		return nil
	}
	ops := make([]HeaderOp, 0, len(set)+len(remove))
	for _, o := range set {
		name, value := []byte(o.GetHeader().GetKey()), []byte(headerValue(o.GetHeader()))
		if !validName(name) || !validValue(value) || reserved(name) || message.EqualFold(name, "transfer-encoding") {
			continue
		}
		ops = append(ops, HeaderOp{Name: name, Value: value, Action: appendAction(o)})
	}
	for _, n := range remove {
		name := []byte(n)
		if !validName(name) || reserved(name) || message.EqualFold(name, "transfer-encoding") {
			continue
		}
		ops = append(ops, HeaderOp{Name: name, Action: Remove})
	}
	return ops
}

// appendAction reads a HeaderValueOption: the deprecated append flag wins
// when set; otherwise the default append_action means Set (ext_authz's
// documented "append defaults to false"), the others what they say.
func appendAction(o *corev3.HeaderValueOption) Action {
	//lint:ignore SA1019 services still send the deprecated flag; Envoy honours it first
	if ap := o.GetAppend(); ap != nil {
		if ap.GetValue() {
			return Append
		}
		return Set
	}
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return AddIfAbsent
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return OverwriteIfExists
	}
	return Set
}

// clientHeaders converts a denial's headers for the client.
func clientHeaders(opts []*corev3.HeaderValueOption) message.Headers {
	var hs message.Headers
	for _, o := range opts {
		name, value := []byte(o.GetHeader().GetKey()), []byte(headerValue(o.GetHeader()))
		if !validName(name) || !validValue(value) || wire.IsHopByHop(name) || message.EqualFold(name, "content-length") {
			continue
		}
		hs = append(hs, message.Header{Name: name, Value: value})
	}
	return hs
}

// checkRequest builds the CheckRequest for r.
func checkRequest(r *Request) *authv3.CheckRequest {
	var tokens [8][]byte
	conn := wire.ConnectionTokens(r.Headers, tokens[:0])
	hs := make(map[string]string, len(r.Headers)+7)
	scheme := r.Scheme
	if scheme == "" {
		scheme = "http"
	}
	method := string(r.Method)
	if method == "" {
		method = "GET"
	}
	path := string(r.Target)
	if path == "" {
		path = "/"
	}
	host := string(r.Host)
	hs[":authority"], hs[":method"], hs[":path"], hs[":scheme"] = host, method, path, scheme
	for _, h := range r.Headers {
		if wire.IsHopByHop(h.Name) || inTokens(h.Name, conn) || len(h.Name) == 0 || h.Name[0] == ':' ||
			message.EqualFold(h.Name, "x-forwarded-for") || message.EqualFold(h.Name, "x-forwarded-proto") ||
			message.EqualFold(h.Name, "x-request-id") || message.EqualFold(h.Name, "host") {
			continue
		}
		k := lower(h.Name)
		if old, ok := hs[k]; ok {
			sep := ","
			if k == "cookie" {
				sep = "; "
			}
			hs[k] = old + sep + string(h.Value)
		} else {
			hs[k] = string(h.Value)
		}
	}
	xff := r.ForwardedFor
	if len(xff) == 0 {
		xff = r.ClientIP
	}
	if len(xff) > 0 {
		hs["x-forwarded-for"] = string(xff)
	}
	hs["x-forwarded-proto"] = scheme
	id := string(r.RequestID)
	if id != "" {
		hs["x-request-id"] = id
	}
	proto := r.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	attrs := &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: method, Headers: hs, Path: path, Host: host, Scheme: scheme,
			Size: r.ContentLength, Protocol: proto,
		}},
	}
	if len(r.ClientIP) > 0 {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: string(r.ClientIP)}},
		}}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// lower returns name lower-cased, as a new string.
func lower(name []byte) string {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			return strings.ToLower(string(name))
		}
	}
	return string(name)
}
