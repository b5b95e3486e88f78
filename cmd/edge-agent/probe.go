package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/edge-agent/edge-agent/pkg/admin"
	"github.com/edge-agent/edge-agent/pkg/config"
)

// cmdProbe is a readiness probe that knows which agent answers: during a
// hand-over the old agent holds the admin address until the new one has
// taken over, so a plain HTTP probe of the new pod could be answered by
// the old agent.
func cmdProbe(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ready" {
		fmt.Fprintln(stderr, "usage: edge-agent probe ready [--admin ADDR] [--instance ID]")
		return 2
	}
	fs := flag.NewFlagSet("probe ready", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("admin", config.DefaultAdminAddress, "the agent's admin address")
	instance := fs.String("instance", os.Getenv("POD_NAME"), "the agent that must answer (default $POD_NAME; empty: any)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get("http://" + *addr + "/readyz")
	if err != nil {
		fmt.Fprintf(stderr, "not ready: %v\n", err)
		return 1
	}
	resp.Body.Close()
	got := resp.Header.Get(admin.InstanceHeader)
	switch {
	case resp.StatusCode != http.StatusOK:
		fmt.Fprintf(stderr, "not ready: agent %s answered %s\n", got, resp.Status)
		return 1
	case *instance != "" && got != *instance:
		fmt.Fprintf(stderr, "not ready: agent %q answered, not %q (a hand-over has not happened yet)\n", got, *instance)
		return 1
	}
	fmt.Fprintf(stdout, "ready: agent %s\n", got)
	return 0
}
