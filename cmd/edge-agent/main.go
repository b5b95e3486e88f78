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

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/edge-agent/edge-agent/pkg/agent"
	"github.com/edge-agent/edge-agent/pkg/config"
	"github.com/edge-agent/edge-agent/pkg/l4"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `edge-agent: eBPF-accelerated L4/L7 edge for Kubernetes

Usage:
  edge-agent run --config FILE [--admin-address ADDR] [--log-level LEVEL]
                 [--pin-dir DIR] [--after-handover exit|wait]
                 [--kubernetes [--kubeconfig FILE] [--node-name NAME] [--lease-namespace NS]]
  edge-agent validate FILE...
  edge-agent bpf status|services|backends|conntrack|cleanup [--pin-dir DIR]
  edge-agent probe ready [--admin ADDR] [--instance ID]
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
	case "bpf":
		return cmdBPF(args[1:], stdout, stderr)
	case "probe":
		return cmdProbe(args[1:], stdout, stderr)
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
	kube := fs.Bool("kubernetes", false, "also serve annotated Services (in-cluster credentials unless --kubeconfig)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file for Kubernetes mode (implies --kubernetes)")
	nodeName := fs.String("node-name", os.Getenv("NODE_NAME"), "this agent's identity in Events and the leader Lease (default $NODE_NAME, else the hostname)")
	leaseNS := fs.String("lease-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the Lease electing the agent that writes Events (default $POD_NAMESPACE; empty: this agent writes them)")
	pinDir := fs.String("pin-dir", l4.DefaultPinDir, "bpffs directory for the eBPF maps and links (kept across restarts)")
	afterHandover := fs.String("after-handover", "exit", "what a steering agent does once a new one took over and it drained: exit, or wait (for SIGTERM; use in a DaemonSet, where an exit restarts the container)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *afterHandover != "exit" && *afterHandover != "wait" {
		fmt.Fprintf(stderr, "edge-agent run: --after-handover must be exit or wait, got %q\n", *afterHandover)
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "edge-agent run: --config is required (in Kubernetes mode it holds the node-wide settings)")
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "edge-agent run: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	opts := agent.Options{
		ConfigPath:   *cfgPath,
		AdminAddress: *adminAddr,
		Log:          log,
		AccessLog:    slog.New(slog.NewJSONHandler(os.Stdout, nil)),
		BPFPinDir:    *pinDir,

		WaitAfterHandover: *afterHandover == "wait",
	}
	if *kube || *kubeconfig != "" {
		k, err := kubernetesOptions(*kubeconfig, *nodeName, *leaseNS)
		if err != nil {
			fmt.Fprintf(stderr, "edge-agent run: %v\n", err)
			return 1
		}
		opts.Kubernetes = k
	}
	err := agent.Run(context.Background(), opts)
	if err != nil {
		log.Error("edge-agent failed", "err", err.Error())
		printFieldErrors(stderr, err)
		return 1
	}
	return 0
}

// kubernetesOptions builds the client from a kubeconfig file or, without
// one, the in-cluster service account.
func kubernetesOptions(kubeconfig, identity, leaseNS string) (*agent.KubernetesOptions, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes credentials: %w", err)
	}
	cfg.UserAgent = "edge-agent/" + version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if identity == "" {
		if identity, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("--node-name not set and no hostname: %w", err)
		}
	}
	return &agent.KubernetesOptions{Client: client, Identity: identity, LeaseNamespace: leaseNS}, nil
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
