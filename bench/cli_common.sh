# Sourced by bench/cli_sync.sh and bench/once_live.sh (needs $tmp set):
# the synthetic node's flags and the timing helpers both use.

# The node bench/synthetic_cluster.h's synthetic_node() describes: with these
# flags `svcproxy rules` of gen_manifests.py S E prints what gen_ruleset S E does.
NODE_FLAGS=(--hostname-override node-a --node-ip 192.0.2.10 --cluster-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/12)

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
col() { cut -d' ' -f"$2" "$1" | median; }

# timed OUTFILE CMD... : appends "wall user sys maxrss_kB" of CMD to OUTFILE.
timed() {
  local out=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/t" "$@"
  cat "$tmp/t" >> "$out"
}
