#!/usr/bin/env bash
# The cost of the traffic counters (issue 14): `svcproxy run --once` from
# manifests with counters (the default) and with --no-counters, side by
# side, interleaved round by round, each round in a fresh network namespace
# (created here, deleted after). Prints every round, then the medians and
# the relative cost. Needs root.
#   bench/counters_bench.sh BUILD_DIR [--reps R] [SERVICES:ENDPOINTS]   (default 10000:10)
# First-packet latency with and without counters: bench/latency.sh --counters.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?build dir}; shift
reps=3
if [ "${1:-}" = --reps ]; then reps=$2; shift 2; fi
size=${1:-10000:10}
svcproxy=$build/svcproxy
tmp=$(mktemp -d /var/tmp/svp-bench-counters.XXXXXX)
ns=svp-bench-counters-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$here/cli_common.sh"
s=${size%%:*}; e=${size##*:}
file=$tmp/cluster-${s}x${e}.json
python3 "$here/gen_manifests.py" "$s" "$e" "$file"
echo "# run --once with and without counters, ${s}x${e}, $reps rounds ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "# ip netns exec NS $svcproxy run --once --manifests FILE ${NODE_FLAGS[*]} [--no-counters]"
printf '%-9s %5s %8s %8s %8s %9s\n' variant round wall_s user_s sys_s maxrss_MB
: > "$tmp/on"; : > "$tmp/off"
for ((r = 1; r <= reps; r++)); do
  for v in on off; do
    extra=(); [ $v = off ] && extra=(--no-counters)
    ip netns add "$ns"
    timed "$tmp/$v" ip netns exec "$ns" "$svcproxy" run --once --manifests "$file" "${NODE_FLAGS[@]}" "${extra[@]}" \
      2> "$tmp/run.err" || { tail -5 "$tmp/run.err" >&2; exit 1; }
    ip netns del "$ns"
    read -r w u sy m < <(tail -1 "$tmp/$v")
    printf '%-9s %5d %8s %8s %8s %9d\n' "counters-$v" "$r" "$w" "$u" "$sy" "$((m / 1024))"
  done
done
on=$(col "$tmp/on" 1); off=$(col "$tmp/off" 1)
echo "SUMMARY counters ${s}x${e} run_once_s=$on run_once_no_counters_s=$off" \
  "cost_pct=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.0f", (a / b - 1) * 100 }')"
