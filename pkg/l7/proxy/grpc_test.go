package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// grpcServer is a real grpc-go server implementing grpc.testing.TestService
// with behaviours the tests steer through request fields and metadata.
type grpcServer struct {
	testgrpc.UnimplementedTestServiceServer
	addr string
	// cancelled counts handlers that saw their context end before they
	// finished (cancellation or a deadline reaching the server).
	cancelled atomic.Int64
	// lastDeadline is how long the server's context had left when the last
	// unary call arrived (0: no deadline).
	lastDeadline atomic.Int64
}

func newGRPCServer(t testing.TB) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcServer{addr: ln.Addr().String()}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	testgrpc.RegisterTestServiceServer(gs, s)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return s
}

// UnaryCall echoes the payload size asked for. Metadata "x-sleep" makes it
// wait (or end with the context); "x-fail" answers that status code with
// details; every call sends header "x-echo" and trailer "x-trailer".
func (s *grpcServer) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if d, ok := ctx.Deadline(); ok {
		s.lastDeadline.Store(int64(time.Until(d)))
	} else {
		s.lastDeadline.Store(0)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo", strings.Join(md.Get("x-echo"), ",")))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "done"))
	if v := md.Get("x-sleep"); len(v) > 0 {
		d, _ := time.ParseDuration(v[0])
		select {
		case <-time.After(d):
		case <-ctx.Done():
			s.cancelled.Add(1)
			return nil, ctx.Err()
		}
	}
	if v := md.Get("x-fail"); len(v) > 0 {
		st := status.New(codes.FailedPrecondition, "precondition failed: "+v[0])
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: "QUOTA", Domain: "edge-agent.test"})
		return nil, st.Err()
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())},
		Username: fmt.Sprint(len(req.GetPayload().GetBody()))}, nil
}

func (s *grpcServer) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		if d := p.GetIntervalUs(); d > 0 {
			select {
			case <-time.After(time.Duration(d) * time.Microsecond):
			case <-stream.Context().Done():
				s.cancelled.Add(1)
				return stream.Context().Err()
			}
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *grpcServer) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (s *grpcServer) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if stream.Context().Err() != nil {
				s.cancelled.Add(1)
			}
			return err
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// grpcEnv is a proxy in front of a grpc-go server, and a client to it.
type grpcEnv struct {
	*env
	server *grpcServer
	client testgrpc.TestServiceClient
}

func startGRPC(t *testing.T, routeExtra string) *grpcEnv {
	t.Helper()
	gs := newGRPCServer(t)
	e := startProxy(t, fmt.Sprintf(`listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
routes:
  - name: grpc
    match: {path: {prefix: /grpc.testing.TestService/}}
    backends: [{cluster: grpc}]
%s
clusters:
  - {name: grpc, protocol: h2c, endpoints: [{address: %s}]}
`, routeExtra, gs.addr))
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &grpcEnv{env: e, server: gs, client: testgrpc.NewTestServiceClient(cc)}
}

func TestGRPCUnaryMetadataTrailers(t *testing.T) {
	g := startGRPC(t, "")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-echo", "hello")
	var header, trailer metadata.MD
	resp, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10, Payload: &testgrpc.Payload{Body: []byte("abc")}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPayload().GetBody()) != 10 || resp.GetUsername() != "3" {
		t.Errorf("response %v", resp)
	}
	if got := header.Get("x-echo"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header metadata %v", header)
	}
	if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "done" {
		t.Errorf("trailer metadata %v", trailer)
	}
}

func TestGRPCStatusWithDetails(t *testing.T) {
	g := startGRPC(t, "")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-fail", "no quota")
	_, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "precondition failed: no quota" {
		t.Fatalf("status %v", st)
	}
	var found bool
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == "QUOTA" && ei.GetDomain() == "edge-agent.test" {
			found = true
		}
	}
	if !found {
		t.Errorf("details lost: %v", st.Details())
	}
}

func TestGRPCStreaming(t *testing.T) {
	g := startGRPC(t, "")
	ctx := context.Background()
	t.Run("server", func(t *testing.T) {
		var params []*testgrpc.ResponseParameters
		for i := range 20 {
			params = append(params, &testgrpc.ResponseParameters{Size: int32(100 * (i + 1)), IntervalUs: 1000})
		}
		s, err := g.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			m, err := s.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != 100*(i+1) {
				t.Fatalf("message %d: %v %d", i, err, len(m.GetPayload().GetBody()))
			}
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})
	t.Run("client", func(t *testing.T) {
		s, err := g.client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, i)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := s.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 190 {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		s, err := g.client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Ping-pong: each answer must arrive before the next message is
		// sent, so nothing may be buffered end to end.
		for i := range 20 {
			if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i + 1)}}}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != i+1 {
				t.Fatalf("pong %d: %v", i, err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})
}

func TestGRPCLargeMessages(t *testing.T) {
	g := startGRPC(t, "")
	const size = 4 << 20
	resp, err := g.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{ResponseSize: size, Payload: &testgrpc.Payload{Body: make([]byte, size)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPayload().GetBody()) != size || resp.GetUsername() != fmt.Sprint(size) {
		t.Fatalf("sizes: got %d back, server saw %s", len(resp.GetPayload().GetBody()), resp.GetUsername())
	}
}

func TestGRPCDeadlineAndCancellation(t *testing.T) {
	g := startGRPC(t, "")
	t.Run("deadline exceeded reaches the server", func(t *testing.T) {
		before := g.server.cancelled.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-sleep", "5s")
		start := time.Now()
		_, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("status %v", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("took %v", el)
		}
		waitUntil(t, 3*time.Second, func() bool { return g.server.cancelled.Load() > before }, "the server's handler never saw its context end")
		if d := time.Duration(g.server.lastDeadline.Load()); d <= 0 || d > 300*time.Millisecond {
			t.Errorf("server deadline %v, want the client's (≤300ms)", d)
		}
	})
	t.Run("cancel mid-stream reaches the server", func(t *testing.T) {
		before := g.server.cancelled.Load()
		ctx, cancel := context.WithCancel(context.Background())
		params := []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1, IntervalUs: 5_000_000}}
		s, err := g.client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := s.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("after cancel: %v", err)
		}
		waitUntil(t, 3*time.Second, func() bool { return g.server.cancelled.Load() > before }, "the server's stream never saw the cancellation")
	})
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGRPCOverTLS(t *testing.T) {
	gs := newGRPCServer(t)
	dir := t.TempDir()
	crt, key, pool := writeCert(t, dir, "grpc", "grpc.example.com")
	port := freePort(t)
	startProxy(t, fmt.Sprintf(`listeners:
  - name: https
    address: 127.0.0.1:%d
    protocol: https
    tls: {certificates: [{certFile: %s, keyFile: %s}]}
routes:
  - {name: grpc, match: {grpc: {service: grpc.testing.TestService}}, backends: [{cluster: grpc}]}
clusters:
  - {name: grpc, protocol: h2c, endpoints: [{address: %s}]}
`, port, crt, key, gs.addr))
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "grpc.example.com"})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{ResponseSize: 5}); err != nil {
		t.Fatal(err)
	}
	s, err := c.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i)}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseSend()
}

// The route timeout caps the client's deadline: the server sees the cap,
// and the client gets DEADLINE_EXCEEDED from the proxy when it passes.
func TestGRPCRouteTimeoutCapsDeadline(t *testing.T) {
	g := startGRPC(t, "    timeout: 400ms")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(g.server.lastDeadline.Load()); d <= 0 || d > 400*time.Millisecond {
		t.Errorf("server saw deadline %v, want ≤ the route's 400ms", d)
	}
	slow := metadata.AppendToOutgoingContext(ctx, "x-sleep", "5s")
	start := time.Now()
	_, err := g.client.UnaryCall(slow, &testgrpc.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.DeadlineExceeded {
		t.Fatalf("status %v, want DeadlineExceeded", st)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("answered after %v", el)
	}
	// A shorter client deadline is kept as it is.
	short, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	_, _ = g.client.UnaryCall(short, &testgrpc.SimpleRequest{})
	if d := time.Duration(g.server.lastDeadline.Load()); d <= 0 || d > 150*time.Millisecond {
		t.Errorf("server saw deadline %v, want the client's ≤150ms", d)
	}
}

// Answers the proxy makes itself are gRPC statuses, not HTML or text.
func TestGRPCProxyErrorsAreGRPCStatuses(t *testing.T) {
	deadPort := freePort(t)
	e := startProxy(t, fmt.Sprintf(`listeners:
  - {name: http, address: "127.0.0.1:{{PORT}}"}
routes:
  - {name: down, match: {grpc: {service: grpc.testing.TestService, method: UnaryCall}}, backends: [{cluster: down}]}
clusters:
  - {name: down, protocol: h2c, endpoints: [{address: "127.0.0.1:%d"}]}
`, deadPort))
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	_, err = c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "upstream_connect_failure") {
		t.Errorf("upstream down: %v, want Unavailable naming upstream_connect_failure", st)
	}
	// Another method of the service matches no route.
	_, err = c.EmptyCall(context.Background(), &testgrpc.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "no_route") {
		t.Errorf("no route: %v, want Unimplemented naming no_route", st)
	}
	// Plain HTTP to the same path is not gRPC: the grpc match needs the
	// gRPC content type, and the answer is the usual text.
	resp, err := h2cClient().Post(e.url("/grpc.testing.TestService/UnaryCall"), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Grpc-Status") != "" {
		t.Errorf("non-gRPC request: %d %v", resp.StatusCode, resp.Header)
	}
}

// A retry policy's per-try timeout reaches the server as the call's
// grpc-timeout, so the server gives up when the attempt does.
func TestGRPCPerTryTimeoutReachesServer(t *testing.T) {
	g := startGRPC(t, "    retry: {attempts: 1, perTryTimeout: 300ms, on: [unavailable]}")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(g.server.lastDeadline.Load()); d <= 0 || d > 300*time.Millisecond {
		t.Fatalf("server saw deadline %v, want ≤ the 300ms per-try timeout", d)
	}
	// Without a client deadline, one is added for the attempt.
	if _, err := g.client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(g.server.lastDeadline.Load()); d <= 0 || d > 300*time.Millisecond {
		t.Fatalf("no client deadline: server saw %v, want ≤ 300ms", d)
	}
}
