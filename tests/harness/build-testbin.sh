#!/usr/bin/env bash
# Build every program of the test harness from its Go module, at the versions in tests/harness/versions.env, into
#   ${FILEWCOUNT_TESTBIN_DIR:-${FILEWCOUNT_CACHE_DIR:-$HOME/.cache/filewcount-gitops}/testbin}/<name>-<version>/<name>
# A program whose directory is already there is not built again, so a warm machine builds nothing.
#
# Modules come from the Go module proxy and are verified against the Go checksum database (go.sum, GOSUMDB);
# nothing is downloaded from a release site. Usage: build-testbin.sh [--print-dir] [NAME ...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# versions.env holds only KEY=value lines (read by cluster.py too).
# shellcheck disable=SC1091
. "$here/versions.env"

testbin=${FILEWCOUNT_TESTBIN_DIR:-${FILEWCOUNT_CACHE_DIR:-$HOME/.cache/filewcount-gitops}/testbin}
if [ "${1:-}" = "--print-dir" ]; then
  echo "$testbin"
  exit 0
fi

command -v go >/dev/null || { echo "build-testbin: the Go toolchain (go) is not on PATH: install Go 1.26 or newer." >&2; exit 1; }
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
mkdir -p "$testbin/src"

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok metrics-server)
wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=("${all[@]}")

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-*|kubectl) echo "$KUBERNETES_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    *) echo "build-testbin: unknown program $1 (known: ${all[*]})" >&2; exit 2 ;;
  esac
}

# Move a freshly built binary into its versioned directory in one step, so a killed build leaves nothing half-done.
install_bin() {
  local name=$1 version=$2 built=$3 dest
  dest="$testbin/$name-$version"
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  mv "$built" "$dest.tmp/$name"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  echo "build-testbin: built $dest/$name"
}

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/<staging> module with a local path.
# A wrapper module requires it and replaces each of those modules with its published v0.<minor>.<patch>; the list
# is read from the release's own go.mod, not typed here.
kubernetes_module() {
  local dir="$testbin/src/kubernetes-$KUBERNETES_VERSION" gomod staging
  if [ -f "$dir/.ready" ]; then echo "$dir"; return; fi
  rm -rf "$dir" && mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "build-testbin: could not download k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
  staging="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "module filewcount.test/testbin/kubernetes"
    echo
    sed -n 's/^go \(.*\)$/go \1/p' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    # `k8s.io/api => ./staging/src/k8s.io/api` becomes `k8s.io/api => k8s.io/api v0.36.3`.
    sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*$#replace \1 => \1 '"$staging"'#p' "$gomod"
  } > "$dir/go.mod"
  grep -q '^replace k8s.io/api => ' "$dir/go.mod" || { echo "build-testbin: no staging replaces found in $gomod" >&2; exit 1; }
  (cd "$dir" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION" >/dev/null)
  touch "$dir/.ready"
  echo "$dir"
}

# The version the servers report (kubectl version, Helm's kubeVersion checks); without these it is v0.0.0-master.
kubernetes_ldflags() {
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# etcd's own main package sits in the root module (go.etcd.io/etcd/v3), whose go.mod replaces the server and client
# modules with local paths; the wrapper's main calls the server module's etcdmain.Main, as that root main.go does.
etcd_module() {
  local dir="$testbin/src/etcd-$ETCD_VERSION"
  if [ -f "$dir/.ready" ]; then echo "$dir"; return; fi
  rm -rf "$dir" && mkdir -p "$dir"
  cat > "$dir/main.go" <<'GO'
// Command etcd runs go.etcd.io/etcd/server/v3's etcdmain, exactly as etcd's own main.go does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  printf 'module filewcount.test/testbin/etcd\n\ngo 1.26.0\n' > "$dir/go.mod"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null && go mod tidy >/dev/null)
  touch "$dir/.ready"
  echo "$dir"
}

# kwok's CRDs and its definitions of the kubelet's resource metrics and of simulated usage are data files of the
# kwok module; cluster.py reads them from next to the binary, so the repository carries no copy.
kwok_files=(
  kustomize/crd/bases/kwok.x-k8s.io_metrics.yaml kustomize/crd/bases/kwok.x-k8s.io_clusterresourceusages.yaml
  kustomize/metrics/resource/metrics-resource.yaml kustomize/metrics/usage/usage-from-annotation.yaml
  kustomize/stage/node/fast/node-initialize.yaml kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml kustomize/stage/pod/fast/pod-complete.yaml kustomize/stage/pod/fast/pod-delete.yaml
)
kwok_data() {
  local dest="$testbin/kwok-$KWOK_VERSION" src="" f
  for f in "${kwok_files[@]}"; do
    [ ! -f "$dest/$f" ] || continue
    [ -n "$src" ] || src=$(cd "$testbin/src" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$dest/$(dirname "$f")"
    install -m 0644 "$src/$f" "$dest/$f"
  done
}

build_one() {
  local name=$1 version dir tmp
  version=$(version_of "$name")
  if [ -x "$testbin/$name-$version/$name" ]; then
    [ "$name" != kwok ] || kwok_data
    return
  fi
  tmp=$(mktemp -d "$testbin/src/build.XXXXXX")
  case "$name" in
    etcd)
      dir=$(etcd_module)
      (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .) ;;
    kube-*|kubectl)
      dir=$(kubernetes_module)
      (cd "$dir" && go build -trimpath -ldflags "$(kubernetes_ldflags)" -o "$tmp/$name" "k8s.io/kubernetes/cmd/$name") ;;
    kwok)
      GOBIN=$tmp go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ;;
    metrics-server)
      GOBIN=$tmp go install -trimpath -ldflags "-s -w" "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" ;;
  esac
  install_bin "$name" "$version" "$tmp/$name"
  rm -rf "$tmp"
  [ "$name" != kwok ] || kwok_data
}

start=$(date +%s)
for name in "${wanted[@]}"; do
  build_one "$name"
done
echo "build-testbin: ${wanted[*]} ready in $testbin ($(( $(date +%s) - start ))s)"
