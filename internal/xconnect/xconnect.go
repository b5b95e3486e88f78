// Package xconnect turns on RFC 8441 extended CONNECT (WebSockets over
// HTTP/2) in net/http's and golang.org/x/net/http2's HTTP/2 servers. Both
// read the setting from $GODEBUG when they initialize, and only from
// there, so it must be in the environment before they do: import this
// package for its side effect. Go initializes packages in import-path
// order once their imports are ready, and this package (which imports
// only os and strings) sorts before net/http and golang.org/x/net.
package xconnect

import (
	"os"
	"strings"
)

func init() {
	g := os.Getenv("GODEBUG")
	if strings.Contains(g, "http2xconnect=") {
		return // the operator decided
	}
	if g != "" {
		g += ","
	}
	_ = os.Setenv("GODEBUG", g+"http2xconnect=1")
}
