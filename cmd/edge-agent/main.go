// Command edge-agent is the node edge daemon: `run` serves traffic,
// `validate` checks a config file, `version` prints the build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/edge-agent/edge-agent/pkg/agent"
	"github.com/edge-agent/edge-agent/pkg/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `edge-agent: eBPF-accelerated L4/L7 edge for Kubernetes

Usage:
  edge-agent run --config FILE [--admin-address ADDR] [--log-level LEVEL]
  edge-agent validate FILE...
  edge-agent version
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "edge-agent: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	s := "edge-agent " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		s += " (" + bi.GoVersion + ")"
	}
	return s
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "standalone config file (YAML)")
	adminAddr := fs.String("admin-address", "", "admin listen address; overrides admin.address in the config")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "edge-agent run: --config is required (Kubernetes mode comes later)")
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "edge-agent run: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	err := agent.Run(context.Background(), agent.Options{
		ConfigPath:   *cfgPath,
		AdminAddress: *adminAddr,
		Log:          log,
		AccessLog:    slog.New(slog.NewJSONHandler(os.Stdout, nil)),
	})
	if err != nil {
		log.Error("edge-agent failed", "err", err.Error())
		printFieldErrors(stderr, err)
		return 1
	}
	return 0
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "edge-agent validate: name at least one config file")
		return 2
	}
	rc := 0
	for _, path := range args {
		if _, err := config.Load(path); err != nil {
			fmt.Fprintf(stderr, "%s: invalid\n", path)
			printFieldErrors(stderr, err)
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return rc
}

// printFieldErrors prints one line per problem, each naming its field path.
func printFieldErrors(w io.Writer, err error) {
	var fe config.Errors
	if errors.As(err, &fe) {
		for _, e := range fe {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
		return
	}
	fmt.Fprintf(w, "  %v\n", err)
}
