package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// nodeGRPCWebClient is hack/grpcweb-node/client.js: Google's grpc-web
// runtime (what browsers run) on Node.js, the independent client for the
// text format, which connect-go does not speak.
func nodeGRPCWebClient(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs("../../../hack/grpcweb-node/client.js")
	if err != nil {
		t.Fatal(err)
	}
	_, errNode := exec.LookPath("node")
	_, errMod := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "grpc-web"))
	if errNode != nil || errMod != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node or hack/grpcweb-node/node_modules missing (hack/install-deps.sh installs them)")
		}
		t.Skip("node or hack/grpcweb-node/node_modules missing (hack/install-deps.sh installs them)")
	}
	return script
}

type nodeGRPCWebResult struct {
	Messages []int             `json:"messages"`
	Code     int               `json:"code"`
	Message  string            `json:"message"`
	Headers  map[string]string `json:"headers"`
	Trailers map[string]string `json:"trailers"`
}

func runNodeGRPCWeb(t *testing.T, script, base, format, call string, size, count int, fail string) nodeGRPCWebResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{script, base, format, call, strconv.Itoa(size), strconv.Itoa(count)}
	if fail != "" {
		args = append(args, fail)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s %s: %v\n%s", format, call, err, stderr.String())
	}
	var r nodeGRPCWebResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("node %s %s printed %q: %v", format, call, stdout.String(), err)
	}
	return r
}

// TestGRPCWebWithGoogleClient: Google's grpc-web client, in both its
// formats (grpcwebtext: base64 bodies; grpcweb: binary), calls a grpc-go
// server through the proxy: unary, server streaming, and an error status,
// with headers and trailers carried.
func TestGRPCWebWithGoogleClient(t *testing.T) {
	script := nodeGRPCWebClient(t)
	g := startGRPC(t, grpcWebRoute)
	base := "http://" + g.addr
	for _, format := range []string{"text", "binary"} {
		t.Run(format, func(t *testing.T) {
			r := runNodeGRPCWeb(t, script, base, format, "unary", 3000, 1, "")
			if r.Code != 0 || len(r.Messages) != 1 || r.Messages[0] != 3000 {
				t.Fatalf("unary: %+v", r)
			}
			if r.Headers["x-echo"] != "node" || r.Trailers["x-trailer"] != "done" {
				t.Errorf("unary metadata: headers %v trailers %v", r.Headers, r.Trailers)
			}

			r = runNodeGRPCWeb(t, script, base, format, "stream", 100, 8, "")
			if r.Code != 0 || len(r.Messages) != 8 {
				t.Fatalf("stream: %+v", r)
			}
			for i, n := range r.Messages {
				if n != 100*(i+1) {
					t.Fatalf("stream message %d has %d bytes, want %d", i, n, 100*(i+1))
				}
			}

			r = runNodeGRPCWeb(t, script, base, format, "unary", 1, 1, "quota")
			if r.Code != 9 || r.Message != "precondition failed: quota" || len(r.Messages) != 0 {
				t.Fatalf("failing call: %+v, want FAILED_PRECONDITION (9)", r)
			}
		})
	}
}
