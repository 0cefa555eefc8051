# Sourced by the first-packet benches (latency.sh, dnat_cascade.sh): the
# client -> node -> backend topology of three network namespaces they share.

# bench_wire CLIENT NODE BACKEND PREFIX: veths client(203.0.113.2) <->
# node(203.0.113.1) and node(10.250.0.1/PREFIX) <-> backend, forwarding on
# the node, the client routed through it. The namespaces must exist; the
# backend's addresses and route are the caller's (they differ per bench).
bench_wire() {
  local cl=$1 nd=$2 be=$3 prefix=$4
  ip netns exec "$nd" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ip -n "$nd" -batch - <<EOT
link set lo up
link add ext0 type veth peer name eth0 netns $cl
link add vb0 type veth peer name eth0 netns $be
addr add 203.0.113.1/24 dev ext0
addr add 10.250.0.1/$prefix dev vb0
link set ext0 up
link set vb0 up
EOT
  ip -n "$cl" -batch - <<EOT
link set lo up
addr add 203.0.113.2/24 dev eth0
link set eth0 up
route add default via 203.0.113.1
EOT
}

# bench_wait_listening LOG WHAT: waits (5 s at most) for `svcproxy echo`'s
# "listening" line in LOG; exits 1 naming WHAT if it never comes.
bench_wait_listening() {
  for _ in $(seq 100); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "$2: echo did not start: $(cat "$1")" >&2
  exit 1
}
