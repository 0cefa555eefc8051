#!/usr/bin/env python3
"""svcproxy demo: a throwaway node in network namespaces, real traffic.

  python3 examples/demo.py --svcproxy build/svcproxy --manifests examples   (root; `./dev demo`)

1. builds a sandbox (tests/e2e/sandbox.py): a node, an external client and
   one network namespace per pod of the example manifests, each pod running
   `svcproxy echo`;
2. loads `svcproxy rules --manifests examples` into the node with `nft -f`;
3. sends requests from the external client through the web Service's
   ClusterIP and counts which pod answered;
4. marks one ready web pod not ready in a copy of the manifests, reloads,
   sends the same traffic again and shows that pod gets nothing;
5. shows `svcproxy trace` for the same flow, and a few other services;
6. removes every namespace and process it created, whatever happens.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_sandbox():
    """tests/e2e/sandbox.py, imported by path."""
    path = ROOT / "tests" / "e2e" / "sandbox.py"
    spec = importlib.util.spec_from_file_location("svcproxy_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sb = load_sandbox()

# The pods of examples/*.yaml: name, sandbox index (pod IP 10.244.<index>.2,
# fd00:10:244:<index hex>::2), node, and the ports `svcproxy echo` serves.
PODS = [
    ("web-5d8f7b9c6-2xk4q", 1, "node-a", [(8080, "tcp")]),
    ("web-5d8f7b9c6-8mzt7", 2, "node-a", [(8080, "tcp")]),
    ("web-5d8f7b9c6-qwv9n", 202, "node-b", [(8080, "tcp")]),
    ("web-6b9c4d7f8-h7j2c", 4, "node-a", [(8080, "tcp")]),  # not ready in the manifests
    ("coredns-7db6d8ff4d-4kx9z", 5, "node-a", [(53, "udp"), (53, "tcp")]),
    ("coredns-7db6d8ff4d-rt6wm", 203, "node-b", [(53, "udp"), (53, "tcp")]),
    ("checkout-84c9b6f5d7-jq2ls", 7, "node-a", [(8443, "tcp")]),
    ("checkout-84c9b6f5d7-zp5xn", 201, "node-b", [(8443, "tcp")]),
]
WEB_PODS = [name for name, *_ in PODS if name.startswith("web-")]
WEB_VIP, WEB_VIP6, WEB_PORT, WEB_NODEPORT = "10.96.120.15", "fd00:10:96::78:f", 80, 30080
DNS_VIP = "10.96.0.10"
CHECKOUT_LB, CHECKOUT_PORT = "192.0.2.80", 443
MAKE_UNREADY = "web-5d8f7b9c6-8mzt7"

BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") \
    if sys.stdout.isatty() else ("",) * 5


def heading(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


def step(text: str) -> None:
    print(f"   {text}")


def _run(binary: str, command: str, manifests: Path, *args: str) -> str:
    """`svcproxy COMMAND --manifests DIR <node flags> ARGS` (rules and trace
    read files only; they run in the host namespace)."""
    argv = [binary, command, "--manifests", str(manifests), *sb.NODE_FLAGS, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"demo: {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    if result.stderr.strip():
        print(f"{DIM}{result.stderr.rstrip()}{RESET}")
    return result.stdout


def readiness(manifests: Path) -> dict[str, bool]:
    """pod name -> ready, from the web EndpointSlices' IPv4 entries (a small
    line-based reader: enough for kubectl's block style)."""
    ready: dict[str, bool] = {}
    for path in sorted(manifests.glob("*.yaml")):
        for block in _endpoint_blocks(path.read_text().splitlines()):
            text = "\n".join(block)
            name = re.search(r"^\s*name:\s*(\S+)", text, re.M)
            state = re.search(r"^\s*ready:\s*(\S+)", text, re.M)
            if name and name.group(1) in WEB_PODS:
                ready[name.group(1)] = ready.get(name.group(1), True) and bool(state) and state.group(1) == "true"
    return ready


def _endpoint_blocks(lines: list[str]):
    """Yields the lines of each `- addresses:` item."""
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)- addresses:\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        j = i + 1
        while j < len(lines):
            line = lines[j]
            stripped = line.lstrip()
            depth = len(line) - len(stripped)
            if stripped and (depth < indent or (depth == indent and stripped.startswith("- "))):
                break
            j += 1
        yield lines[i:j]
        i = j


def mark_unready(manifests: Path, pod: str) -> int:
    """Sets ready/serving to false for every endpoint of `pod` (as the
    EndpointSlice controller does when its readiness probe fails). Returns
    how many endpoints were changed."""
    changed = 0
    for path in sorted(manifests.glob("*.yaml")):
        lines = path.read_text().splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)- addresses:\s*$", lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            block = next(_endpoint_blocks(lines[i:]))
            if any(re.match(rf"^\s*name:\s*{re.escape(pod)}\s*$", line) for line in block):
                block = [re.sub(r"^(\s*)(ready|serving):\s*true\s*$", r"\1\2: false", line) for line in block]
                changed += 1
            out += block
            i += len(block)
        path.write_text("\n".join(out) + "\n")
    return changed


def send_web_traffic(box, count: int) -> Counter:
    result = box.request(box.ext, WEB_VIP, WEB_PORT, count=count, src=sb.EXT_V4, http=True, parallel=16)
    failures = {k: v for k, v in result.outcomes.items() if k != "reply"}
    if failures:
        print(f"   {RED}unanswered requests: {failures} {result.errors}{RESET}")
    return Counter(result.ids)


def bar(n: int, total: int, width: int = 30) -> str:
    filled = round(width * n / total) if total else 0
    return "#" * filled + "." * (width - filled)


def print_table(before: Counter, after: Counter, ready_before: dict, ready_after: dict, total: int) -> None:
    name_w = max(len(p) for p in WEB_PODS)
    cell_w = 7 + 1 + 4 + 1 + 30
    print(f"   {'pod':<{name_w}}  {'node':<6}  {'before':<{cell_w}}  {'after':<{cell_w}}")
    nodes = {name: node for name, _, node, _ in PODS}
    for pod in WEB_PODS:
        cells = []
        for counts, ready in ((before, ready_before), (after, ready_after)):
            n = counts.get(pod, 0)
            state = "ready" if ready.get(pod) else "UNREADY"
            colour = GREEN if ready.get(pod) else RED
            cells.append(f"{colour}{state:<7}{RESET} {n:>4} {bar(n, total)}")
        print(f"   {pod:<{name_w}}  {nodes[pod]:<6}  {cells[0]}  {cells[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description="svcproxy demo in a throwaway network-namespace sandbox")
    parser.add_argument("--svcproxy", default=str(ROOT / "build" / "svcproxy"), help="path to the svcproxy binary")
    parser.add_argument("--manifests", default=str(ROOT / "examples"), help="directory of example manifests")
    parser.add_argument("--requests", type=int, default=300, help="requests per round (default 300)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        print("demo: needs root (it creates network namespaces); try: sudo ./dev demo", file=sys.stderr)
        return 1
    binary = str(Path(args.svcproxy).resolve())
    manifests = Path(args.manifests).resolve()
    if not os.access(binary, os.X_OK):
        print(f"demo: no svcproxy binary at {binary} (run ./dev build)", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="svcproxy-demo-"))
    box = sb.Sandbox(binary)
    try:
        heading("Sandbox")
        box.build()
        pods = box.add_pods([sb.Pod(name, index, node=node) for name, index, node, _ in PODS])
        echoes = []
        for (name, _, _, ports), pod in zip(PODS, pods):
            echoes += box.start_pod_echoes(pod, ports, id_format="{pod}", wait=False)
        box.wait_ready(echoes)
        step(f"node netns {box.node}: {sb.NODE_V4}, {sb.NODE_V6} (node-a); external client {sb.EXT_V4}")
        step(f"{len(pods)} pods, each in its own netns behind the node, running `svcproxy echo`:")
        for pod in pods:
            step(f"  {pod.name:<27} {pod.v4:<13} {pod.node}")

        heading(f"svcproxy rules --manifests {manifests}  |  nft -f -   (in the node netns)")
        ruleset = _run(binary, "rules", manifests)
        box.nft(box.node, ruleset)
        tables = [line for line in box.nft_list(box.node, ["tables"]).splitlines() if "svcproxy" in line]
        step(f"loaded {len(ruleset.splitlines())} lines; kernel now has: {', '.join(tables)}")

        ready_before = readiness(manifests)
        heading(f"{args.requests} HTTP requests from the external client to web's ClusterIP {WEB_VIP}:{WEB_PORT}")
        before = send_web_traffic(box, args.requests)
        for pod in WEB_PODS:
            step(f"{pod:<22} {'ready' if ready_before.get(pod) else 'not ready':<9} {before.get(pod, 0):>4}  "
                 f"{bar(before.get(pod, 0), args.requests)}")

        heading(f"Pod {MAKE_UNREADY} fails its readiness probe")
        changed_dir = work / "manifests"
        shutil.copytree(manifests, changed_dir)
        n = mark_unready(changed_dir, MAKE_UNREADY)
        if n == 0:
            raise SystemExit(f"demo: {MAKE_UNREADY} not found in {manifests}/*.yaml")
        step(f"marked ready: false, serving: false in {n} EndpointSlice entries (copy in {changed_dir})")
        box.nft(box.node, _run(binary, "rules", changed_dir))
        step("reloaded: svcproxy rules | nft -f -  (one atomic transaction)")
        ready_after = readiness(changed_dir)
        after = send_web_traffic(box, args.requests)

        heading(f"Who answered ({args.requests} requests each round)")
        print_table(before, after, ready_before, ready_after, args.requests)
        got = after.get(MAKE_UNREADY, 0)
        verdict = f"{GREEN}OK{RESET}" if got == 0 else f"{RED}UNEXPECTED{RESET}"
        step(f"{MAKE_UNREADY} after it became unready: {got} requests  [{verdict}]")

        heading(f"svcproxy trace --src {sb.EXT_V4} --dst {WEB_VIP} --dport {WEB_PORT}   (after the change)")
        text = _run(binary, "trace", changed_dir, "--src", sb.EXT_V4, "--dst", WEB_VIP, "--dport", str(WEB_PORT))
        for line in text.rstrip().splitlines():
            step(line)

        heading("A few more flows, each checked against trace")
        other_flows(box, binary, changed_dir)
        failed = got != 0 or any(before.get(p, 0) == 0 for p in WEB_PODS if ready_before.get(p))
        return 1 if failed else 0
    finally:
        heading("Teardown")
        created = list(box.namespaces)
        box.close()
        shutil.rmtree(work, ignore_errors=True)
        step(f"removed {len(created)} network namespaces and every process started in them")


def other_flows(box, binary: str, manifests: Path) -> None:
    flows = [
        ("UDP DNS via kube-dns ClusterIP", box.ext, sb.EXT_V4, DNS_VIP, 53, "udp"),
        ("web over IPv6 ClusterIP", box.ext, sb.EXT_V6, WEB_VIP6, WEB_PORT, "tcp"),
        ("web NodePort on the node IP", box.ext, sb.EXT_V4, sb.NODE_V4, WEB_NODEPORT, "tcp"),
        ("checkout LB IP, externalTrafficPolicy: Local", box.ext, sb.EXT_V4, CHECKOUT_LB, CHECKOUT_PORT, "tcp"),
        ("web ClusterIP, port not in the Service", box.ext, sb.EXT_V4, WEB_VIP, 8080, "tcp"),
    ]
    for title, ns, src, dst, port, proto in flows:
        t = json.loads(_run(binary, "trace", manifests, "--json", "--src", src, "--dst", dst, "--dport", str(port),
                            "--proto", proto))
        r = box.request(ns, dst, port, proto=proto, count=20, src=src, timeout=2.0)
        seen = Counter(r.ids)
        clients = sorted({ip for _, ip, _ in r.replies})
        outcome = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        target = f"[{dst}]:{port}" if ":" in dst else f"{dst}:{port}"
        print(f"   {BOLD}{title}{RESET}: {proto} {src} -> {target}")
        step(f"  trace:   {t['verdict']}" + (f" to {', '.join(t['endpoints'])}" if t["endpoints"] else "")
             + (", masquerade" if t.get("masquerade") else ""))
        answered = ", ".join(f"{pod} {n}" for pod, n in sorted(seen.items()))
        step(f"  packets: {outcome}" + (f" ({answered})" if seen else ""))
        if clients:
            how = "client address kept" if clients == [src] else "masqueraded to the node's address"
            step(f"           pods saw client {', '.join(clients)}: {how}")
        step(f"  {GREEN + 'matches trace' + RESET if agrees(t, r, src) else RED + 'DIFFERS from trace' + RESET}")


def agrees(t: dict, r, src: str) -> bool:
    """The packets did what trace said (the e2e tests check this in depth)."""
    if t["verdict"] == "DNAT":
        pods = {name: index for name, index, _, _ in PODS}
        reached = set()
        for pod, _, _ in r.replies:
            ip = f"10.244.{pods[pod]}.2" if ":" not in src else f"fd00:10:244:{pods[pod]:x}::2"
            reached |= {e for e in t["endpoints"] if sb.split_hostport(e)[0] == ip}
        masqueraded = any(ip != src for _, ip, _ in r.replies)
        return set(r.outcomes) == {"reply"} and len(reached) == len(set(r.ids)) and \
            masqueraded == bool(t.get("masquerade"))
    if t["verdict"] == "REJECT":
        return set(r.outcomes) <= {"refused", "unreachable"}
    if t["verdict"] == "DROP":
        return set(r.outcomes) <= {"timeout", "eperm"}
    return set(r.outcomes) == {"reply"}


if __name__ == "__main__":
    sys.exit(main())
