#!/usr/bin/env bash
# `svcproxy loadtest` against the tools it must keep up with, side by side in
# one run, on the loopback of one throwaway network namespace:
#
#   http     `loadtest --mode http` vs wrk (Debian's), the same threads and
#            connections, keep-alive, against one nginx (return 200) at
#            10.244.0.2:80; rounds alternate (wrk, loadtest, wrk, ...) and
#            the medians are compared. Goal: >= 1.0x wrk's requests/s, p99
#            within 10% of wrk's.
#   connect  `loadtest --mode connect` and `--mode request` (connect, one
#            line, one reply, close) against bench/line_server.cc at
#            10.244.0.2:8080. They were compared with the retired
#            bench/conn_rate.cc load generator (goal >= 1.0x its rate; see
#            bench/RESULTS.md for that run and the commit that still has it).
#   memory   RSS of one `loadtest --mode http` run of --memory-seconds,
#            sampled every 5 s (goal: flat; the histograms are fixed-size).
#
#   bench/loadtest_bench.sh BUILD_DIR [--threads T] [--connections C] [--seconds S]
#                           [--rounds N] [--memory-seconds M] [--only http|connect|memory]
#
# Needs root, nginx and wrk (`./dev bench` installs both), g++. Never touches
# the host's namespace: everything lives in the namespace made here and
# deleted on exit. Prints the machine, every command, and SUMMARY lines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: bench/loadtest_bench.sh BUILD_DIR [--threads T] [--connections C] [--seconds S] [--rounds N]}; shift
build=$(cd "$build" && pwd)
threads=2 connections=64 seconds=10 rounds=3 memory_seconds=120 only=
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --memory-seconds) memory_seconds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "loadtest_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "loadtest_bench: needs root (network namespaces)" >&2; exit 1; }
for t in ip nginx wrk g++ python3; do
  command -v "$t" >/dev/null || { echo "loadtest_bench: $t missing (./dev bench installs it)" >&2; exit 1; }
done
svcproxy=$build/svcproxy
[ -x "$svcproxy" ] || { echo "loadtest_bench: $svcproxy missing" >&2; exit 1; }

ns=svplt-$$
work=$(mktemp -d /tmp/svcproxy-ltbench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_ns() { ip netns exec "$ns" "$@"; }
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

echo "# loadtest benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $(nginx -v 2>&1 | head -1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "# source: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# command: $0 $build --threads $threads --connections $connections --seconds $seconds --rounds $rounds --memory-seconds $memory_seconds${only:+ --only $only}"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

g++ -O2 -std=c++20 -pthread "$here/line_server.cc" -o "$work/line_server"
ip netns add "$ns"
in_ns ip link set lo up
in_ns ip addr add 10.244.0.2/32 dev lo
in_ns sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
ulimit -n "$(ulimit -Hn)"

# nginx: a fixed small answer, no log, keep-alive for the whole run (its
# default closes a connection after 1000 requests).
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes $threads;
worker_rlimit_nofile 20000;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 16000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 10.244.0.2:80 reuseport;
    location / { add_header X-Endpoint 10.244.0.2:80; return 200 "ok\n"; }
  }
  # nginx's own count of the requests it answered: each client's claim is
  # checked against it.
  server { listen 10.244.0.2:81; location / { stub_status; } }
}
EOF
ip netns exec "$ns" nginx -p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" \
  >>"$work/nginx/error.log" 2>&1 & pids+=($!)
ip netns exec "$ns" "$work/line_server" 10.244.0.2 8080 64 >/dev/null & pids+=($!)
for _ in $(seq 100); do
  in_ns python3 -c 'import socket; socket.create_connection(("10.244.0.2", 80), 1).close(); socket.create_connection(("10.244.0.2", 8080), 1).close()' \
    2>/dev/null && break
  sleep 0.1
done

loadtest() {  # JSON_OUT ARGS...: one quiet run, the JSON report to JSON_OUT
  local out=$1; shift
  echo "\$ svcproxy loadtest $* --quiet --json $out" >&2
  in_ns /usr/bin/time -f '%U %S' -o "$out.cpu" "$svcproxy" loadtest "$@" --quiet --json "$out" >"$out.summary"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
# CPU_FILE COUNT -> the process's user+sys CPU per request (µs): what each
# request costs the client, which other work on the machine does not inflate
# as much as it does the wall-clock rate.
cpu_per() { python3 -c 'import sys; u, s = map(float, open(sys.argv[1]).read().split()[-2:]); print(f"{(u + s) * 1e6 / max(1, int(sys.argv[2])):.2f}")' "$@"; }
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

served() {  # requests nginx has answered so far (stub_status), minus its own status requests
  in_ns python3 -c 'import urllib.request; print(urllib.request.urlopen("http://10.244.0.2:81/").read().decode().split("\n")[2].split()[2])'
}

wrk_run() {  # -> "RPS P99_US REQUESTS" (wrk's p99 from --latency, in µs)
  echo "\$ wrk -t $threads -c $connections -d ${seconds}s --latency http://10.244.0.2:80/" >&2
  in_ns /usr/bin/time -f '%U %S' -o "$work/wrk.cpu" \
    wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency http://10.244.0.2:80/ > "$work/wrk.txt"
  python3 - "$work/wrk.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
scale = {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
requests = int(re.search(r"(\d+) requests in", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
print(f"{rps:.0f} {float(m.group(1)) * scale:.0f} {requests}" + (f" errors:{errors.group(0)}" if errors else ""))
EOF
}

if want http; then
  echo
  echo "## HTTP keep-alive: loadtest --mode http vs wrk ($threads threads, $connections connections, ${seconds}s, $rounds rounds each, alternating)"
  w_rps=() w_p99=() w_cpu=() l_rps=() l_p99=() l_cpu=()
  for r in $(seq "$rounds"); do
    before=$(served)
    read -r rps p99 requests rest <<<"$(wrk_run)"
    cpu=$(cpu_per "$work/wrk.cpu" "$requests")
    echo "round $r wrk: requests/s=$rps p99_us=$p99 requests=$requests ${rest:-}(nginx answered $(( $(served) - before - 1 ))) cpu_us_per_request=$cpu"
    w_rps+=("$rps"); w_p99+=("$p99"); w_cpu+=("$cpu")
    before=$(served)
    loadtest "$work/http-$r.json" 10.244.0.2:80 --mode http --threads "$threads" --concurrency "$connections" --duration "${seconds}s"
    rps=$(field "$work/http-$r.json" 'round(rps)')
    p99=$(field "$work/http-$r.json" 'latency_us["p99"]')
    p99u=$(field "$work/http-$r.json" 'latency_uncorrected_us["p99"]')
    errs=$(field "$work/http-$r.json" 'sum(v for k, v in errors.items() if k != "udp_lost")')
    requests=$(field "$work/http-$r.json" 'requests')
    cpu=$(cpu_per "$work/http-$r.json.cpu" "$requests")
    echo "round $r loadtest: requests/s=$rps p99_us=$p99 (uncorrected $p99u) requests=$requests errors=$errs (nginx answered $(( $(served) - before - 1 ))) cpu_us_per_request=$cpu endpoints=$(field "$work/http-$r.json" 'list(endpoints)')"
    l_rps+=("$rps"); l_p99+=("$p99"); l_cpu+=("$cpu")
  done
  wr=$(median "${w_rps[@]}") wp=$(median "${w_p99[@]}") wc=$(median "${w_cpu[@]}")
  lr=$(median "${l_rps[@]}") lp=$(median "${l_p99[@]}") lc=$(median "${l_cpu[@]}")
  echo "SUMMARY loadtest-http medians: wrk_rps=$wr loadtest_rps=$lr ratio=$(python3 -c "print(f'{$lr/$wr:.2f}')") wrk_p99_us=$wp loadtest_p99_us=$lp p99_ratio=$(python3 -c "print(f'{$lp/max($wp,1):.2f}')") wrk_cpu_us=$wc loadtest_cpu_us=$lc cpu_ratio=$(python3 -c "print(f'{$lc/$wc:.2f}')")"
fi

if want connect; then
  echo
  echo "## Short connections: loadtest --mode connect / request (16 connections, ${seconds}s, $rounds rounds each)"
  lc_rate=() lr_rate=() lc_cpu=() lr_cpu=()
  for r in $(seq "$rounds"); do
    for mode in connect request; do
      loadtest "$work/$mode-$r.json" 10.244.0.2:8080 --mode "$mode" --threads "$threads" --concurrency 16 --duration "${seconds}s"
      rate=$(field "$work/$mode-$r.json" 'round(rps)')
      cpu=$(cpu_per "$work/$mode-$r.json.cpu" "$(field "$work/$mode-$r.json" 'requests')")
      echo "round $r loadtest --mode $mode: rate=$rate p50_us=$(field "$work/$mode-$r.json" 'latency_us["p50"]') p99_us=$(field "$work/$mode-$r.json" 'latency_us["p99"]') errors=$(field "$work/$mode-$r.json" 'sum(v for k, v in errors.items() if k != "udp_lost")') cpu_us_per_conn=$cpu"
      if [ "$mode" = connect ]; then lc_rate+=("$rate"); lc_cpu+=("$cpu"); else lr_rate+=("$rate"); lr_cpu+=("$cpu"); fi
    done
  done
  lc=$(median "${lc_rate[@]}") lr=$(median "${lr_rate[@]}") lcc=$(median "${lc_cpu[@]}") lrc=$(median "${lr_cpu[@]}")
  echo "SUMMARY loadtest-connect medians: connect=$lc/s request=$lr/s cpu_us_per_conn: connect=$lcc request=$lrc"
fi

if want memory; then
  echo
  echo "## Generator memory: one loadtest --mode http run of ${memory_seconds}s, RSS every 5 s"
  echo "\$ svcproxy loadtest 10.244.0.2:80 --mode http --threads $threads --concurrency $connections --duration ${memory_seconds}s --quiet"
  ip netns exec "$ns" "$svcproxy" loadtest 10.244.0.2:80 --mode http --threads "$threads" --concurrency "$connections" \
    --duration "${memory_seconds}s" --quiet --json "$work/memory.json" >"$work/memory.summary" & lt=$!; pids+=($lt)
  samples=()
  sleep 1  # `ip netns exec` execs svcproxy: before that, $lt is `ip`
  while kill -0 "$lt" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$lt/status" 2>/dev/null || true)
    [ -z "$rss" ] || samples+=("$rss")
    sleep 5
  done
  wait "$lt" || true
  echo "RSS KiB every 5 s: ${samples[*]}"
  python3 - "${samples[@]}" <<EOF
import sys
s = [int(x) for x in sys.argv[1:]]
if len(s) < 4:
    print("SUMMARY loadtest-memory too few samples"); sys.exit()
after_warmup = s[2:]  # the first ~10 s: threads, connections, buffers come up
print(f"SUMMARY loadtest-memory requests={$(field "$work/memory.json" 'requests')} rss_first_kib={s[0]} rss_after_10s_kib={after_warmup[0]} "
      f"rss_max_kib={max(s)} rss_last_kib={s[-1]} growth_after_10s_kib={s[-1] - after_warmup[0]} samples={len(s)}")
EOF
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
