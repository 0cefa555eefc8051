#!/usr/bin/env bash
# Issue 12's one table: the four ways a client can reach a pod, measured in
# one run with the same client and the same load, on the client -> node ->
# backend topology of bench/topology.sh (three namespaces made here; every
# path crosses the node, so each row pays the same two veth hops):
#
#   direct     client -> 10.250.0.2 (the pod), routed by the node, no NAT
#   nftables   client -> ClusterIP 10.96.0.10, DNAT (and masquerade: the
#              client is outside --cluster-cidr) by svcproxy's ruleset in the
#              node's prerouting (`svcproxy run --once --proxy-mode nftables`)
#   userspace  client -> 10.96.0.10 on the node's svcproxy0 -> the userspace
#              proxy -> pod (`svcproxy run --proxy-mode userspace
#              --userspace-workers T`; the nftables table is removed first)
#   haproxy    client -> 203.0.113.1 (HAProxy in the node, mode tcp,
#              nbthread T) -> pod
#
# The client is in its own namespace, so the node's nftables rules see its
# packets in prerouting, as a pod's or a remote client's (not the output
# hook of locally generated traffic). Columns, every one from the same client:
#   conns/s, p50, p99  `svcproxy loadtest --mode request --concurrency 16
#                      --threads T --duration S`: connect, one line, one
#                      reply, close, against bench/line_server.cc. Request,
#                      not connect mode: through a proxy a connect completes
#                      at the proxy, before any backend is involved; a reply
#                      proves the whole path. The latencies are of the same
#                      run (loadtest --json latency_us).
#   Gbit/s             iperf3 -t S, 1 stream and 16 streams (bulk TCP; the
#                      HTTP keep-alive rate would measure the server instead).
# Ratios: each path's number over the direct path's, side by side.
# --rounds N repeats the four paths in turn N times and reports the median of
# each number (the machine is shared; one round can catch a burst of load).
#
#   bench/paths_bench.sh BUILD_DIR [--threads T] [--seconds S] [--rounds N]
#
# Needs root, iperf3, haproxy, g++, conntrack (./dev deps). Never touches the host's
# namespace or ruleset; everything is deleted on exit. Prints the commands,
# the table, and SUMMARY lines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/topology.sh"
build=${1:?usage: bench/paths_bench.sh BUILD_DIR [--threads T] [--seconds S] [--rounds N]}; shift
build=$(cd "$build" && pwd)
threads=2 seconds=5 rounds=1
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "paths_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in threads seconds rounds; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "paths_bench: --$v ${!v}: want a positive whole number" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "paths_bench: needs root (network namespaces)" >&2; exit 1; }
for t in ip iperf3 haproxy g++ python3 conntrack; do
  command -v "$t" >/dev/null || { echo "paths_bench: $t missing (./dev deps)" >&2; exit 1; }
done
svcproxy=$build/svcproxy
[ -x "$svcproxy" ] || { echo "paths_bench: $svcproxy missing" >&2; exit 1; }

p=svp-bench-paths-$$
cl=$p-client nd=$p-node be=$p-backend
work=$(mktemp -d /tmp/svcproxy-paths-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for n in "$cl" "$nd" "$be"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "# paths benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# machine: $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $(haproxy -v | head -1); $(iperf3 --version | head -1)"
echo "# source: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# command: $0 $build --threads $threads --seconds $seconds --rounds $rounds"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

g++ -O2 -std=c++20 -pthread "$here/line_server.cc" -o "$work/line_server"
for n in "$cl" "$nd" "$be"; do ip netns add "$n"; done
bench_wire "$cl" "$nd" "$be" 24
ip -n "$be" -batch - <<EOF
link set lo up
addr add 10.250.0.2/24 dev eth0
link set eth0 up
route add default via 10.250.0.1
EOF
for n in "$cl" "$nd" "$be"; do
  ip netns exec "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65000"
done
ulimit -n "$(ulimit -Hn)"

# Backend ("pod"): iperf3 and line_server.
ip netns exec "$be" iperf3 -s -B 10.250.0.2 -p 5201 >/dev/null 2>&1 & pids+=($!)
ip netns exec "$be" "$work/line_server" 10.250.0.2 8080 64 >/dev/null & pids+=($!)

# One Service, two ports, one endpoint: both svcproxy modes read it.
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
- addresses: [10.250.0.2]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
ports:
- {name: iperf, port: 5201, protocol: TCP}
- {name: rr, port: 8080, protocol: TCP}
EOF
node_flags=(--manifests "$work/manifests" --hostname-override node-a --node-ip 203.0.113.1
            --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/16)

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
  bind 203.0.113.1:5201
  default_backend iperf
backend iperf
  balance roundrobin
  server pod 10.250.0.2:5201
frontend rr
  bind 203.0.113.1:8080
  default_backend rr
backend rr
  balance roundrobin
  server pod 10.250.0.2:8080
EOF

wait_answers() {  # TARGET: until a short connection from the client to it succeeds
  for _ in $(seq 101); do
    ip netns exec "$cl" "$svcproxy" loadtest "$1:8080" --mode request --requests 1 --concurrency 1 --timeout 1s \
      --quiet --fail-if 'errors>0' >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "paths_bench: nothing answers on $1:8080" >&2
  cat "$work"/*.log >&2 2>/dev/null || true
  exit 1
}

iperf() {  # target streams -> Gbit/s (retried: the server takes one test at a time)
  local json
  for _ in 1 2 3 4 5; do
    json=$(ip netns exec "$cl" iperf3 -c "$1" -p 5201 -t "$seconds" -P "$2" -J || true)
    if python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))' \
        <<<"$json" 2>/dev/null; then
      return
    fi
    echo "# iperf3 -c $1 -P $2 failed; retrying" >&2
    sleep 1
  done
  echo "n/a"
}

declare -A result
results=$work/results  # one line per path and round: name conns/s p50 p99 gbit1 gbit16 failed
measure() {  # NAME TARGET: the three measurements, same client, same load
  local name=$1 target=$2 line
  # Every path starts from an empty conntrack table in the node (the one
  # before may have left tens of thousands of TIME_WAIT entries).
  ip netns exec "$nd" conntrack -F >/dev/null 2>&1 || true
  wait_answers "$target"
  ip netns exec "$cl" "$svcproxy" loadtest "$target:8080" --mode request --concurrency 16 --threads "$threads" \
    --duration "${seconds}s" --quiet --json "$work/$name.json" >/dev/null
  line=$(python3 - "$work/$name.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
e = d["errors"]
print(d["answers"], round(d["rps"]), d["latency_us"]["p50"], d["latency_us"]["p99"],
      e["refused"] + e["timeout"] + e["reset"] + e["other"])
EOF
)
  read -r result[$name,n] result[$name,rate] result[$name,p50] result[$name,p99] result[$name,fail] <<<"$line"
  result[$name,1]=$(iperf "$target" 1)
  result[$name,16]=$(iperf "$target" 16)
  echo "# $name ($target): ${result[$name,n]} connections, ${result[$name,rate]}/s, p50 ${result[$name,p50]} us," \
    "p99 ${result[$name,p99]} us, ${result[$name,fail]} failed; iperf3 ${result[$name,1]} / ${result[$name,16]} Gbit/s"
  echo "$name ${result[$name,rate]} ${result[$name,p50]} ${result[$name,p99]} ${result[$name,1]} ${result[$name,16]} ${result[$name,fail]}" >>"$results"
}

echo "# client (every path): ip netns exec CLIENT $svcproxy loadtest TARGET:8080 --mode request --concurrency 16 --threads $threads --duration ${seconds}s --json F"
echo "#                      ip netns exec CLIENT iperf3 -c TARGET -t $seconds -P 1 (and -P 16)"
echo "# nftables: ip netns exec NODE $svcproxy run --once --proxy-mode nftables ${node_flags[*]} (then svcproxy cleanup)"
echo "# userspace: ip netns exec NODE $svcproxy run --proxy-mode userspace --userspace-workers $threads ${node_flags[*]}"
echo "# haproxy: ip netns exec NODE haproxy -db -f CFG (mode tcp, nbthread $threads, roundrobin, one server)"
ip netns exec "$nd" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & pids+=($!)
for ((round = 1; round <= rounds; round++)); do
  echo "# round $round of $rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  measure direct 10.250.0.2

  ip netns exec "$nd" "$svcproxy" run --once --proxy-mode nftables "${node_flags[@]}" 2>>"$work/nftables.log"
  measure nftables 10.96.0.10
  ip netns exec "$nd" "$svcproxy" cleanup 2>>"$work/nftables.log"

  ip netns exec "$nd" "$svcproxy" run --proxy-mode userspace --userspace-workers "$threads" "${node_flags[@]}" \
    --healthz-bind-address "" --metrics-bind-address "" 2>>"$work/userspace.log" & us_pid=$!; pids+=($!)
  measure userspace 10.96.0.10
  kill "$us_pid"; wait "$us_pid" 2>/dev/null || true

  measure haproxy 203.0.113.1
done

paths="direct nftables userspace haproxy"
python3 - "$paths" "$results" "$rounds" <<'EOF'
import statistics, sys
per_path = {}
for line in open(sys.argv[2]):
    name, *vals = line.split()
    per_path.setdefault(name, []).append(vals)
def median(column):
    nums = [float(v) for v in column if v != "n/a"]
    if not nums: return "n/a"
    m = statistics.median(nums)
    return f"{m:.2f}" if any("." in v for v in column) else f"{m:.0f}"
rows = {name: [median(col) for col in zip(*vals)] for name, vals in per_path.items()}
def num(v):
    try: return float(v)
    except ValueError: return None
def ratio(a, b):
    a, b = num(a), num(b)
    return f"{a / b:.2f}x" if a is not None and b else "n/a"
d = rows["direct"]
print()
if int(sys.argv[3]) > 1: print(f"Median of {sys.argv[3]} rounds.")
print("| path | conns/s | p50 (us) | p99 (us) | Gbit/s 1 stream | Gbit/s 16 streams | failed "
      "| conns/s vs direct | p99 vs direct | Gbit/s vs direct (1 / 16) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in sys.argv[1].split():
    r = rows[name]
    print(f"| {name} | {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} "
          f"| {ratio(r[0], d[0])} | {ratio(r[2], d[2])} | {ratio(r[3], d[3])} / {ratio(r[4], d[4])} |")
print()
for name in sys.argv[1].split():
    r = rows[name]
    print(f"SUMMARY paths {name} conns_per_s={r[0]} p99_us={r[2]} gbit_1={r[3]} gbit_16={r[4]} "
          f"conns_vs_direct={ratio(r[0], d[0])} p99_vs_direct={ratio(r[2], d[2])}")
EOF
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
