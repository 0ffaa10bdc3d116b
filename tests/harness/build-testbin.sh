#!/usr/bin/env bash
# Build every program of the test harness from its Go module, at the versions in tests/harness/versions.env, into
#   ${FILEWCOUNT_TESTBIN_DIR:-${FILEWCOUNT_CACHE_DIR:-$HOME/.cache/filewcount-gitops}/testbin}/<name>-<version>/<name>
# A program whose directory is already there is not built again, so a warm machine builds nothing.
#
# Modules come from the Go module proxy and are verified against the Go checksum database (go.sum, GOSUMDB);
# nothing is downloaded from a release site. Usage: build-testbin.sh [--print-dir] [NAME ...]
set -euo pipefail
# A failure inside $(...) (e.g. a `go get` in a *_module function) stops the build instead of marking it ready.
shopt -s inherit_errexit

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
# One build at a time per cache: a second run (make's testbin target while .ci/run builds in the background) waits
# here, then finds every program built.
if command -v flock >/dev/null; then
  exec 9>"$testbin/.build.lock"
  flock 9
fi

flux_controllers=(source-controller kustomize-controller helm-controller notification-controller)
all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok metrics-server "${flux_controllers[@]}" helm
  keda-operator keda-adapter amtool promtool)
wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=("${all[@]}")

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-*|kubectl) echo "$KUBERNETES_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    source-controller) echo "$SOURCE_CONTROLLER_VERSION" ;;
    kustomize-controller) echo "$KUSTOMIZE_CONTROLLER_VERSION" ;;
    helm-controller) echo "$HELM_CONTROLLER_VERSION" ;;
    notification-controller) echo "$NOTIFICATION_CONTROLLER_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    keda-*) echo "$KEDA_VERSION" ;;
    amtool) echo "$ALERTMANAGER_VERSION" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
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

# Print a go.mod's replace directives whose target is a published module version (`old => new vX`, single or in a
# `replace ( ... )` block), one `replace` line each; those with a local target (`=> ./api`) are left out.
published_replaces() {
  awk '
    { sub(/[ \t]*\/\/.*/, ""); sub(/[ \t]+$/, ""); spec = "" }
    /^replace[ \t]*\($/ { block = 1; next }
    block && /^[ \t]*\)$/ { block = 0; next }
    block { spec = $0 }
    !block && $1 == "replace" { spec = $0; sub(/^replace[ \t]+/, "", spec) }
    spec != "" {
      split(spec, side, /[ \t]*=>[ \t]*/)
      sub(/^[ \t]+/, "", side[1])
      if (split(side[2], target, /[ \t]+/) == 2 && target[1] !~ /^[.\/]/) print "replace " side[1] " => " side[2]
    }
  ' "$1"
}

# Module versions the Go module proxy lists (.info, .mod) but whose source it refuses to serve (403 on the .zip), each
# with a published version of the same source. github.com/fluxcd/pkg/artifact v0.18.2 (required by source-controller
# v1.9.4) differs from v0.18.1 only in go.mod: it requires fluxcd/pkg/oci v0.68.1 instead of v0.68.0, and
# source-controller requires oci v0.68.1 itself, so the selected modules stay the same.
proxy_substitutes=(
  "github.com/fluxcd/pkg/artifact v0.18.2 => github.com/fluxcd/pkg/artifact v0.18.1"
)

# Helm's module path for HELM_VERSION (helm.sh/helm/v4 for v4.x).
helm_module() {
  echo "helm.sh/helm/${HELM_VERSION%%.*}"
}

# The Flux controllers cannot be `go install`ed either: each go.mod replaces its own api module with ./api. A wrapper
# module requires the controller and that api module, published at the same tag, and copies the release's other
# replaces that name a published module version, read from the release's own go.mod. The changes: a replace of Helm
# (helm-controller pins Flux's Helm fork, which the Go module proxy does not serve) pins HELM_VERSION instead, the
# Helm the CLI is built from (see versions.env), and a required module version in proxy_substitutes is replaced.
flux_module() {
  local name=$1 version=$2 dir="$testbin/src/$1-$2" gomod helm sub
  if [ -f "$dir/.ready" ]; then echo "$dir"; return; fi
  rm -rf "$dir" && mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "github.com/fluxcd/$name@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "build-testbin: could not download github.com/fluxcd/$name@$version" >&2; exit 1; }
  grep -q "^replace github.com/fluxcd/$name/api => ./api\$" "$gomod" \
    || { echo "build-testbin: $gomod does not replace its api module with ./api" >&2; exit 1; }
  helm=$(helm_module)
  {
    echo "module filewcount.test/testbin/$name"
    echo
    sed -n 's/^go \(.*\)$/go \1/p' "$gomod"
    echo
    echo "require ("
    printf '\t%s %s\n' "github.com/fluxcd/$name" "$version" "github.com/fluxcd/$name/api" "$version"
    echo ")"
    echo
    published_replaces "$gomod" | sed "s#^replace \($helm\) => .*\$#replace \1 => \1 $HELM_VERSION#"
    for sub in "${proxy_substitutes[@]}"; do
      if grep -q "^[[:space:]]*${sub% =>*}\( //.*\)\{0,1\}\$" "$gomod"; then echo "replace $sub"; fi
    done
  } > "$dir/go.mod"
  (cd "$dir" && go get "github.com/fluxcd/$name@$version" >/dev/null)
  touch "$dir/.ready"
  echo "$dir"
}

# A module that cannot be `go install`ed because its go.mod has replace (or exclude) directives: its source, as the
# Go module proxy serves it (checked against go.sum and the checksum database), is copied to a folder of its own
# (src/<name>-<version>) and built there with its own go.mod and go.sum, as its release build does.
copied_module() {
  local name=$1 module=$2 version=$3 dir="$testbin/src/$1-$3" src
  if [ -f "$dir/.ready" ]; then echo "$dir"; return; fi
  src=$(module_dir "$module@$version")
  [ -f "$src/go.mod" ] || { echo "build-testbin: could not download $module@$version" >&2; exit 1; }
  rm -rf "$dir" && cp -R "$src" "$dir" && chmod -R u+w "$dir"
  (cd "$dir" && go mod download >/dev/null)
  touch "$dir/.ready"
  echo "$dir"
}

# KEDA's go.mod pins Kubernetes and Prometheus modules with replace directives; its Makefile builds with CGO_ENABLED=0.
keda_module() {
  copied_module keda github.com/kedacore/keda/v2 "$KEDA_VERSION"
}

# Prometheus's go.mod replaces cloud.google.com/go and excludes three module versions, so promtool is built in a copy
# of the module too, with the build tag of its release build (.promu.yml: netgo).
prometheus_module() {
  copied_module prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION"
}

# kwok's CRDs (Metric, ClusterResourceUsage, ClusterPortForward, Logs) and its definitions of the kubelet's resource
# metrics and of simulated usage are data files of the kwok module; cluster.py reads them from next to the binary,
# so the repository carries no copy.
kwok_files=(
  kustomize/crd/bases/kwok.x-k8s.io_metrics.yaml kustomize/crd/bases/kwok.x-k8s.io_clusterresourceusages.yaml
  kustomize/crd/bases/kwok.x-k8s.io_clusterportforwards.yaml kustomize/crd/bases/kwok.x-k8s.io_logs.yaml
  kustomize/metrics/resource/metrics-resource.yaml kustomize/metrics/usage/usage-from-annotation.yaml
  kustomize/stage/node/fast/node-initialize.yaml kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml kustomize/stage/pod/fast/pod-complete.yaml kustomize/stage/pod/fast/pod-delete.yaml
)
# Where the module cache holds a module's files.
module_dir() {
  (cd "$testbin/src" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

kwok_data() {
  local dest="$testbin/kwok-$KWOK_VERSION" src="" f
  for f in "${kwok_files[@]}"; do
    [ ! -f "$dest/$f" ] || continue
    [ -n "$src" ] || src=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
    mkdir -p "$dest/$(dirname "$f")"
    install -m 0644 "$src/$f" "$dest/$f"
  done
}

# A Flux controller's CRDs (config/crd/bases of its module), next to its binary: the stand-in flux CLI's
# `install --export` and the harness apply these, so the cluster has the CRDs the controllers were built with.
flux_crds() {
  local name=$1 version=$2 dest="$testbin/$1-$2/crds" src
  [ ! -d "$dest" ] || return 0
  src=$(module_dir "github.com/fluxcd/$name@$version")
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  install -m 0644 "$src"/config/crd/bases/*.yaml "$dest.tmp/"
  mv "$dest.tmp" "$dest"
}

# What a program needs beside its binary.
data_files() {
  case "$1" in
    kwok) kwok_data ;;
    *-controller) flux_crds "$1" "$2" ;;
  esac
}

build_one() {
  local name=$1 version dir tmp
  version=$(version_of "$name")
  if [ -x "$testbin/$name-$version/$name" ]; then
    data_files "$name" "$version"
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
    *-controller)
      # The main package is the module root (main.go), built with CGO_ENABLED=0 as the release images are.
      dir=$(flux_module "$name" "$version")
      (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$tmp/$name" "github.com/fluxcd/$name") ;;
    helm)
      # Without -X, `helm version` reports "v4.2" (the default in Helm's internal/version).
      GOBIN=$tmp go install -trimpath \
        -ldflags "-s -w -X $(helm_module)/internal/version.version=$HELM_VERSION -X $(helm_module)/internal/version.gitTreeState=clean" \
        "$(helm_module)/cmd/helm@$HELM_VERSION" ;;
    amtool)
      GOBIN=$tmp go install -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}" \
        "github.com/prometheus/alertmanager/cmd/amtool@$ALERTMANAGER_VERSION" ;;
    promtool)
      # The module is v0.<major><minor>.<patch>; the release version promtool reports (3.14.0) is its VERSION file.
      dir=$(prometheus_module)
      (cd "$dir" && go build -trimpath -tags netgo \
        -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(cat VERSION)" -o "$tmp/promtool" ./cmd/promtool) ;;
    keda-operator|keda-adapter)
      # cmd/operator is the image's /keda, cmd/adapter its /keda-adapter (the metrics API server).
      dir=$(keda_module)
      (cd "$dir" && go build -trimpath -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" \
        -o "$tmp/$name" "./cmd/${name#keda-}") ;;
  esac
  install_bin "$name" "$version" "$tmp/$name"
  rm -rf "$tmp"
  data_files "$name" "$version"
}

start=$(date +%s)
for name in "${wanted[@]}"; do
  build_one "$name"
done
echo "build-testbin: ${wanted[*]} ready in $testbin ($(( $(date +%s) - start ))s)"
