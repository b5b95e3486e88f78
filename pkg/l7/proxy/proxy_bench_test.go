package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// rawBackend answers every request on a keep-alive connection with a fixed
// 100-byte response, allocation-free, so benchmarks measure the proxy.
func rawBackend(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	body := bytes.Repeat([]byte("x"), 100)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + string(body))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Read one request head (no bodies in this benchmark).
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// runClients sends b.N keep-alive GETs over conns connections and checks
// every response.
func runClients(b *testing.B, addr string, conns int) {
	b.Helper()
	runClientsWith(b, addr, conns, []byte("GET /bench HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\n\r\n"))
}

// runClientsWith is runClients with a given request.
func runClientsWith(b *testing.B, addr string, conns int, req []byte) {
	b.Helper()
	var wg sync.WaitGroup
	per := b.N / conns
	errs := make(chan error, conns)
	b.ResetTimer()
	for i := range conns {
		n := per
		if i == 0 {
			n += b.N % conns
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 4096)
			for range n {
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
				cl := -1
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						errs <- err
						return
					}
					if len(line) <= 2 {
						break
					}
					if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
						cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
					} else if bytes.HasPrefix(line, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
						errs <- fmt.Errorf("status %q", line)
						return
					}
				}
				if cl != 100 {
					errs <- fmt.Errorf("content-length %d", cl)
					return
				}
				if _, err := br.Discard(cl); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkProxyHTTP1 compares, in one run, requests sent directly to the
// backend, through edge-agent and through a tuned httputil.ReverseProxy.
// Report the ratios (ns/op and allocs/op), not absolute numbers.
func BenchmarkProxyHTTP1(b *testing.B) {
	for _, conns := range []int{1, 64} {
		b.Run(fmt.Sprintf("direct/conns=%d", conns), func(b *testing.B) {
			b.ReportAllocs()
			runClients(b, rawBackend(b), conns)
		})
		b.Run(fmt.Sprintf("edge-agent/conns=%d", conns), func(b *testing.B) {
			up := rawBackend(b)
			e := startProxy(b, fmt.Sprintf(`
server: {accessLog: false}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, match: {path: {prefix: /}}, backends: [{cluster: c}]}]
clusters: [{name: c, endpoints: [{address: %s}]}]
`, up))
			b.ReportAllocs()
			runClients(b, e.addr, conns)
		})
		b.Run(fmt.Sprintf("httputil/conns=%d", conns), func(b *testing.B) {
			up := rawBackend(b)
			target, _ := url.Parse("http://" + up)
			rp := httputil.NewSingleHostReverseProxy(target)
			rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}
			rp.BufferPool = bufPool{}
			rp.ErrorLog = nil
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: rp, ErrorLog: nil}
			go srv.Serve(ln)
			b.Cleanup(func() { srv.Close() })
			b.ReportAllocs()
			runClients(b, ln.Addr().String(), conns)
		})
	}
}

type bufPool struct{}

var benchBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *benchBufs.Get().(*[]byte) }
func (bufPool) Put(b []byte) { benchBufs.Put(&b) }

// startBenchProxy runs the proxy (access log off) with one catch-all route
// to a raw backend; route and cluster are extra YAML for their flow maps.
func startBenchProxy(b *testing.B, route, cluster string) *env {
	up := rawBackend(b)
	return startProxy(b, fmt.Sprintf(`
server: {accessLog: false}
listeners: [{name: http, address: "127.0.0.1:{{PORT}}"}]
routes: [{name: r, match: {path: {prefix: /}}, backends: [{cluster: c}]%s}]
clusters: [{name: c, endpoints: [{address: %s}]%s}]
`, route, up, cluster))
}

// BenchmarkPolicies compares, in one run, a route without policies and one
// with every policy that leaves what is sent unchanged (retries with a
// budget, rate limit, circuit breakers, outlier detection, active health
// checks, slow start, maglev). Report the ns/op ratio.
func BenchmarkPolicies(b *testing.B) {
	for _, tc := range []struct{ name, route, cluster string }{
		{"none", "", ""},
		{"all", `, retry: {attempts: 2, perTryTimeout: 1s}, rateLimit: {requests: 1000000, key: clientIP}, idleTimeout: 30s`,
			`, circuitBreaker: {maxConnections: 100000, maxPendingRequests: 1000, maxRequests: 100000, maxRetries: 1000},
  outlierDetection: {consecutive5xx: 5}, healthCheck: {type: tcp, interval: 1s}, slowStart: 10s,
  lbPolicy: maglev, hash: {header: User-Agent}`},
	} {
		b.Run(tc.name+"/conns=64", func(b *testing.B) {
			e := startBenchProxy(b, tc.route, tc.cluster)
			b.ReportAllocs()
			runClients(b, e.addr, 64)
		})
	}
}

// BenchmarkSecurity compares, in one run, a route without access control,
// one that validates an RS256 JWT and one with the WAF (OWASP CRS,
// paranoia 1) blocking. Report the ns/op ratios.
func BenchmarkSecurity(b *testing.B) {
	priv, jwksURL := jwksFixture(b)
	tok, _ := jwt.NewBuilder().Issuer("https://id.test").Subject("alice").Expiration(time.Now().Add(time.Hour)).Build()
	key, _ := jwk.Import(priv)
	key.Set(jwk.KeyIDKey, "k1")
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), key))
	if err != nil {
		b.Fatal(err)
	}
	req := []byte("GET /bench?page=2 HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: text/html\r\n" +
		"Authorization: Bearer " + string(signed) + "\r\n\r\n")
	for _, tc := range []struct{ name, route string }{
		{"none", ""},
		{"jwt", fmt.Sprintf(`, jwt: {providers: [{name: id, issuer: "https://id.test", jwksURL: "%s", algorithms: [RS256]}]}`, jwksURL)},
		{"waf", `, waf: {mode: block}`},
	} {
		b.Run(tc.name+"/conns=64", func(b *testing.B) {
			e := startBenchProxy(b, tc.route, "")
			if tc.name == "jwt" { // the keys arrive in the background
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if r, err := http.DefaultClient.Do(mustAuthReq(b, e.url("/"), string(signed))); err == nil {
						r.Body.Close()
						if r.StatusCode == 200 {
							break
						}
					}
				}
			}
			b.ReportAllocs()
			runClientsWith(b, e.addr, 64, req)
		})
	}
}

func mustAuthReq(b *testing.B, url, tok string) *http.Request {
	r := mustReq(b, "GET", url, nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}
