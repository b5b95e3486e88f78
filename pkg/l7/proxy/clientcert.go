package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l7/message"
)

// clientAuth is a listener's compiled mTLS policy.
type clientAuth struct {
	pool     *x509.CertPool
	optional bool
	required *hostTable[bool] // server names that require a certificate
}

func loadClientAuth(path string, ca *config.ClientAuth) (*clientAuth, error) {
	if ca == nil {
		return nil, nil
	}
	pem, err := os.ReadFile(ca.CAFile)
	if err != nil {
		return nil, config.Errors{{Path: path + ".caFile", Reason: err.Error()}}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, config.Errors{{Path: path + ".caFile", Reason: "no PEM certificate in " + ca.CAFile}}
	}
	c := &clientAuth{pool: pool, optional: ca.Mode == "optional", required: newHostTable[bool]()}
	for _, h := range ca.RequireForHosts {
		c.required.add(h, true)
	}
	return c, nil
}

// mode is the tls.ClientAuthType for a handshake naming sni.
func (c *clientAuth) mode(sni string) tls.ClientAuthType {
	if _, required := c.required.lookup(sni); required || !c.optional {
		return tls.RequireAndVerifyClientCert
	}
	return tls.VerifyClientCertIfGiven
}

// clientCertInfo describes a verified client certificate the way Envoy's
// X-Forwarded-Client-Cert does: Hash (SHA-256 of the DER), Subject, and
// each URI and DNS SAN. Nil without a verified certificate.
func clientCertInfo(cs *tls.ConnectionState) []byte {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	var b strings.Builder
	fmt.Fprintf(&b, "Hash=%s;Subject=%q", hex.EncodeToString(sum[:]), leaf.Subject.String())
	for _, u := range leaf.URIs {
		fmt.Fprintf(&b, ";URI=%s", u.String())
	}
	for _, d := range leaf.DNSNames {
		fmt.Fprintf(&b, ";DNS=%s", d)
	}
	return []byte(b.String())
}

var hdrXFCC = []byte("X-Forwarded-Client-Cert")

// withClientCert drops any X-Forwarded-Client-Cert the client sent (it
// could claim any identity) and adds the proxy's, so routes can match the
// verified identity and upstreams can trust the header.
func withClientCert(hs message.Headers, info []byte) message.Headers {
	out := hs[:0]
	for _, h := range hs {
		if !message.EqualFold(h.Name, "x-forwarded-client-cert") {
			out = append(out, h)
		}
	}
	if info != nil {
		out = append(out, message.Header{Name: hdrXFCC, Value: info})
	}
	return out
}
