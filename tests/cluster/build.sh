#!/bin/sh
# Builds the real Kubernetes components (kube-apiserver, kube-controller-manager, kube-proxy,
# kubectl) and etcd from the wrapper modules in this folder, once per machine: the binaries go to
# a cache outside the work tree, keyed by the wrapper's version and a hash of its go.mod, go.sum
# and mains, so later runs, other checkouts and CI on the same machine reuse them.
# Prints the bin directory of each module (k8s first, then etcd), one per line.
# Environment: SVCPROXY_CLUSTER_CACHE (default /var/cache/svcproxy), GO (default: go on PATH, else
# /usr/local/go/bin/go), GO_BUILD_P (packages compiled at once, default: the number of cores; 24 GiB holds 2 easily).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${SVCPROXY_CLUSTER_CACHE:-/var/cache/svcproxy}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "build.sh: no Go toolchain (install Go 1.26 or set GO=)" >&2; exit 1; }

# version_of MODULEDIR MODULEPATH: the required version of MODULEPATH in MODULEDIR/go.mod.
version_of() {
  awk -v m="$2" '$1 == "require" {$1 = ""; $0 = $0} $1 == m && $2 ~ /^v/ {print $2; exit}' "$1/go.mod"
}

# key_of MODULEDIR: hash of everything that decides the binaries.
key_of() {
  (cd "$1" && find go.mod go.sum cmd -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16
}

# build NAME MODULEDIR VERSION LDFLAGS: builds ./cmd/... of MODULEDIR into the cache unless present.
build() {
  name=$1 dir=$here/$2 ver=$3 ldflags=$4
  out=$cache/$name/$ver-$(key_of "$dir")
  if [ ! -f "$out/complete" ]; then
    [ -z "$cached_only" ] || exit 1
    echo "build.sh: building $name $ver into $out (the first build takes long)" >&2
    mkdir -p "$cache/$name"
    tmp=$(mktemp -d "$cache/$name/.tmp.XXXXXX") && chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT INT TERM
    start=$(date +%s)
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$GO" build -p "${GO_BUILD_P:-$(nproc)}" -trimpath \
      -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$tmp/bin/" ./cmd/...)
    echo "build.sh: $name built in $(( $(date +%s) - start )) s" >&2
    touch "$tmp/complete"
    rm -rf "$out" && mv "$tmp" "$out"
    trap - EXIT INT TERM
  fi
  echo "$out/bin"
}

k8s=$(version_of "$here/k8s" k8s.io/kubernetes)
minor=$(echo "$k8s" | cut -d. -f2)
kv="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
kv="$kv -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
kv="$kv -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1"
kv="$kv -X k8s.io/client-go/pkg/version.gitMinor=$minor"
# --cached: print the bin directories only if nothing needs building (exit 1 otherwise).
cached_only=
if [ "${1:-}" = --cached ]; then cached_only=1; shift; fi
case ${1:-all} in
  all|k8s) build k8s k8s "$k8s" "-s -w $kv" ;;
esac
case ${1:-all} in
  all|etcd) build etcd etcd "$(version_of "$here/etcd" go.etcd.io/etcd/server/v3)" "-s -w" ;;
esac
