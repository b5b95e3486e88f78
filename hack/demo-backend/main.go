// Command demo-backend is the small upstream `make run` starts beside the
// agent: each address answers with JSON describing the request it got, so
// routing, rewrites and headers are visible with curl. /events streams
// server-sent events; every port also speaks h2c.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "comma-separated name=address pairs or addresses")
	flag.Parse()
	errc := make(chan error)
	for _, spec := range strings.Split(*listen, ",") {
		name, addr, ok := strings.Cut(spec, "=")
		if !ok {
			name, addr = spec, spec
		}
		go func() { errc <- serve(name, addr) }()
	}
	slog.Error("demo backend stopped", "err", <-errc)
	os.Exit(1)
}

func serve(name, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: event %d from %s\n\n", i, name)
			_ = rc.Flush()
			time.Sleep(300 * time.Millisecond)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"backend": name, "method": r.Method, "proto": r.Proto, "host": r.Host,
			"path": r.URL.RequestURI(), "headers": r.Header,
		})
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protos, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	slog.Info("demo backend listening", "name", name, "address", addr)
	return srv.Serve(ln)
}
