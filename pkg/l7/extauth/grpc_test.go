package extauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// extAuthzServer is an Envoy ext_authz v3 service; the client's
// Authorization header picks its answer.
type extAuthzServer struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	last  *authv3.CheckRequest
	calls int
}

func (s *extAuthzServer) lastRequest() *authv3.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func hvo(k, v string, appendFlag *bool) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	if appendFlag != nil {
		//lint:ignore SA1019 the deprecated flag is what many services send
		o.Append = wrapperspb.Bool(*appendFlag)
	}
	return o
}

func (s *extAuthzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.last = proto.Clone(req).(*authv3.CheckRequest)
	s.calls++
	s.mu.Unlock()
	yes, no := true, false
	denied := func(code codes.Code, dr *authv3.DeniedHttpResponse) *authv3.CheckResponse {
		r := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code)}}
		if dr != nil {
			r.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr}
		}
		return r
	}
	switch req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] {
	case "Bearer good":
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					hvo("x-user", "alice", nil), // append unset: set
					hvo("x-tag", "t2", &yes),    // append
					hvo("x-role", "admin", &no), // set
					{Header: &corev3.HeaderValue{Key: "x-default", Value: "d"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
					{Header: &corev3.HeaderValue{Key: "x-raw", RawValue: []byte("raw-v")}},
					hvo("x-bad\r\nname", "v", nil), // invalid: dropped
					hvo("x-inject", "v\r\nx-evil: 1", nil),
					hvo("host", "evil.example", nil),
					hvo("content-length", "5", nil),
				},
				HeadersToRemove: []string{"authorization", "host"},
			}},
		}, nil
	case "Bearer plain-ok":
		return &authv3.CheckResponse{}, nil // no status, no ok_response: allowed
	case "Bearer forbidden":
		return denied(codes.PermissionDenied, &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Headers: []*corev3.HeaderValueOption{hvo("x-reason", "policy", nil), hvo("content-type", "text/plain", nil), hvo("connection", "close", nil)},
			Body:    "forbidden by policy",
		}), nil
	case "Bearer ratelimited":
		return denied(codes.ResourceExhausted, &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
			Headers: []*corev3.HeaderValueOption{hvo("retry-after", "7", nil)},
			Body:    "slow down",
		}), nil
	case "Bearer nostatus":
		return denied(codes.Unauthenticated, &authv3.DeniedHttpResponse{Body: "who are you"}), nil
	case "Bearer bare":
		return denied(codes.PermissionDenied, nil), nil
	case "Bearer rpcerr":
		return nil, status.Error(codes.PermissionDenied, "go away")
	case "Bearer unavailable":
		return nil, status.Error(codes.Unavailable, "overloaded")
	case "Bearer errresp":
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Internal)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway}, Body: "policy engine down",
				Headers: []*corev3.HeaderValueOption{hvo("x-err", "1", nil)},
			}},
		}, nil
	case "Bearer sleep":
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(5 * time.Second):
		}
		return &authv3.CheckResponse{}, nil
	}
	return denied(codes.PermissionDenied, nil), nil
}

func serveGRPC(tb testing.TB, impl authv3.AuthorizationServer) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, impl)
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(s.Stop)
	return ln.Addr().String()
}

func newGRPCAuth(tb testing.TB, timeout time.Duration, failOpen bool) (Authorizer, *extAuthzServer) {
	tb.Helper()
	srv := &extAuthzServer{}
	addr := serveGRPC(tb, srv)
	cfg := extAuth(timeout, failOpen)
	cfg.GRPC = &config.ExtAuthGRPC{Cluster: "auth"}
	a := NewGRPC(cfg, newCluster(tb, config.UpstreamH2C, addr))
	tb.Cleanup(a.Close)
	return a, srv
}

func TestGRPCAllow(t *testing.T) {
	a, srv := newGRPCAuth(t, time.Second, false)
	r := clientRequest("PUT", "/api/items/3?dry=1", "Bearer good")
	r.Headers = append(r.Headers, message.Header{Name: []byte("X-Multi"), Value: []byte("a")},
		message.Header{Name: []byte("x-multi"), Value: []byte("b")})
	r.Proto = "HTTP/2"
	d := a.Check(context.Background(), r)
	if !d.Allowed || d.Reason != "" || d.Err != nil {
		t.Fatalf("decision = %+v, want allowed", d)
	}
	var ops []string
	for _, op := range d.Upstream {
		ops = append(ops, fmt.Sprintf("%d:%s=%s", op.Action, op.Name, op.Value))
	}
	want := fmt.Sprintf("%d:x-user=alice %d:x-tag=t2 %d:x-role=admin %d:x-default=d %d:x-raw=raw-v %d:authorization=",
		Set, Append, Set, AddIfAbsent, Set, Remove)
	if got := strings.Join(ops, " "); got != want {
		t.Errorf("upstream ops = %s\nwant            %s", got, want)
	}

	up := d.ApplyUpstream(hdrs("Authorization", "Bearer good", "X-User", "mallory", "X-Tag", "t1", "X-Default", "keep", "Accept", "*/*"))
	for name, want := range map[string]string{"x-user": "alice", "x-role": "admin", "x-default": "keep", "x-raw": "raw-v", "accept": "*/*"} {
		if v, _ := get(up, name); v != want || countHeader(up, name) != 1 {
			t.Errorf("upstream %s = %q (headers %q)", name, v, up)
		}
	}
	if countHeader(up, "x-tag") != 2 || up.Has("authorization") || up.Has("host") || up.Has("x-inject") || up.Has("content-length") {
		t.Errorf("upstream headers = %q", up)
	}

	cr := srv.lastRequest()
	h := cr.GetAttributes().GetRequest().GetHttp()
	if h.GetMethod() != "PUT" || h.GetPath() != "/api/items/3?dry=1" || h.GetHost() != "app.example" ||
		h.GetScheme() != "https" || h.GetId() != "rid-1" || h.GetProtocol() != "HTTP/2" || h.GetSize() != 42 {
		t.Errorf("http attributes = %v", h)
	}
	if a := cr.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); a != "10.0.0.7" {
		t.Errorf("source address = %q", a)
	}
	for k, v := range map[string]string{
		"authorization": "Bearer good", "x-tenant": "acme", "x-secret": "s3cr3t", "cookie": "sid=1; theme=dark",
		"x-multi": "a,b", "x-forwarded-for": "1.2.3.4, 10.0.0.7", "x-forwarded-proto": "https", "x-request-id": "rid-1",
		":authority": "app.example", ":method": "PUT", ":path": "/api/items/3?dry=1", ":scheme": "https",
		"content-type": "application/json",
	} {
		if got := h.GetHeaders()[k]; got != v {
			t.Errorf("headers[%q] = %q, want %q", k, got, v)
		}
	}
	for k := range h.GetHeaders() {
		if k != strings.ToLower(k) || k == "connection" {
			t.Errorf("header key %q sent", k)
		}
	}
}

func TestGRPCAllowPlain(t *testing.T) {
	a, _ := newGRPCAuth(t, time.Second, false)
	d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer plain-ok"))
	if !d.Allowed || len(d.Upstream) != 0 || d.Reason != "" {
		t.Fatalf("decision = %+v", d)
	}
}

func TestGRPCDeny(t *testing.T) {
	a, _ := newGRPCAuth(t, time.Second, true) // fail-open does not open denials
	for _, tc := range []struct {
		auth    string
		status  int
		body    string
		headers map[string]string
	}{
		{"Bearer forbidden", 403, "forbidden by policy", map[string]string{"x-reason": "policy", "content-type": "text/plain"}},
		{"Bearer ratelimited", 429, "slow down", map[string]string{"retry-after": "7"}},
		{"Bearer nostatus", 403, "who are you", nil},
		{"Bearer bare", 403, "", nil},
		{"Bearer rpcerr", 403, "", nil},
		{"", 403, "", nil},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			d := a.Check(context.Background(), clientRequest("GET", "/x", tc.auth))
			if d.Allowed || d.Reason != ReasonDenied || d.Status != tc.status || string(d.Body) != tc.body || d.Err != nil {
				t.Fatalf("decision = %+v, want %d %q", d, tc.status, tc.body)
			}
			if len(d.Headers) != len(tc.headers) {
				t.Errorf("headers = %q, want %v", d.Headers, tc.headers)
			}
			for k, v := range tc.headers {
				if got, _ := get(d.Headers, k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestGRPCErrorResponse(t *testing.T) {
	t.Run("failClosed", func(t *testing.T) {
		a, _ := newGRPCAuth(t, time.Second, false)
		d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer errresp"))
		if d.Allowed || d.Reason != ReasonError || d.Status != 502 || string(d.Body) != "policy engine down" || d.Err == nil {
			t.Fatalf("decision = %+v", d)
		}
		if v, _ := get(d.Headers, "x-err"); v != "1" {
			t.Errorf("headers = %q", d.Headers)
		}
	})
	t.Run("failOpen", func(t *testing.T) {
		a, _ := newGRPCAuth(t, time.Second, true)
		checkFailure(t, a.Check(context.Background(), clientRequest("GET", "/", "Bearer errresp")), true)
	})
	t.Run("unavailableStatus", func(t *testing.T) {
		a, _ := newGRPCAuth(t, time.Second, false)
		checkFailure(t, a.Check(context.Background(), clientRequest("GET", "/", "Bearer unavailable")), false)
	})
}

func TestGRPCTimeout(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			a, _ := newGRPCAuth(t, 150*time.Millisecond, failOpen)
			start := time.Now()
			d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer sleep"))
			if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
				t.Errorf("check took %v, want about the 150ms timeout", el)
			}
			if !errors.Is(d.Err, ErrTimeout) {
				t.Errorf("err = %v, want ErrTimeout", d.Err)
			}
			checkFailure(t, d, failOpen)
			if d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good")); !d.Allowed || d.Reason != "" {
				t.Fatalf("decision after timeout = %+v", d)
			}
		})
	}
}

func TestGRPCServerDown(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("failOpen=%v", failOpen), func(t *testing.T) {
			cfg := extAuth(time.Second, failOpen)
			cfg.GRPC = &config.ExtAuthGRPC{Cluster: "auth"}
			a := NewGRPC(cfg, newCluster(t, config.UpstreamH2C, deadAddr(t)))
			defer a.Close()
			start := time.Now()
			d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good"))
			checkFailure(t, d, failOpen)
			if el := time.Since(start); el > 900*time.Millisecond {
				t.Errorf("refused connection took %v to report", el)
			}
		})
	}
}

// TestGRPCRecovers: a service that was down is used once it is up, without
// waiting out a long reconnect backoff.
func TestGRPCRecovers(t *testing.T) {
	addr := deadAddr(t)
	cfg := extAuth(time.Second, false)
	cfg.GRPC = &config.ExtAuthGRPC{Cluster: "auth"}
	a := NewGRPC(cfg, newCluster(t, config.UpstreamH2C, addr))
	defer a.Close()
	for range 3 {
		if d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good")); d.Allowed {
			t.Fatalf("decision with the service down = %+v", d)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, &extAuthzServer{})
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good"))
		if d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 5s after the service came up: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGRPCClose(t *testing.T) {
	a, srv := newGRPCAuth(t, 300*time.Millisecond, false)
	g := a.(*grpcAuth)
	if d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good")); !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	g.mu.Lock()
	n := len(g.conns)
	g.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d cached connections, want 1", n)
	}

	// A check in flight when Close is called completes; the connection is
	// closed after it.
	done := make(chan Decision)
	go func() { done <- a.Check(context.Background(), clientRequest("GET", "/", "Bearer sleep")) }()
	for {
		srv.mu.Lock()
		calls := srv.calls
		srv.mu.Unlock()
		if calls == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.Close()
	g.mu.Lock()
	n = len(g.conns)
	g.mu.Unlock()
	if n != 1 {
		t.Errorf("Close dropped the connection of a check in flight")
	}
	if d := <-done; d.Reason != ReasonError || !errors.Is(d.Err, ErrTimeout) {
		t.Errorf("in-flight check = %+v, want its own timeout", d)
	}
	g.mu.Lock()
	n = len(g.conns)
	g.mu.Unlock()
	if n != 0 {
		t.Errorf("%d connections left after Close and the last check", n)
	}
	// Checks after Close still work and leave nothing behind.
	if d := a.Check(context.Background(), clientRequest("GET", "/", "Bearer good")); !d.Allowed {
		t.Fatalf("decision after Close = %+v", d)
	}
	g.mu.Lock()
	n = len(g.conns)
	g.mu.Unlock()
	if n != 0 {
		t.Errorf("%d connections left by a check after Close", n)
	}
}

func TestGRPCConcurrent(t *testing.T) {
	a, _ := newGRPCAuth(t, 2*time.Second, false)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				good := (i+j)%2 == 0
				auth := "Bearer forbidden"
				if good {
					auth = "Bearer good"
				}
				d := a.Check(context.Background(), clientRequest("GET", "/", auth))
				if d.Allowed != good || (!good && d.Status != 403) {
					t.Errorf("check %d/%d: %+v", i, j, d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkGRPCCheck(b *testing.B) {
	a, _ := newGRPCAuth(b, time.Second, false)
	r := clientRequest("GET", "/api/items?x=1", "Bearer plain-ok")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := a.Check(ctx, r); !d.Allowed {
			b.Fatalf("decision = %+v", d)
		}
	}
}

func BenchmarkGRPCCheckParallel(b *testing.B) {
	a, _ := newGRPCAuth(b, time.Second, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := clientRequest("GET", "/api/items?x=1", "Bearer plain-ok")
		for pb.Next() {
			if d := a.Check(ctx, r); !d.Allowed {
				b.Errorf("decision = %+v", d)
				return
			}
		}
	})
}
