// Package kubetest runs a real etcd and kube-apiserver on loopback for
// integration tests. There is no controller-manager: objects are stored and
// validated, RBAC is enforced, but nothing reconciles them (namespaces never
// finish deleting, Deployments never get pods, no "default" ServiceAccount).
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/edge-agent/edge-agent/internal/testproc"
)

const (
	readyTimeout = 60 * time.Second
	stopGrace    = 5 * time.Second
	logTail      = 30 // lines of a process log in error messages
	adminToken   = "kubetest-admin-token"
)

// Env is a running etcd + kube-apiserver on loopback.
type Env struct {
	Config     *rest.Config         // admin credentials (group system:masters)
	Kubeconfig string               // path of a kubeconfig file for the same admin user
	Client     kubernetes.Interface // built from Config

	dir   string
	procs []*testproc.Proc // started order; stopped in reverse
}

// Start starts a fresh env for one test and stops it in t.Cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	env, stop, err := StartMain()
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Cleanup(stop)
	return env
}

// StartMain is for TestMain: it returns the env and a stop function, or an error.
func StartMain() (*Env, func(), error) {
	bin, err := Binaries()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, nil, fmt.Errorf("temp dir: %w", err)
	}
	env := &Env{dir: dir}
	if err := env.start(bin); err != nil {
		env.stop()
		return nil, nil, err
	}
	return env, sync.OnceFunc(env.stop), nil
}

func (e *Env) start(bin string) error {
	ports, err := testproc.FreePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	apiPort := ports[2]

	etcd, err := e.run(filepath.Join(bin, "etcd"), "etcd",
		"--name=kubetest",
		"--data-dir="+filepath.Join(e.dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync", // tests don't need durability; fsync dominates latency
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	// The API server retries etcd, but a dead etcd (e.g. port taken) is
	// clearer reported here than as an apiserver time-out.
	if err := waitReady(http.DefaultClient, etcdURL+"/health", etcd); err != nil {
		return fmt.Errorf("etcd: %w\n%s", err, etcd.Tail(logTail))
	}

	files, err := writeCredentials(e.dir)
	if err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	api, err := e.run(filepath.Join(bin, "kube-apiserver"), "kube-apiserver",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The endpoint reconciler refuses to publish a loopback address for
		// the "kubernetes" Service; nothing in the tests dials it anyway.
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(apiPort),
		"--etcd-servers="+etcdURL,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--tls-cert-file="+files.cert,
		"--tls-private-key-file="+files.key,
		"--token-auth-file="+files.tokens,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+files.saKey,
		"--service-account-signing-key-file="+files.saKey,
		"--authorization-mode=RBAC",
		// Without a controller-manager no namespace gets a "default"
		// ServiceAccount, so this plugin would reject every pod.
		"--disable-admission-plugins=ServiceAccount",
		// The agent's DaemonSet runs privileged; the default rejects it.
		"--allow-privileged=true",
		"--profiling=false",
	)
	if err != nil {
		return err
	}

	e.Config = &rest.Config{
		Host:            server,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: files.caPEM},
		// Tests burst; client-side throttling only slows them down.
		QPS:   100,
		Burst: 200,
	}
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return fmt.Errorf("http client: %w", err)
	}
	if err := waitReady(hc, server+"/readyz", api); err != nil {
		return fmt.Errorf("kube-apiserver: %w\n%s", err, api.Tail(logTail))
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, server, files.caPEM); err != nil {
		return err
	}
	return nil
}

// stop ends the processes newest first (apiserver before its etcd) and
// removes the temp dir.
func (e *Env) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].Stop(stopGrace)
	}
	os.RemoveAll(e.dir)
}

// run starts a child process logging to <dir>/<name>.log and adds it to
// e.procs so stop ends it.
func (e *Env) run(path, name string, args ...string) (*testproc.Proc, error) {
	p, err := testproc.Start(name, filepath.Join(e.dir, name+".log"), path, args...)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// waitReady polls url until it answers 200, p exits, or readyTimeout passes.
func waitReady(hc *http.Client, url string, p *testproc.Proc) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		last = probe(ctx, hc, url)
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited before ready: %v", p.Err())
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", readyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, hc *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(body.String()))
	}
	return nil
}

var binaries = sync.OnceValues(findBinaries)

// Binaries returns the directory holding etcd and kube-apiserver:
// $KUBE_TESTENV_DIR when set, else it runs hack/kube/build.sh (found by
// walking up from the working directory to the dir containing go.mod) and
// uses the path it prints (cached builds return at once).
func Binaries() (string, error) { return binaries() }

func findBinaries() (string, error) {
	dir := os.Getenv("KUBE_TESTENV_DIR")
	if dir == "" {
		var err error
		if dir, err = buildBinaries(); err != nil {
			return "", err
		}
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("kube test binaries: %w", err)
		}
	}
	return dir, nil
}

func buildBinaries() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "hack", "kube", "build.sh")
	// go test runs packages in parallel; a lock on the script keeps them
	// from building the same cold cache at once.
	lock, err := os.Open(script)
	if err != nil {
		return "", fmt.Errorf("kube test binaries: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", script, err)
	}
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stderr = os.Stderr // a cold build takes ~20 minutes: show progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	var last string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	if last == "" {
		return "", fmt.Errorf("%s printed no directory", script)
	}
	return last, nil
}

func moduleRoot() (string, error) {
	root, err := testproc.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("%w; set KUBE_TESTENV_DIR", err)
	}
	return root, nil
}
