# edge-agent build, test and run targets. `make run` and `make test` are the
# two commands in README.md; .ci/run calls `make test`.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PKGS     := ./...

.PHONY: all build test unit lint generate run bench bench-kube clean deps kube-testenv fuzz

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/edge-agent ./cmd/edge-agent
	$(GO) build -o $(BIN)/demo-backend ./hack/demo-backend

## lint: gofmt, go vet and staticcheck (pinned as a go tool in go.mod)
lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## kube-testenv: build (or find cached) the kube-apiserver and etcd the
## Kubernetes tests run against; cold ~20 minutes, cached outside the clone
kube-testenv:
	hack/kube/build.sh >/dev/null

## unit: every Go test, with the race detector
unit: kube-testenv
	KUBE_TESTENV_DIR=$$(hack/kube/build.sh) $(GO) test -race -count=1 -timeout 15m $(PKGS)

## fuzz: the request-head parser and the path normalizer, briefly (seed
## corpus in pkg/l7/wire/testdata/fuzz); FUZZTIME=5m for a longer hunt
FUZZTIME ?= 15s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReadRequestHead$$' -fuzztime $(FUZZTIME) ./pkg/l7/wire/
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeTarget$$' -fuzztime $(FUZZTIME) ./pkg/l7/wire/

## test: what CI runs
test: lint build unit fuzz

## generate: rebuild bpf/ with clang into pkg/l4's committed object and Go bindings
generate:
	$(GO) generate $(PKGS)

## run: the agent on examples/standalone.yaml with its demo backends
run: build
	hack/run-standalone.sh

## bench: wrk against direct, nginx and edge-agent; route lookup benchmarks
bench: build
	hack/bench/run.sh
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/l7/router/ ./pkg/l7/wire/ ./pkg/l7/proxy/

## bench-kube: 1,000 annotated Services against a real API server
bench-kube:
	hack/bench/kube-scale.sh

## bench-steer: sk_lookup steering vs a server bound to the port (ratios)
.PHONY: bench-steer
bench-steer:
	hack/bench/steer.sh

## bench-grpc: ghz unary gRPC against a grpc-go server direct, via nginx and via edge-agent
.PHONY: bench-grpc
bench-grpc: build
	hack/bench/grpc.sh

## bench-policy: wrk on a route with every traffic policy vs one without, one agent (ratio)
.PHONY: bench-policy
bench-policy: build
	hack/bench/policy.sh

## deps: what the tests and benchmarks use (Debian packages, h2spec, the Node.js grpc-web client)
deps:
	hack/install-deps.sh

clean:
	rm -rf $(BIN)
