package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

const exampleConfig = "../../examples/standalone.yaml"

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = realMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateExample(t *testing.T) {
	code, stdout, stderr := run(t, "validate", exampleConfig)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if want := exampleConfig + ": ok\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want empty", stderr)
	}
}

func TestValidateBrokenFiles(t *testing.T) {
	tests := []struct {
		file string
		// want are the lines printed after "FILE: invalid", in order
		// (listeners, clusters, then routes).
		want []string
	}{
		{
			file: "dangling-cluster.yaml",
			want: []string{`  routes[0].backends[0].cluster: no cluster named "nope"`},
		},
		{
			file: "many-errors.yaml",
			want: []string{
				`  listeners[1].tls.certificates: protocol https needs at least one certificate (or tls.passthrough)`,
				`  clusters[0].lbPolicy: must be one of round_robin, least_request, random, maglev; got "fastest"`,
				`  routes[0].listeners[1]: no listener named "admin"`,
				`  routes[0].hosts[0]: "Foo.com" is not a valid hostname (lower-case letters, digits, '-' and '.')`,
				`  routes[0].match.path.exact: "index.html" must start with /`,
				`  routes[0].match.methods[0]: "get" is not an upper-case HTTP method`,
				`  routes[0].requestHeaders.set[0].name: "Host" is managed by the proxy and cannot be changed here`,
				`  routes[1].redirect.code: must be one of 301, 302, 303, 307, 308; got 200`,
			},
		},
		{
			file: "unknown-field.yaml",
			want: []string{
				"  listeners[0].protcol: line 4: field protcol not found in type config.Listener",
			},
		},
		{
			file: "bare-number-timeout.yaml",
			want: []string{`  routes[0].timeout: line 6: want a duration string such as "30s", got "30"`},
		},
		{
			file: "empty.yaml",
			want: []string{"  testdata/empty.yaml: config is empty"},
		},
		{
			file: "does-not-exist.yaml",
			want: []string{"  read config: open testdata/does-not-exist.yaml: no such file or directory"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			code, stdout, stderr := run(t, "validate", path)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want empty", stdout)
			}
			want := path + ": invalid\n" + strings.Join(tt.want, "\n") + "\n"
			if stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
			}
		})
	}
}

// Every file is checked even after a failure; the exit code reflects any failure.
func TestValidateSeveralFiles(t *testing.T) {
	bad := filepath.Join("testdata", "dangling-cluster.yaml")
	code, stdout, stderr := run(t, "validate", bad, exampleConfig, filepath.Join("testdata", "empty.yaml"))
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := exampleConfig + ": ok\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	for _, want := range []string{
		bad + ": invalid\n",
		`routes[0].backends[0].cluster: no cluster named "nope"`,
		"empty.yaml: invalid\n",
		"config is empty",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	code, stdout, _ = run(t, "validate", exampleConfig, exampleConfig)
	if code != 0 || strings.Count(stdout, ": ok\n") != 2 {
		t.Errorf("two good files: exit %d, stdout %q; want 0 and two ok lines", code, stdout)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" means stdout must be empty
		wantStderr string // substring; "" means stderr must be empty
	}{
		{
			name:       "no arguments",
			args:       nil,
			wantCode:   2,
			wantStderr: "Usage:",
		},
		{
			name:       "validate without files",
			args:       []string{"validate"},
			wantCode:   2,
			wantStderr: "edge-agent validate: name at least one config file",
		},
		{
			name:       "version",
			args:       []string{"version"},
			wantCode:   0,
			wantStdout: "edge-agent " + version,
		},
		{
			name:       "help",
			args:       []string{"help"},
			wantCode:   0,
			wantStdout: "edge-agent validate FILE...",
		},
		{
			name:       "--help",
			args:       []string{"--help"},
			wantCode:   0,
			wantStdout: "Usage:",
		},
		{
			name:       "unknown command",
			args:       []string{"frobnicate"},
			wantCode:   2,
			wantStderr: `edge-agent: unknown command "frobnicate"`,
		},
		{
			name:       "flag as command",
			args:       []string{"--config", exampleConfig},
			wantCode:   2,
			wantStderr: `unknown command "--config"`,
		},
		{
			name:       "run without --config",
			args:       []string{"run"},
			wantCode:   2,
			wantStderr: "edge-agent run: --config is required",
		},
		{
			name:       "run with empty --config",
			args:       []string{"run", "--config="},
			wantCode:   2,
			wantStderr: "--config is required",
		},
		{
			name:       "run with unknown flag",
			args:       []string{"run", "--bogus"},
			wantCode:   2,
			wantStderr: "flag provided but not defined: -bogus",
		},
		{
			name:       "run with bad log level",
			args:       []string{"run", "--config", exampleConfig, "--log-level", "loud"},
			wantCode:   2,
			wantStderr: "edge-agent run: --log-level:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			check := func(stream, got, want string) {
				switch {
				case want == "" && got != "":
					t.Errorf("%s = %q, want empty", stream, got)
				case want != "" && !strings.Contains(got, want):
					t.Errorf("%s lacks %q:\n%s", stream, want, got)
				}
			}
			check("stdout", stdout, tt.wantStdout)
			check("stderr", stderr, tt.wantStderr)
		})
	}
}

func TestVersionString(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v1.2.3"
	code, stdout, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "edge-agent v1.2.3") || !strings.HasSuffix(stdout, "\n") {
		t.Errorf("version: exit %d, stdout %q; want 0 and a line starting %q", code, stdout, "edge-agent v1.2.3")
	}
}
