#!/usr/bin/env bash
# Times `nft -f` loading svcproxy's ruleset for synthetic clusters (from
# gen_ruleset, no manifest decoding) into fresh network namespaces and counts
# the kernel objects. Needs root. Each size is loaded REPS times, each time
# into a new namespace that is emptied (`nft flush ruleset`, outside the
# timing, so the kernel's teardown does not overlap the next load) and
# deleted; the median is printed, then the 10k/2k ratio when both ran.
#   bench/nft_load.sh BUILD_DIR [--reps R] [SERVICES:ENDPOINTS ...]
set -euo pipefail
build=${1:?build dir}; shift
reps=3
if [ "${1:-}" = --reps ]; then reps=$2; shift 2; fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000:10 2000:10 10000:10 5000:50)
tmp=$(mktemp -d /tmp/svp-bench-nft.XXXXXX)
ns=svp-bench-nft-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "# nft -f of svcproxy's ruleset (bench/gen_ruleset S E), fresh netns per load, median of $reps"
printf '%-10s %8s %8s %8s %9s %8s %7s %5s %9s %10s\n' size wall_s user_s sys_s maxrss_MB chains rules sets elements script_MB
declare -A wall_of
for size in "${sizes[@]}"; do
  s=${size%%:*}; e=${size##*:}
  "$build/bench/gen_ruleset" "$s" "$e" > "$tmp/rules.nft" 2> "$tmp/counts"
  read -r chains rules sets elements < "$tmp/counts"
  : > "$tmp/times"
  for ((r = 0; r < reps; r++)); do
    ip netns add "$ns"
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" ip netns exec "$ns" nft -f "$tmp/rules.nft"
    cat "$tmp/time" >> "$tmp/times"
    ip netns exec "$ns" nft flush ruleset
    ip netns del "$ns"
  done
  wall=$(cut -d' ' -f1 "$tmp/times" | median)
  user=$(cut -d' ' -f2 "$tmp/times" | median)
  sys=$(cut -d' ' -f3 "$tmp/times" | median)
  rss=$(cut -d' ' -f4 "$tmp/times" | median)
  bytes=$(stat -c %s "$tmp/rules.nft")
  wall_of[${s}x${e}]=$wall
  printf '%-10s %8s %8s %8s %9d %8s %7s %5s %9s %10.1f\n' "${s}x${e}" "$wall" "$user" "$sys" "$((${rss%.*} / 1024))" \
    "$chains" "$rules" "$sets" "$elements" "$(awk -v b="$bytes" 'BEGIN {print b / 1048576}')"
  echo "SUMMARY nft_load ${s}x${e} wall_s=$wall user_s=$user sys_s=$sys chains=$chains rules=$rules sets=$sets elements=$elements"
done
if [ -n "${wall_of[10000x10]:-}" ] && [ -n "${wall_of[2000x10]:-}" ]; then
  echo "SUMMARY nft_load ratio 10000x10/2000x10 = $(awk -v a="${wall_of[10000x10]}" -v b="${wall_of[2000x10]}" 'BEGIN {printf "%.2f", a / b}') (goal <= 5)"
fi
