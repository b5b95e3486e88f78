// Command grpcserver is the backend of hack/bench/grpc.sh: a grpc-go server
// with the interop TestService (google.golang.org/grpc/interop/grpc_testing)
// and server reflection, so a load generator needs no .proto files.
//
// UnaryCall answers with a payload of the requested response_size bytes
// (zeros, capped at -max-size); every other method is UNIMPLEMENTED.
//
//	grpcserver -addr 127.0.0.1:18111
//
// With -probe ADDR it is a client instead: one UnaryCall to ADDR (plaintext
// h2c) asking for -size bytes, exit status 0 only if the call succeeds and the
// payload has that size. grpc.sh uses it to wait for the server and the
// proxies and to check what they answer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

type testServer struct {
	testpb.UnimplementedTestServiceServer
	maxSize int32
}

func (s *testServer) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := req.GetResponseSize()
	if n < 0 || n > s.maxSize {
		return nil, status.Errorf(codes.InvalidArgument, "response_size %d out of range [0, %d]", n, s.maxSize)
	}
	return &testpb.SimpleResponse{
		Payload: &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, n)},
	}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18111", "listen address (server mode)")
	maxSize := flag.Int("max-size", 1<<20, "largest response_size the server accepts")
	probe := flag.String("probe", "", "client mode: address to send one UnaryCall to")
	size := flag.Int("size", 100, "client mode: response_size to ask for and expect")
	timeout := flag.Duration("timeout", time.Second, "client mode: deadline of the call")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("grpcserver: ")

	if *probe != "" {
		if err := probeOnce(*probe, int32(*size), *timeout); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := serve(*addr, int32(*maxSize)); err != nil {
		log.Fatal(err)
	}
}

func serve(addr string, maxSize int32) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, &testServer{maxSize: maxSize})
	reflection.Register(srv)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		// In-flight calls of a load generator that was killed never finish:
		// do not wait for them.
		srv.Stop()
	}()
	log.Printf("serving grpc.testing.TestService on %s", lis.Addr())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func probeOnce(addr string, size int32, timeout time.Duration) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: size})
	if err != nil {
		return fmt.Errorf("UnaryCall via %s: %w", addr, err)
	}
	if got := len(resp.GetPayload().GetBody()); got != int(size) {
		return fmt.Errorf("UnaryCall via %s: payload of %d bytes, want %d", addr, got, size)
	}
	return nil
}
