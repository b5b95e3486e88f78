#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from the Go module proxy for the
# Kubernetes integration tests and caches them outside the clone, keyed by
# version. A warm cache returns at once; a cold build takes ~20 minutes.
#
# Prints the directory holding kube-apiserver and etcd on stdout.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
CACHE="${EDGE_AGENT_CACHE:-$HOME/.cache/edge-agent}/kube-testenv/kube-${KUBE_VERSION}-etcd-${ETCD_VERSION}"
STAGING_VERSION="v0${KUBE_VERSION#v1}" # v1.37.2 -> v0.37.2
KUBE_MINOR="${KUBE_VERSION#v1.}"
KUBE_MINOR="${KUBE_MINOR%%.*}" # v1.37.2 -> 37

mkdir -p "$CACHE"
log() { echo "kube-testenv: $*" >&2; }

build_etcd() {
  [[ -x "$CACHE/etcd" ]] && return
  local dir
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  cat >"$dir/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (
    cd "$dir"
    go mod init edge-agent.test/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
    go mod tidy >&2
    log "building etcd ${ETCD_VERSION}"
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$CACHE/etcd.tmp" .
  )
  mv "$CACHE/etcd.tmp" "$CACHE/etcd"
}

build_apiserver() {
  [[ -x "$CACHE/kube-apiserver" ]] && return
  local dir modfile
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBE_VERSION}.mod"
  (cd "$dir" && go mod download "k8s.io/kubernetes@${KUBE_VERSION}" >&2)
  {
    echo "module edge-agent.test/kube-apiserver"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    echo
    # Every staging module kubernetes replaces with ./staging/... is served
    # at the matching v0.x tag; the two samples are not, and are not needed.
    grep -E '=> \./staging/' "$modfile" | awk '{print $1}' |
      grep -vE '^k8s.io/sample-(cli-plugin|controller)$' |
      while read -r m; do echo "replace $m => $m ${STAGING_VERSION}"; done
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  (
    cd "$dir"
    GOFLAGS=-mod=mod go mod tidy >&2
    log "building kube-apiserver ${KUBE_VERSION} (cold: ~20 minutes)"
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${KUBE_MINOR}" \
      -o "$CACHE/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$CACHE/kube-apiserver.tmp" "$CACHE/kube-apiserver"
}

build_etcd
build_apiserver
echo "$CACHE"
