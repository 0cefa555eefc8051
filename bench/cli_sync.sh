#!/usr/bin/env bash
# Full sync end to end (issue 3), side by side for each size:
#   A  svcproxy run --once --manifests FILE   (decode + compile + netlink, one transaction)
#   B  nft -f RULES                           (RULES = `svcproxy rules` of the same FILE)
#   C  svcproxy rules --manifests FILE        (decode + compile + render, no kernel)
#   D  svcproxy rules --live                  (netlink readback of what A programmed)
# A and B each load into a fresh network namespace (created here, flushed
# outside the timing, then deleted); C runs in no namespace at all (it does
# not touch the kernel). Rounds alternate A and B; medians of REPS rounds.
# Needs root.
#   bench/cli_sync.sh BUILD_DIR [--reps R] [--data DIR] [SERVICES:ENDPOINTS ...]
# --data keeps the generated manifests (bench/gen_manifests.py) for reuse.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?build dir}; shift
reps=3
data=
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) break ;;
  esac
done
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000:10 10000:10 50000:2)
svcproxy=$build/svcproxy
tmp=$(mktemp -d /tmp/svp-bench-cli.XXXXXX)
[ -n "$data" ] || data=$tmp
mkdir -p "$data"
ns=svp-bench-cli-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/cli_common.sh"

echo "# full sync end to end, fresh netns per load, median of $reps rounds (A and B alternate)"
echo "# A: ip netns exec NS $svcproxy run --once --manifests FILE ${NODE_FLAGS[*]}"
echo "# B: ip netns exec NS nft -f RULES   (RULES: $svcproxy rules --manifests FILE ${NODE_FLAGS[*]})"
echo "# C: $svcproxy rules --manifests FILE ${NODE_FLAGS[*]} > /dev/null   (decode+compile+render, no kernel)"
echo "# D: ip netns exec NS $svcproxy rules --live > /dev/null   (readback of A's ruleset)"
printf '%-10s %-3s %8s %8s %8s %9s\n' size cmd wall_s user_s sys_s maxrss_MB
for size in "${sizes[@]}"; do
  s=${size%%:*}; e=${size##*:}
  file=$data/cluster-${s}x${e}.json
  [ -s "$file" ] || python3 "$here/gen_manifests.py" "$s" "$e" "$file"
  # Above 30k services gen_manifests.py's NodePorts (30000 + s % 30000) repeat:
  # svcproxy keeps the first and warns, identically in every command below.
  "$svcproxy" rules --manifests "$file" "${NODE_FLAGS[@]}" > "$tmp/rules.nft" 2> "$tmp/rules.err"
  if [ -s "$tmp/rules.err" ]; then
    echo "# ${s}x${e}: svcproxy warned $(wc -l < "$tmp/rules.err") times, e.g. $(head -1 "$tmp/rules.err")"
  fi
  : > "$tmp/A"; : > "$tmp/B"; : > "$tmp/C"; : > "$tmp/D"
  for ((r = 0; r < reps; r++)); do
    ip netns add "$ns"
    timed "$tmp/A" ip netns exec "$ns" "$svcproxy" run --once --manifests "$file" "${NODE_FLAGS[@]}" 2> "$tmp/run.err" \
      || { cat "$tmp/run.err" >&2; exit 1; }
    timed "$tmp/D" ip netns exec "$ns" "$svcproxy" rules --live > "$tmp/live.nft"
    if [ "$r" -eq 0 ] && ! cmp -s "$tmp/live.nft" "$tmp/rules.nft"; then
      echo "WARNING ${s}x${e}: rules --live after run --once differs from svcproxy rules" >&2
    fi
    ip netns exec "$ns" nft flush ruleset
    ip netns del "$ns"

    ip netns add "$ns"
    timed "$tmp/B" ip netns exec "$ns" nft -f "$tmp/rules.nft"
    ip netns exec "$ns" nft flush ruleset
    ip netns del "$ns"

    timed "$tmp/C" "$svcproxy" rules --manifests "$file" "${NODE_FLAGS[@]}" > /dev/null 2>&1
  done
  for c in A B C D; do
    printf '%-10s %-3s %8s %8s %8s %9d\n' "${s}x${e}" "$c" "$(col "$tmp/$c" 1)" "$(col "$tmp/$c" 2)" "$(col "$tmp/$c" 3)" \
      "$(( $(col "$tmp/$c" 4 | cut -d. -f1) / 1024 ))"
  done
  a=$(col "$tmp/A" 1); b=$(col "$tmp/B" 1)
  # CPU time (user + sys) is what other work on the machine inflates least.
  cpu_a=$(awk '{print $2 + $3}' "$tmp/A" | median); cpu_b=$(awk '{print $2 + $3}' "$tmp/B" | median)
  echo "SUMMARY cli_sync ${s}x${e} run_once_s=$a (user $(col "$tmp/A" 2) sys $(col "$tmp/A" 3) rss_MiB $(( $(col "$tmp/A" 4 | cut -d. -f1) / 1024 ))) nft_f_s=$b (user $(col "$tmp/B" 2) sys $(col "$tmp/B" 3)) wall_ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}') cpu_s=$cpu_a/$cpu_b cpu_ratio=$(awk -v a="$cpu_a" -v b="$cpu_b" 'BEGIN {printf "%.2f", a / b}') rules_no_kernel_s=$(col "$tmp/C" 1) rules_live_s=$(col "$tmp/D" 1) manifest_MB=$(( $(stat -c %s "$file") / 1048576 ))"
done
