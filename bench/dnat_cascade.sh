#!/usr/bin/env bash
# Worst case of the DNAT cascade (dataplane/README.md): a new connection to a
# service whose endpoint count is the K-th distinct one walks K-1 missing
# maps first. One node programmed by `svcproxy run --once` with services of
# every endpoint count 1..K; two targets on the same backend:
#   first  10.96.0.2:80, 1 endpoint   (dnat-1: the first map tried)
#   last   10.96.0.3:80, K endpoints  (dnat-K: the last map tried)
#   direct 10.250.0.2:8080            (no DNAT; every class set misses)
# The backend answers on K addresses 10.250.0.2.. (`svcproxy echo` on
# 0.0.0.0:8080), so every endpoint of `last` is real. Three namespaces of its
# own, deleted at exit; nothing leaves them. Needs root.
# --control: no other services, so `last` is the second map tried (its
# extra cost is then the K endpoints, not the cascade).
#   bench/dnat_cascade.sh BUILD_DIR [--distinct K] [--connects N] [--control]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/topology.sh"
build=${1:?build dir}; shift
distinct=100 connects=5000 control=0
while [ $# -gt 0 ]; do
  case $1 in
    --distinct) distinct=$2; shift 2 ;;
    --connects) connects=$2; shift 2 ;;
    --control) control=1; shift ;;
    *) echo "dnat_cascade.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$distinct" -ge 2 ] && [ "$distinct" -le 200 ] || { echo "--distinct must be 2..200" >&2; exit 2; }
tmp=$(mktemp -d /tmp/svp-bench-cascade.XXXXXX)
p=svp-bench-casc-$$
cl=$p-client nd=$p-node be=$p-backend
echo_pid=
cleanup() {
  [ -n "$echo_pid" ] && { kill "$echo_pid" 2>/dev/null || true; wait "$echo_pid" 2>/dev/null || true; }
  for n in "$cl" "$nd" "$be"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in "$cl" "$nd" "$be"; do ip netns add "$n"; done
bench_wire "$cl" "$nd" "$be" 16
{
  echo "link set lo up"
  for ((i = 0; i < distinct; i++)); do echo "addr add 10.250.$(( (2 + i) / 256 )).$(( (2 + i) % 256 ))/16 dev eth0"; done
  echo "link set eth0 up"
  echo "route add default via 10.250.0.1"
} | ip -n "$be" -batch -
ip netns exec "$be" "$build/svcproxy" echo --listen 0.0.0.0:8080 --id backend > "$tmp/echo.out" 2>&1 &
echo_pid=$!
bench_wait_listening "$tmp/echo.out" dnat_cascade.sh

HERE=$here CONTROL=$control python3 - "$distinct" "$tmp/cluster.json" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ["HERE"])
import gen_manifests as g
k, out = int(sys.argv[1]), sys.argv[2]
services, slices = [], []
pod = g.POD_BASE
for n in range(1, k) if os.environ["CONTROL"] == "0" else []:  # one service of every other count
    name = f"count-{n}"
    services.append(g.service(name, f"10.96.1.{n}", 80, 8080, None))
    slices.append(g.slice_(name, [(g.ip(pod + i), "node-b") for i in range(n)], 8080))
    pod += n
backend = [g.ip(int(g.ipaddress.IPv4Address("10.250.0.2")) + i) for i in range(k)]
services.append(g.service("first", "10.96.0.2", 80, 8080, None))
slices.append(g.slice_("first", [(backend[0], "node-b")], 8080))
services.append(g.service("last", "10.96.0.3", 80, 8080, None))
slices.append(g.slice_("last", [(b, "node-b") for b in backend], 8080))
with open(out, "w") as f:
    json.dump({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": services + slices}, f)
EOF
ip netns exec "$nd" "$build/svcproxy" run --once --manifests "$tmp/cluster.json" --hostname-override node-a \
  --node-ip 203.0.113.1 --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/12 2> "$tmp/run.err" \
  || { cat "$tmp/run.err" >&2; exit 1; }
maps=$(ip netns exec "$nd" nft list chain ip svcproxy dnat-maps 2>/dev/null | grep -c "jump dnat-" || true)
echo "# $distinct distinct endpoint counts: dnat-maps jumps to $maps maps; first = dnat-1 (tried first), last = dnat-$distinct (tried last)"
echo "# client: taskset -c 0 $build/bench/sync_bench connect $cl/10.96.0.2:80 $cl/10.96.0.3:80 $cl/10.250.0.2:8080 $connects"
taskset -c 0 "$build/bench/sync_bench" connect "$cl/10.96.0.2:80" "$cl/10.96.0.3:80" "$cl/10.250.0.2:8080" "$connects"
