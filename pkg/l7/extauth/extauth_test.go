package extauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/upstream"
)

func TestNew(t *testing.T) {
	h1 := newCluster(t, config.UpstreamHTTP1, deadAddr(t))
	h2 := newCluster(t, config.UpstreamH2C, deadAddr(t))
	clusters := map[string]*upstream.Cluster{"h1": h1, "h2": h2}
	for _, tc := range []struct {
		cfg     config.ExtAuth
		wantErr string
		grpc    bool
	}{
		{config.ExtAuth{HTTP: &config.ExtAuthHTTP{Cluster: "h1"}}, "", false},
		{config.ExtAuth{HTTP: &config.ExtAuthHTTP{Cluster: "h2"}}, "", false},
		{config.ExtAuth{GRPC: &config.ExtAuthGRPC{Cluster: "h2"}}, "", true},
		{config.ExtAuth{GRPC: &config.ExtAuthGRPC{Cluster: "h1"}}, "h2c", false},
		{config.ExtAuth{HTTP: &config.ExtAuthHTTP{Cluster: "nope"}}, "unknown cluster", false},
		{config.ExtAuth{GRPC: &config.ExtAuthGRPC{Cluster: "nope"}}, "unknown cluster", false},
		{config.ExtAuth{}, "neither", false},
		{config.ExtAuth{HTTP: &config.ExtAuthHTTP{Cluster: "h1"}, GRPC: &config.ExtAuthGRPC{Cluster: "h2"}}, "both", false},
	} {
		a, err := New(tc.cfg, clusters)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%+v) error = %v, want %q", tc.cfg, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%+v): %v", tc.cfg, err)
			continue
		}
		if _, isGRPC := a.(*grpcAuth); isGRPC != tc.grpc {
			t.Errorf("New(%+v) = %T", tc.cfg, a)
		}
		a.Close()
	}
}

func TestDefaultTimeout(t *testing.T) {
	a := NewHTTP(config.ExtAuth{HTTP: &config.ExtAuthHTTP{}}, nil).(*httpAuth)
	if a.timeout != config.DefaultExtAuthTimeout {
		t.Errorf("timeout = %v", a.timeout)
	}
	// No cluster at all: a failure like any other.
	d := a.Check(context.Background(), clientRequest("GET", "/", ""))
	checkFailure(t, d, false)
	g := NewGRPC(config.ExtAuth{FailOpen: true, Timeout: config.Duration(time.Second)}, nil)
	checkFailure(t, g.Check(context.Background(), clientRequest("GET", "/", "")), true)
	g.Close()
}

func TestApplyUpstream(t *testing.T) {
	d := Decision{Allowed: true, Upstream: []HeaderOp{
		{Name: []byte("X-Set"), Value: []byte("new"), Action: Set},
		{Name: []byte("X-Add"), Value: []byte("2"), Action: Append},
		{Name: []byte("X-Absent"), Value: []byte("a"), Action: AddIfAbsent},
		{Name: []byte("X-Present"), Value: []byte("p2"), Action: AddIfAbsent},
		{Name: []byte("X-Over"), Value: []byte("o2"), Action: OverwriteIfExists},
		{Name: []byte("X-Missing"), Value: []byte("m"), Action: OverwriteIfExists},
		{Name: []byte("authorization"), Action: Remove},
	}}
	in := hdrs("x-set", "old1", "Accept", "*/*", "X-SET", "old2", "X-Add", "1", "X-Present", "p1",
		"x-over", "o1", "Authorization", "Bearer x")
	out := d.ApplyUpstream(in)
	var got []string
	for _, h := range out {
		got = append(got, string(h.Name)+"="+string(h.Value))
	}
	want := "Accept=*/* X-Add=1 X-Present=p1 X-Set=new X-Add=2 X-Absent=a X-Over=o2"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("ApplyUpstream = %s\nwant            %s", g, want)
	}
	if (&Decision{}).ApplyUpstream(nil) != nil {
		t.Error("no ops on nil headers should stay nil")
	}
}

func TestHeaderChecks(t *testing.T) {
	for _, n := range []string{"X-User", "x_y", "a!#$%&'*+-.^_`|~"} {
		if !validName([]byte(n)) {
			t.Errorf("validName(%q) = false", n)
		}
	}
	for _, n := range []string{"", "x y", "x:y", "x\r\n", "é", ":path"} {
		if validName([]byte(n)) {
			t.Errorf("validName(%q) = true", n)
		}
	}
	if !validValue([]byte("a b\tc é")) || validValue([]byte("a\r\nb")) || validValue([]byte("a\x00")) {
		t.Error("validValue")
	}
	for _, n := range []string{"Host", "content-length", "Connection", "Transfer-Encoding", "TE", "Upgrade", "Expect"} {
		if !reserved([]byte(n)) {
			t.Errorf("reserved(%q) = false", n)
		}
	}
}
