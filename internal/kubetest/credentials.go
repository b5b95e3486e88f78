package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// credentials are the files the API server reads at start-up.
type credentials struct {
	cert, key string // serving cert (self-signed, also the client's CA) and key
	caPEM     []byte
	saKey     string // service-account signing key; its public half verifies
	tokens    string // static token file holding the admin user
}

// writeCredentials generates fresh keys into dir. ECDSA keeps generation
// instant; the API server accepts ES256 for service-account tokens.
func writeCredentials(dir string) (*credentials, error) {
	c := &credentials{
		cert:   filepath.Join(dir, "serving.crt"),
		key:    filepath.Join(dir, "serving.key"),
		saKey:  filepath.Join(dir, "sa.key"),
		tokens: filepath.Join(dir, "tokens.csv"),
	}

	key, err := writeKey(c.key)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "kubetest-apiserver"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: it is its own trust root
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(c.cert, c.caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}

	if _, err := writeKey(c.saKey); err != nil {
		return nil, err
	}
	// token,user,uid,"group1,group2"
	line := fmt.Sprintf("%s,kubetest-admin,kubetest-admin,\"system:masters\"\n", adminToken)
	if err := os.WriteFile(c.tokens, []byte(line), 0o600); err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	return c, nil
}

func writeKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return key, nil
}

// writeKubeconfig writes a kubeconfig for the admin token. It is written by
// hand to keep clientcmd (and its dependencies) out of the build.
func writeKubeconfig(path, server string, caPEM []byte) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kubetest-admin
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: kubetest-admin
current-context: kubetest
`, server, base64.StdEncoding.EncodeToString(caPEM), adminToken)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return nil
}
