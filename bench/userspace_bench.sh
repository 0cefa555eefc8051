#!/usr/bin/env bash
# The userspace proxy against HAProxy, nginx stream and no proxy at all, side
# by side in one run, on the loopback of one throwaway network namespace:
#
#   direct     client -> backend (10.244.0.2, the "pod")
#   svcproxy   client -> ClusterIP 10.96.0.10 on svcproxy0 -> backend
#              (`svcproxy run --proxy-mode userspace --userspace-workers T`)
#   haproxy    client -> 10.0.0.1 (HAProxy, mode tcp, balance roundrobin,
#              nbthread T) -> backend
#   nginx      client -> 10.0.0.2 (nginx stream module, proxy_pass to an
#              upstream (round robin), worker_processes T) -> backend
#
# Measures: iperf3 throughput with 1 and 16 streams; short connections
# (connect, 1 request line, 1 reply line, close), 16 at a time: rate and
# latency p50/p99 (`svcproxy loadtest --mode request --concurrency 16
# --threads T` against bench/line_server.cc, compiled here), and the proxy's
# own CPU time per short connection (utime+stime from /proc during that test;
# for nginx the master and its workers together).
#
#   bench/userspace_bench.sh BUILD_DIR [--threads T] [--seconds S] [--compare OTHER_BUILD_DIR] [--no-iperf]
#
# --no-iperf measures short connections only (quicker experiments).
# --compare adds the path "before": OTHER_BUILD_DIR/svcproxy, measured the
# same way in the same run (the two daemons take turns on svcproxy0).
#
# Needs root, iperf3 and haproxy (./dev deps); nginx with the stream module
# (libnginx-mod-stream, installed by `./dev bench`) is measured when present
# and skipped with one line otherwise. Never touches the host's
# namespace: everything, svcproxy0 included, lives in the namespace made
# here and deleted on exit. Prints the machine, the commands and a table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: bench/userspace_bench.sh BUILD_DIR [--threads T] [--seconds S] [--compare OTHER_BUILD_DIR]}; shift
build=$(cd "$build" && pwd)
threads=2
seconds=5
compare=
no_iperf=
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --compare) compare=$(cd "$2" && pwd); shift 2 ;;
    --no-iperf) no_iperf=1; shift ;;
    *) echo "userspace_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "userspace_bench: needs root (network namespaces)" >&2; exit 1; }
for t in ip iperf3 haproxy g++ python3; do
  command -v "$t" >/dev/null || { echo "userspace_bench: $t missing (./dev deps)" >&2; exit 1; }
done
[ -x "$build/svcproxy" ] || { echo "userspace_bench: $build/svcproxy missing" >&2; exit 1; }
[ -z "$compare" ] || [ -x "$compare/svcproxy" ] || { echo "userspace_bench: $compare/svcproxy missing" >&2; exit 1; }
# nginx stream: the Debian module package, or a binary built with the module in.
nginx_module=/usr/lib/nginx/modules/ngx_stream_module.so
have_nginx=
if command -v nginx >/dev/null; then
  if [ -f "$nginx_module" ]; then have_nginx=1
  elif nginx -V 2>&1 | tr ' ' '\n' | grep -qx -- --with-stream; then have_nginx=1; nginx_module=
  fi
fi

ns=svpbench-$$
work=$(mktemp -d /tmp/svcproxy-usbench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_ns() { ip netns exec "$ns" "$@"; }  # background jobs call ip netns exec directly: $! is then the process itself

echo "# userspace proxy benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $(haproxy -v | head -1); $(iperf3 --version | head -1)"
if [ -n "$have_nginx" ]; then
  echo "# $(nginx -v 2>&1 | head -1) (stream module)"
else
  echo "# nginx stream: skipped (no nginx with the stream module; ./dev bench installs nginx libnginx-mod-stream)"
fi
echo "# command: $0 $build --threads $threads --seconds $seconds${compare:+ --compare $compare}${no_iperf:+ --no-iperf}"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

g++ -O2 -std=c++20 -pthread "$here/line_server.cc" -o "$work/line_server"

ip netns add "$ns"
in_ns ip link set lo up
in_ns ip addr add 10.244.0.2/32 dev lo   # the backend ("pod")
in_ns ip addr add 10.0.0.1/32 dev lo     # the node (HAProxy listens here)
in_ns ip addr add 10.0.0.2/32 dev lo     # nginx stream listens here (same ports)
in_ns sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
ulimit -n "$(ulimit -Hn)"

# Backends: iperf3 (throughput) and line_server (short connections).
ip netns exec "$ns" iperf3 -s -B 10.244.0.2 -p 5201 >/dev/null 2>&1 & pids+=($!)
ip netns exec "$ns" "$work/line_server" 10.244.0.2 8080 64 >/dev/null & pids+=($!)

# svcproxy userspace: one Service, two ports, one endpoint.
mkdir -p "$work/manifests"
cat > "$work/manifests/bench.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default, resourceVersion: "1", uid: 00000000-0000-0000-0000-000000000001}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ports:
  - {name: iperf, port: 5201, protocol: TCP, targetPort: 5201}
  - {name: rr, port: 8080, protocol: TCP, targetPort: 8080}
  type: ClusterIP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-1
  namespace: default
  labels: {kubernetes.io/service-name: bench}
addressType: IPv4
endpoints:
- addresses: [10.244.0.2]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
ports:
- {name: iperf, port: 5201, protocol: TCP}
- {name: rr, port: 8080, protocol: TCP}
EOF
svcproxy_pid=
start_svcproxy() {  # BUILD_DIR: one daemon at a time owns svcproxy0
  if [ -n "$svcproxy_pid" ]; then kill "$svcproxy_pid"; wait "$svcproxy_pid" 2>/dev/null || true; fi
  ip netns exec "$ns" "$1/svcproxy" run --proxy-mode userspace --userspace-workers "$threads" --manifests "$work/manifests" \
    --hostname-override node-a --node-ip 10.0.0.1 --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/16 \
    --healthz-bind-address "" --metrics-bind-address "" 2>>"$work/svcproxy.log" & svcproxy_pid=$!
  pids+=("$svcproxy_pid")
  wait_answers 10.96.0.10
}

cat > "$work/haproxy.cfg" <<EOF
global
  nbthread $threads
  maxconn 8000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend iperf
  bind 10.0.0.1:5201
  default_backend iperf
backend iperf
  balance roundrobin
  server pod 10.244.0.2:5201
frontend rr
  bind 10.0.0.1:8080
  default_backend rr
backend rr
  balance roundrobin
  server pod 10.244.0.2:8080
EOF
ip netns exec "$ns" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & haproxy_pid=$!; pids+=($!)

# nginx stream: the same two ports as HAProxy, on 10.0.0.2; a foreground
# master (daemon off) owned by this script, everything in $work/nginx.
nginx_pid=
if [ -n "$have_nginx" ]; then
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<EOF
${nginx_module:+load_module $nginx_module;}
worker_processes $threads;
worker_rlimit_nofile 20000;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 16000; }
stream {
  proxy_connect_timeout 2s;
  proxy_timeout 60s;
  upstream iperf { server 10.244.0.2:5201; }
  upstream rr { server 10.244.0.2:8080; }
  server { listen 10.0.0.2:5201; proxy_pass iperf; }
  server { listen 10.0.0.2:8080; proxy_pass rr; }
}
EOF
  ip netns exec "$ns" nginx -p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" \
    >>"$work/nginx/error.log" 2>&1 & nginx_pid=$!; pids+=($!)
fi

wait_answers() {  # TARGET: until a short connection to it succeeds
  for i in $(seq 101); do
    in_ns "$build/svcproxy" loadtest "$1:8080" --mode request --requests 1 --concurrency 1 --timeout 1s --quiet \
      --fail-if 'errors>0' >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "userspace_bench: nothing answers on $1:8080" >&2
  cat "$work/svcproxy.log" "$work/haproxy.log" >&2
  [ -z "$nginx_pid" ] || cat "$work/nginx/error.log" >&2
  exit 1
}
wait_answers 10.244.0.2
wait_answers 10.0.0.1
[ -z "$nginx_pid" ] || wait_answers 10.0.0.2

iperf() {  # target streams -> Gbit/s (retried: the server takes one test at a time)
  local json
  for _ in 1 2 3 4 5; do
    json=$(in_ns iperf3 -c "$1" -p 5201 -t "$seconds" -P "$2" -J || true)
    if python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' \
        <<<"$json" 2>/dev/null; then
      return
    fi
    echo "# iperf3 -c $1 -P $2: $(python3 -c 'import json,sys; print(json.load(sys.stdin).get("error"))' <<<"$json" 2>&1 | tail -1); retrying" >&2
    sleep 1
  done
  echo "n/a"
}

cpu_ticks() {  # PID... -> utime+stime summed (clock ticks)
  local p sum=0
  for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$sum"
}

declare -A result
paths="direct${compare:+ before} svcproxy haproxy${nginx_pid:+ nginx}"
for name in $paths; do
  pid=
  case $name in
    direct) target=10.244.0.2 ;;
    before) target=10.96.0.10; start_svcproxy "$compare"; pid=$svcproxy_pid ;;
    svcproxy) target=10.96.0.10; start_svcproxy "$build"; pid=$svcproxy_pid ;;
    haproxy) target=10.0.0.1; pid=$haproxy_pid ;;
    nginx) target=10.0.0.2; pid="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" ;;
  esac
  result[$name,1]=-
  result[$name,16]=-
  if [ -z "$no_iperf" ]; then
    result[$name,1]=$(iperf "$target" 1)
    result[$name,16]=$(iperf "$target" 16)
  fi
  [ -z "$pid" ] || t0=$(cpu_ticks $pid)
  in_ns "$build/svcproxy" loadtest "$target:8080" --mode request --concurrency 16 --threads "$threads" \
    --duration "${seconds}s" --quiet --json "$work/short.json" >/dev/null
  line=$(python3 - "$work/short.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
e = d["errors"]
failures = e["refused"] + e["timeout"] + e["reset"] + e["other"]
print(f"connections={d['answers']} failures={failures} rate={round(d['rps'])} "
      f"p50_us={d['latency_us']['p50']} p99_us={d['latency_us']['p99']}")
EOF
)
  echo "# $name short connections (svcproxy loadtest --mode request): $line"
  result[$name,cpu]=-
  if [ -n "$pid" ]; then
    t1=$(cpu_ticks $pid)
    conns=$(sed -E 's/.*connections=([0-9]+).*/\1/' <<<"$line")
    result[$name,cpu]=$(python3 -c "import os,sys; t=(int(sys.argv[2])-int(sys.argv[1]))/os.sysconf('SC_CLK_TCK'); print('%.1f' % (t*1e6/max(1,int(sys.argv[3]))))" "$t0" "$t1" "$conns")
  fi
  result[$name,rate]=$(sed -E 's/.*rate=([0-9]+).*/\1/' <<<"$line")
  result[$name,p50]=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
  result[$name,p99]=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
  result[$name,fail]=$(sed -E 's/.*failures=([0-9]+).*/\1/' <<<"$line")
done

echo
echo "| path | iperf3 1 stream (Gbit/s) | iperf3 16 streams (Gbit/s) | short conns/s | p50 (us) | p99 (us) | failed | proxy CPU/conn (us) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for name in $paths; do
  echo "| $name | ${result[$name,1]} | ${result[$name,16]} | ${result[$name,rate]} | ${result[$name,p50]} | ${result[$name,p99]} | ${result[$name,fail]} | ${result[$name,cpu]} |"
done
ratio() {  # LABEL A B: A's numbers over B's
  python3 - "$1" "${result[$2,1]}" "${result[$3,1]}" "${result[$2,16]}" "${result[$3,16]}" \
    "${result[$2,rate]}" "${result[$3,rate]}" "${result[$2,p99]}" "${result[$3,p99]}" <<'EOF'
import sys
label = sys.argv[1]
def r(a, b):
    try: return f"{float(a)/float(b):.2f}x"
    except (ValueError, ZeroDivisionError): return "n/a"
a = sys.argv[2:]
print(f"| {label} | {r(a[0], a[1])} | {r(a[2], a[3])} | {r(a[4], a[5])} | {r(a[6], a[7])} |")
EOF
}
echo
echo "| ratio | iperf3 1 stream | iperf3 16 streams | short conns/s | p99 (lower is better) |"
echo "|---|---:|---:|---:|---:|"
ratio svcproxy/haproxy svcproxy haproxy
[ -z "$nginx_pid" ] || ratio svcproxy/nginx svcproxy nginx
[ -z "$nginx_pid" ] || ratio nginx/haproxy nginx haproxy
if [ -n "$compare" ]; then
  ratio before/haproxy before haproxy
  [ -z "$nginx_pid" ] || ratio before/nginx before nginx
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E "stats|ejected|paused" "$work/svcproxy.log" | tail -2 | sed 's/^/# svcproxy log: /' || true
