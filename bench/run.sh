#!/usr/bin/env bash
# Every benchmark of issues 2, 3 and 12, side by side in one run, then a summary.
# Called by `./dev bench` (which builds first). Needs root for the kernel
# parts; every kernel measurement runs in network namespaces created for it
# and deleted afterwards (never the host's). Not a test: nothing passes or
# fails on a number. Results to record go to bench/RESULTS.md by hand.
#
#   bench/run.sh BUILD_DIR [--quick] [--out DIR]
#
# Full run: about 29 minutes on 2 cores (10 of them the loadtest memory run);
# --quick (or BENCH_QUICK=1, e.g. `BENCH_QUICK=1 ./dev bench`): about 6
# (fewer repetitions, 5k x 50 left out of the end-to-end comparison).
# The log (and the generated manifests, deleted at the end) go to --out
# (default /tmp/svcproxy-bench-DATE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:?usage: bench/run.sh BUILD_DIR [--quick] [--out DIR]}; shift
build=$(cd "$build" && pwd)
quick=${BENCH_QUICK:-0}
out=/tmp/svcproxy-bench-$(date -u +%Y%m%d-%H%M%S)
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "run.sh: needs root (network namespaces, nf_tables)" >&2; exit 1; fi
for b in "$build/svcproxy" "$build/bench/compile_bench" "$build/bench/gen_ruleset" "$build/bench/sync_bench"; do
  [ -x "$b" ] || { echo "run.sh: $b missing (build the bench targets first)" >&2; exit 1; }
done
for t in ip nft python3 /usr/bin/time iperf3 haproxy g++; do
  command -v "$t" >/dev/null || { echo "run.sh: $t missing (./dev deps)" >&2; exit 1; }
done
mkdir -p "$out"
data=$out/data
log=$out/bench.log
trap 'rm -rf "$data"' EXIT
exec > >(tee "$log") 2>&1

if [ $quick = 1 ]; then
  GB_REPS=3 GB_MIN=0.3 NFT_REPS=1 CLI_REPS=1 CLI_SIZES=(1000:10 10000:10 50000:2)
  PHASE_REPS=1 PART_REPS=300 PART_ROUNDS=1 FULL_REPS=1 LAT_CONNECTS=1000 LAT_ROUNDS=2
  LT_ARGS=(--rounds 2 --seconds 5 --memory-seconds 60) PATHS_ARGS=(--seconds 5 --rounds 1)
else
  GB_REPS=5 GB_MIN=1 NFT_REPS=3 CLI_REPS=3 CLI_SIZES=(1000:10 10000:10 50000:2 5000:50)
  PHASE_REPS=3 PART_REPS=1000 PART_ROUNDS=3 FULL_REPS=3 LAT_CONNECTS=3000 LAT_ROUNDS=5
  LT_ARGS=(--rounds 5 --seconds 10 --memory-seconds 600) PATHS_ARGS=(--seconds 5 --rounds 3)
fi

section() { printf '\n===== %s  (%s, load average %s)\n' "$1" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
run() { echo "\$ $*"; "$@"; }

section "machine"
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "host:     $(uname -n), nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel:   $(uname -r)"
echo "nft:      $(nft --version)"
echo "source:   $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- . 2>/dev/null || echo ' (working tree differs from HEAD)')"
btype=$(grep -m1 CMAKE_BUILD_TYPE: "$build/CMakeCache.txt" 2>/dev/null | cut -d= -f2)
echo "build:    $build (${btype:-Release, the project default})"
echo "command:  bench/run.sh $build$([ $quick = 1 ] && echo ' --quick')"
echo "load:     $(cat /proc/loadavg)  (other work on these cores inflates wall times; compare side by side)"

section "issue 2: compile + render (Google Benchmark, median of $GB_REPS repetitions)"
gb=("$build/bench/compile_bench" --benchmark_repetitions=$GB_REPS --benchmark_report_aggregates_only=true
    --benchmark_min_time=$GB_MIN --benchmark_counters_tabular=true)
echo "\$ ${gb[*]}"
"${gb[@]}" 2> "$out/compile_bench.err" | tee "$out/compile_bench.txt" | grep -E '^(Benchmark|-----|.*_median)'
awk '/_median/ { n = $1; sub(/_median$/, "", n); print "SUMMARY compile " n " median_ms=" $2 " cpu_ms=" $4 }' "$out/compile_bench.txt"

section "issue 2: nft -f load time of svcproxy's ruleset"
run "$here/nft_load.sh" "$build" --reps $NFT_REPS 1000:10 2000:10 10000:10 5000:50

section "issue 3a: full sync end to end (svcproxy run --once vs nft -f)"
run "$here/cli_sync.sh" "$build" --reps $CLI_REPS --data "$data" "${CLI_SIZES[@]}"

if [ $quick = 0 ]; then
  section "issue 17: run --once of a million endpoints (100k services x 10; goal < 6 s)"
  run "$here/once_live.sh" "$build" --reps 3 --no-live --data "$data" 100000:10
fi

section "issue 3a: where run --once spends its time (phases, each in a fresh netns)"
files=()
for size in "${CLI_SIZES[@]}"; do files+=("$data/cluster-${size%%:*}x${size##*:}.json"); done
run "$build/bench/sync_bench" phases "${files[@]}" --reps $PHASE_REPS

section "issue 3b: partial sync of one change (the goal: 10k vs 100 services)"
run "$build/bench/sync_bench" partial 100x10 10000x10 --reps $PART_REPS --rounds $PART_ROUNDS --max-seconds 10
section "issue 3b: partial sync, growth (1k x 10, 50k x 2; fewer reps)"
run "$build/bench/sync_bench" partial 1000x10 50000x2 --reps 300 --rounds 1 --max-seconds 5

section "issue 3c: full sync, time and peak RSS"
run "$build/bench/sync_bench" full 10000x10 5000x50 50000x2 --reps $FULL_REPS

section "issue 3d: first-packet latency"
run "$here/latency.sh" "$build" --connects $LAT_CONNECTS --rounds $LAT_ROUNDS --data "$data"

section "issue 12: svcproxy loadtest vs wrk (HTTP keep-alive), short connections, generator memory"
run "$here/loadtest_bench.sh" "$build" "${LT_ARGS[@]}"

section "issue 12: one table: direct pod, nftables mode, userspace mode, HAProxy (same client)"
run "$here/paths_bench.sh" "$build" "${PATHS_ARGS[@]}"

section "summary"
grep '^SUMMARY' "$log" | sed 's/^SUMMARY //'

section "host check"
leftover_ns=$(ip netns list | grep -c '^svp-bench' || true)
leftover_tables=$(nft list tables | grep -c svcproxy || true)
echo "network namespaces named svp-bench*: $leftover_ns; svcproxy tables in the host namespace: $leftover_tables"
echo "log: $log"
[ "$leftover_ns" = 0 ] && [ "$leftover_tables" = 0 ]
