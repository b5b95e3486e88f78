package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/edge-agent/edge-agent/pkg/config"
)

// ClientTLS builds the TLS client config for a cluster: verify the
// endpoint's certificate for ServerName against the CA (or system roots),
// TLS 1.2 at least, HTTP/1.1 by ALPN.
func ClientTLS(t *config.UpstreamTLS) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: t.ServerName,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Sessions resume across pooled connections to the same endpoint.
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	pem := t.CAPEM
	if len(pem) == 0 && t.CAFile != "" {
		var err error
		if pem, err = os.ReadFile(t.CAFile); err != nil {
			cfg.RootCAs = x509.NewCertPool() // fail closed
			return cfg, fmt.Errorf("read CA: %w", err)
		}
	}
	if len(pem) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			cfg.RootCAs = x509.NewCertPool()
			return cfg, errors.New("the CA holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// CheckTLS reports whether a cluster's TLS settings can be used, so a bad
// CA file rejects the config instead of failing every request.
func CheckTLS(t *config.UpstreamTLS) error {
	_, err := ClientTLS(t)
	return err
}

// handshake wraps a new upstream connection in TLS within the connect timeout.
func handshake(ctx context.Context, nc net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(nc, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// tlsAlive probes an idle TLS connection: a short read either times out
// (alive; post-handshake messages such as session tickets are consumed by
// crypto/tls on the way) or fails (closed).
func (c *Conn) tlsAlive() bool {
	if err := c.rd.Set(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	_, err := c.br.Peek(1)
	var ne net.Error
	alive := errors.As(err, &ne) && ne.Timeout()
	if alive {
		// A timed-out read leaves bufio's error sticky only for that call;
		// clear the deadline for the exchange that follows.
		alive = c.rd.Set(time.Time{}) == nil
	}
	return alive
}
