#!/usr/bin/env bash
# `svcproxy run --once` from manifests and `svcproxy rules --live` (readback)
# at sizes too large for a side-by-side `nft -f` (issue 17: 100k services x
# 10 endpoints, run --once < 6 s). Like bench/cli_sync.sh's A and D, without
# B and C. Each round loads into a fresh network namespace (created here,
# flushed outside the timing, then deleted). Every round is printed (the
# machine is shared; read all of them), then the medians. Needs root.
#   bench/once_live.sh BUILD_DIR [--reps R] [--data DIR] [--no-live] [SERVICES:ENDPOINTS ...]
# --no-live leaves out rules --live: reading sets back costs the kernel
# O(elements^2 / elements per 32 KiB message) (each dump message restarts
# the set walk from its first element), about a minute of CPU at 100k x 10.
# --data keeps the generated manifests (bench/gen_manifests.py; 100k x 10 is
# 740 MB of JSON) for reuse; without it they go to a temporary directory
# under /var/tmp and are deleted at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?build dir}; shift
reps=3
data=
live=1
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --no-live) live=0; shift ;;
    *) break ;;
  esac
done
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000:10)
svcproxy=$build/svcproxy
tmp=$(mktemp -d /var/tmp/svp-bench-once.XXXXXX)
[ -n "$data" ] || data=$tmp
mkdir -p "$data"
ns=svp-bench-once-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/cli_common.sh"

echo "# run --once and rules --live, fresh netns per round, $reps rounds ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "# once: ip netns exec NS $svcproxy run --once --manifests FILE ${NODE_FLAGS[*]}"
echo "# live: ip netns exec NS $svcproxy rules --live > /dev/null   (readback of what once programmed)"
printf '%-11s %-5s %5s %8s %8s %8s %9s\n' size cmd round wall_s user_s sys_s maxrss_MB
for size in "${sizes[@]}"; do
  s=${size%%:*}; e=${size##*:}
  file=$data/cluster-${s}x${e}.json
  [ -s "$file" ] || python3 "$here/gen_manifests.py" "$s" "$e" "$file"
  : > "$tmp/once"; : > "$tmp/live"
  for ((r = 1; r <= reps; r++)); do
    ip netns add "$ns"
    # Above 30k services gen_manifests.py's NodePorts repeat: svcproxy keeps
    # the first and warns (stderr), the same in every round.
    timed "$tmp/once" ip netns exec "$ns" "$svcproxy" run --once --manifests "$file" "${NODE_FLAGS[@]}" 2> "$tmp/run.err" \
      || { tail -5 "$tmp/run.err" >&2; exit 1; }
    [ $live = 0 ] || timed "$tmp/live" ip netns exec "$ns" "$svcproxy" rules --live > /dev/null
    ip netns exec "$ns" nft flush ruleset
    ip netns del "$ns"
    for c in once live; do
      [ -s "$tmp/$c" ] || continue
      read -r w u sy m < <(tail -1 "$tmp/$c")
      printf '%-11s %-5s %5d %8s %8s %8s %9d\n' "${s}x${e}" "$c" "$r" "$w" "$u" "$sy" "$((m / 1024))"
    done
  done
  echo "# ${s}x${e}: $(grep -c . "$tmp/run.err" || true) warning lines from run --once; $(tail -1 "$tmp/run.err")"
  once_cpu=$(awk '{print $2 + $3}' "$tmp/once" | median)
  live_summary=
  if [ $live = 1 ]; then
    live_summary="rules_live_s=$(col "$tmp/live" 1) rules_live_cpu_s=$(awk '{print $2 + $3}' "$tmp/live" | median)"
  fi
  echo "SUMMARY once_live ${s}x${e} run_once_s=$(col "$tmp/once" 1) run_once_cpu_s=$once_cpu" \
    "run_once_rss_MiB=$(( $(col "$tmp/once" 4 | cut -d. -f1) / 1024 )) $live_summary" \
    "manifest_MB=$(( $(stat -c %s "$file") / 1048576 ))"
done
