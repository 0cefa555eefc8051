#!/usr/bin/env bash
# Times `nft -f` loading svcproxy's ruleset for synthetic clusters into fresh
# network namespaces and counts the kernel objects. Needs root.
#   bench/nft_load.sh BUILD_DIR [SERVICES:ENDPOINTS ...]
set -euo pipefail
build=${1:?build dir}; shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000:10 2000:10 10000:10 5000:50)
tmp=$(mktemp -d)
ns=svp-bench-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
printf '%-12s %8s %8s %8s %9s %8s %6s %8s %9s\n' size wall_s user_s sys_s maxrss_MB chains rules sets elements
for size in "${sizes[@]}"; do
  s=${size%%:*}; e=${size##*:}
  "$build/bench/gen_ruleset" "$s" "$e" > "$tmp/rules.nft" 2> "$tmp/counts"
  read -r chains rules sets elements < "$tmp/counts"
  ip netns add "$ns"
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" ip netns exec "$ns" nft -f "$tmp/rules.nft"
  read -r wall user sys rss < "$tmp/time"
  printf '%-12s %8s %8s %8s %9d %8s %6s %8s %9s\n' "${s}x${e}" "$wall" "$user" "$sys" $((rss/1024)) "$chains" "$rules" "$sets" "$elements"
  ip netns del "$ns"
done
