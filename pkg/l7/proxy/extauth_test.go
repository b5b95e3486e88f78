package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// authzServer is an Envoy ext_authz server built from go-control-plane's
// types: "Bearer good" is allowed (and tagged), "Bearer slow" hangs, the
// rest is denied with 403.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	switch req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] {
	case "Bearer good":
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-user", Value: "alice"}}}}}}, nil
	case "Bearer slow":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: "no entry",
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-why", Value: "policy"}}}}}}, nil
}

func TestExternalAuthGRPCAndHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, authzServer{})
	go gs.Serve(ln)
	defer gs.Stop()
	// An HTTP auth service in the Emissary style.
	httpAuth := newHandlerBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer good" && strings.HasPrefix(r.URL.Path, "/check/") {
			w.Header().Set("X-User", "bob")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="auth"`)
		w.WriteHeader(401)
		fmt.Fprint(w, "login first")
	})
	up := newBackend(t, "up")
	e := startProxy(t, fmt.Sprintf(`
security: {extAuth: {grpc: {cluster: authz}, timeout: 300ms}}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes:
- {name: public, match: {path: {prefix: /public}}, extAuth: {bypass: true}, backends: [{cluster: c}]}
- {name: web, match: {path: {prefix: /web}}, extAuth: {http: {cluster: authh, pathPrefix: /check, allowedUpstreamHeaders: [X-User]}}, backends: [{cluster: c}]}
- {name: open, match: {path: {prefix: /open}}, extAuth: {grpc: {cluster: authz}, timeout: 300ms, failOpen: true}, backends: [{cluster: c}]}
- {name: api, backends: [{cluster: c}]}
clusters:
- {name: c, endpoints: [{address: %s}]}
- {name: authz, protocol: h2c, endpoints: [{address: %s}]}
- {name: authh, endpoints: [{address: %s}]}
`, up.addr(), ln.Addr(), httpAuth))
	c := client()
	bearer := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-User": "mallory"}
	}
	for _, tc := range []struct {
		name, path, tok string
		status          int
		reason, inBody  string
	}{
		{"grpc allows and tags", "/api", "good", 200, "", `"X-User":["alice"]`},
		{"grpc denies with its answer", "/api", "bad", 403, "ext_auth_denied", "no entry"},
		{"grpc timeout fails closed", "/api", "slow", 503, "ext_auth_error", ""},
		{"grpc timeout fails open", "/open", "slow", 200, "", ""},
		{"bypass", "/public", "bad", 200, "", ""},
		{"http allows and tags", "/web/x", "good", 200, "", `"X-User":["bob"]`},
		{"http denies with its answer", "/web/x", "bad", 401, "ext_auth_denied", "login first"},
	} {
		start := time.Now()
		code, _, body, h, err := call(c, "GET", e.url(tc.path), bearer(tc.tok), nil)
		if err != nil || code != tc.status || h.Get("Edge-Agent-Reason") != tc.reason || !strings.Contains(body, tc.inBody) {
			t.Errorf("%s: %d %q %q (%v)", tc.name, code, h.Get("Edge-Agent-Reason"), body, err)
		}
		if tc.inBody != "" && strings.Contains(body, "mallory") {
			t.Errorf("%s: the client's X-User reached the upstream: %s", tc.name, body)
		}
		if tc.name == "grpc denies with its answer" && h.Get("X-Why") != "policy" {
			t.Errorf("denied response headers: %v", h)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v", tc.name, d)
		}
	}
}
