#!/bin/sh
# Regenerates tests/cluster/k8s/go.mod for a Kubernetes release: k8s.io/kubernetes requires its
# staging modules at v0.0.0 and replaces them with ./staging paths, which a dependency's go.mod
# cannot do for us, so this module replaces each one with its published tag v0.<minor>.<patch>.
# The list comes from the release's own go.mod, never by hand. Usage: gen-k8s-module.sh 1.37.2
set -eu
K=${1:?usage: $0 KUBERNETES_VERSION}
S=v0.${K#1.}
cd "$(dirname "$0")/k8s"
GOMOD=$(go mod download -json "k8s.io/kubernetes@v$K" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$GOMOD" ] || { echo "cannot download k8s.io/kubernetes@v$K" >&2; exit 1; }
rm -f go.mod go.sum
go mod init svcproxy.invalid/k8sbins
go mod edit -go="$(awk '$1 == "go" {print $2; exit}' "$GOMOD")"
for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$GOMOD"); do
  go mod edit -replace "$m=$m@$S"
done
go mod edit -require "k8s.io/kubernetes@v$K"
go mod tidy
