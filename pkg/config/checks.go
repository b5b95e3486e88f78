package config

import (
	"errors"
	"fmt"
	"strings"
)

// Exported checks for sources that parse their own input (Kubernetes
// annotations) and must reject a value before it reaches the model, with the
// same rules Validate applies.

// CheckHostPattern accepts a lower-case hostname or "*." followed by one.
func CheckHostPattern(h string) error { return checkHostPattern(h) }

// CheckHostname accepts a lower-case RFC 1123 hostname.
func CheckHostname(h string) error { return checkHostname(h) }

// CheckPath accepts an absolute request path without query, fragment,
// spaces or control characters.
func CheckPath(path string) error {
	var e errs
	checkPath(&e, "", path)
	if len(e.list) > 0 {
		return errors.New(e.list[0].Reason)
	}
	return nil
}

// CheckHeaderName accepts an RFC 9110 token that the proxy lets routes set.
func CheckHeaderName(name string) error {
	if !isToken(name) {
		return fmt.Errorf("%q is not a valid header name", name)
	}
	if reservedHeaders[strings.ToLower(name)] {
		return fmt.Errorf("%q is managed by the proxy and cannot be changed", name)
	}
	return nil
}

// CheckHeaderValue accepts a header value without control characters.
func CheckHeaderValue(v string) error {
	var e errs
	checkHeaderValue(&e, "", v)
	if len(e.list) > 0 {
		return errors.New(e.list[0].Reason)
	}
	return nil
}

// IsToken reports whether s is an RFC 9110 token (header, cookie and method names).
func IsToken(s string) bool { return isToken(s) }
