#!/usr/bin/env bash
# First-packet latency (issue 3): TCP connect time to a ClusterIP with 10
# services vs 10k services loaded. Two identical topologies, A (10 services)
# and B (10k services), each of three namespaces created here (nothing is
# linked to the host namespace; all traffic stays inside them):
#
#   client 203.0.113.2 --- 203.0.113.1 node 10.250.0.1 --- 10.250.0.2 backend
#                                      (svcproxy run --once)   (svcproxy echo :8080)
#
# The service bench/target has ClusterIP 10.96.0.2:80 and one endpoint, the
# backend's 10.250.0.2:8080; the other services are gen_manifests.py's
# synthetic ones. One client process alternates connect by connect between
# A's and B's ClusterIP and (reference, no DNAT) A's and B's backend IP,
# entering each client namespace in turn (setns), so all targets see the same
# machine noise; A and B swap rulesets every round, so a difference between
# the two topologies (CPU placement) cancels out. Every connect is a new connection closed with a
# reset: each SYN is a conntrack miss that walks the nat chains and maps.
# Conntrack is flushed before each round. Needs root.
#   bench/latency.sh BUILD_DIR [--connects N] [--rounds K] [--data DIR] [--big S] [--counters]
# --counters (issue 14: the traffic counters' cost): both topologies hold
# the same S services; A/B alternately with counters (the default) and with
# --no-counters, so "10" below reads "with counters" and S "without".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/topology.sh"
build=${1:?build dir}; shift
connects=2000 rounds=3 data= big=10000 counters=
while [ $# -gt 0 ]; do
  case $1 in
    --connects) connects=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --big) big=$2; shift 2 ;;
    --counters) counters=1; shift ;;
    *) echo "latency.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
svcproxy=$build/svcproxy
tmp=$(mktemp -d /tmp/svp-bench-lat.XXXXXX)
[ -n "$data" ] || data=$tmp
mkdir -p "$data"
p=svp-bench-lat-$$
namespaces=()
echo_pids=()
cleanup() {
  for pid in "${echo_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NODE_FLAGS=(--hostname-override node-a --node-ip 203.0.113.1 --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/12)
TARGET=10.96.0.2:80=10.250.0.2:8080

topology() {  # name: creates $p-name-{client,node,backend} and starts the echo backend
  local cl=$p-$1-client nd=$p-$1-node be=$p-$1-backend
  for n in "$cl" "$nd" "$be"; do ip netns add "$n"; namespaces+=("$n"); done
  bench_wire "$cl" "$nd" "$be" 24
  ip -n "$be" -batch - <<EOF
link set lo up
addr add 10.250.0.2/24 dev eth0
link set eth0 up
route add default via 10.250.0.1
EOF
  ip netns exec "$be" "$svcproxy" echo --listen 0.0.0.0:8080 --id "$1" > "$tmp/echo-$1.out" 2>&1 &
  echo_pids+=($!)
  bench_wait_listening "$tmp/echo-$1.out" latency.sh
}
topology a
topology b

small=$data/latency-10.json large=$data/latency-$big.json
[ -s "$small" ] || python3 "$here/gen_manifests.py" 9 10 "$small" --target "$TARGET"
[ -s "$large" ] || python3 "$here/gen_manifests.py" $((big - 1)) 10 "$large" --target "$TARGET"
extra10=() extrabig=()
if [ -n "$counters" ]; then
  small=$large extrabig=(--no-counters)
  echo "# --counters: both topologies hold $big services; \"10\" is WITH counters, \"$big\" is --no-counters"
fi
pin_client=() pin_echo=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  # Same placement for every target: client on CPU 0, the echo backends on CPU 1.
  pin_client=(taskset -c 0)
  for pid in "${echo_pids[@]}"; do taskset -pc 1 "$pid" >/dev/null; done
fi
echo "# first-packet latency: $rounds rounds of $connects connects to each target, interleaved connect by connect"
echo "# ruleset: ip netns exec NODE $svcproxy run --once --manifests FILE ${NODE_FLAGS[*]}"
echo "#   FILE: gen_manifests.py 9 10 (10 services) or $((big - 1)) 10 ($big services), each plus bench/target;"
echo "#   topology A holds 10 services and B $big in even rounds, the other way round in odd rounds"
echo "# client: ${pin_client[*]} $build/bench/sync_bench connect A-client/10.250.0.2:8080 A-client/10.96.0.2:80 B-client/10.250.0.2:8080 B-client/10.96.0.2:80 $connects"
printf '%-24s %5s %s\n' case round result
: > "$tmp/direct"; : > "$tmp/s10"; : > "$tmp/sbig"
for ((r = 0; r < rounds; r++)); do
  if [ $((r % 2)) = 0 ]; then side10=a sidebig=b; else side10=b sidebig=a; fi
  ip netns exec "$p-$side10-node" "$svcproxy" run --once --manifests "$small" "${NODE_FLAGS[@]}" "${extra10[@]}" 2>/dev/null
  ip netns exec "$p-$sidebig-node" "$svcproxy" run --once --manifests "$large" "${NODE_FLAGS[@]}" "${extrabig[@]}" 2>/dev/null
  for side in a b; do ip netns exec "$p-$side-node" conntrack -F >/dev/null 2>&1 || true; done
  "${pin_client[@]}" "$build/bench/sync_bench" connect "$p-a-client/10.250.0.2:8080" "$p-a-client/10.96.0.2:80" \
    "$p-b-client/10.250.0.2:8080" "$p-b-client/10.96.0.2:80" "$connects" > "$tmp/round" || true
  while read -r spec result; do
    side=${spec#"$p-"}; side=${side%%-*}
    case $spec in
      */10.250.0.2:8080) label="direct (no DNAT), $side" f=direct ;;
      *) if [ "$side" = "$side10" ]; then label="ClusterIP 10 svcs, $side" f=s10; else label="ClusterIP $big svcs, $side" f=sbig; fi ;;
    esac
    printf '%-24s %5s %s\n' "$label" "$r" "$result"
    echo "$result" >> "$tmp/$f"
  done < "$tmp/round"
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
field() { grep -o "$2=[0-9.]*" "$1" | cut -d= -f2 | median; }
m10=$(field "$tmp/s10" median_us) mbig=$(field "$tmp/sbig" median_us)
p10=$(field "$tmp/s10" p99_us) pbig=$(field "$tmp/sbig" p99_us)
echo "SUMMARY latency direct median_us=$(field "$tmp/direct" median_us) p99_us=$(field "$tmp/direct" p99_us) (median over rounds)"
echo "SUMMARY latency 10svc median_us=$m10 p99_us=$p10 (median over rounds)"
echo "SUMMARY latency ${big}svc median_us=$mbig p99_us=$pbig (median over rounds)"
if [ -n "$counters" ]; then
  echo "SUMMARY counters first_packet with_counters median_us=$m10 p99_us=$p10 no_counters median_us=$mbig p99_us=$pbig" \
    "cost_pct=$(awk -v a="$m10" -v b="$mbig" 'BEGIN {printf "%.1f", (a / b - 1) * 100}') (${big} services; goal <= 3)"
  exit 0
fi
echo "SUMMARY latency ratio ${big}/10 median=$(awk -v a="$mbig" -v b="$m10" 'BEGIN {printf "%.2f", a / b}') p99=$(awk -v a="$pbig" -v b="$p10" 'BEGIN {printf "%.2f", a / b}') (goal <= 1.1)"
