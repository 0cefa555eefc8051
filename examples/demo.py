#!/usr/bin/env python3
"""svcproxy demo: the daemon on a throwaway node in network namespaces, real traffic.

  python3 examples/demo.py --svcproxy build/svcproxy --manifests examples   (root; `./dev demo`)

1. builds a sandbox (tests/e2e/sandbox.py): a node, an external client and
   one network namespace per pod of the example manifests, each pod running
   `svcproxy echo`; nothing is linked to the host namespace;
2. starts `svcproxy run --manifests COPY` in the node namespace on a copy of
   the example manifests and shows what it programmed (`rules --live`);
3. sends requests from the external client through web's ClusterIP and
   NodePort with `svcproxy loadtest` and shows which pod answered;
4. while `svcproxy loadtest --watch` loads web from the node, marks one
   ready web pod not ready in the copy (a temp file renamed into place, as
   config tools write); the daemon's sync and the tool's own drain time of
   that pod are shown; then what the partial sync changed and that the pod
   then gets nothing;
5. checks a few other flows against `svcproxy trace --live`;
6. reads /metrics and /healthz, stops the daemon with SIGTERM;
7. removes every namespace and process it created, whatever happens
   (failure, Ctrl-C, SIGTERM).

Exits 1 if any check fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
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
WEB_VIP, WEB_VIP6, WEB_PORT, WEB_NODEPORT = "10.96.120.15", "fd00:10:96::780f", 80, 30080
DNS_VIP = "10.96.0.10"
CHECKOUT_LB, CHECKOUT_PORT = "192.0.2.80", 443
MAKE_UNREADY = "web-5d8f7b9c6-8mzt7"
SLICES_FILE = "endpointslices.yaml"
METRICS_URL = "http://127.0.0.1:10249/metrics"  # the daemon's defaults, inside the node netns
HEALTHZ_URL = "http://127.0.0.1:10256/healthz"

BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") \
    if sys.stdout.isatty() else ("",) * 5


def heading(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def step(text: str) -> None:
    print(f"   {text}", flush=True)


class Checks:
    """Every claim the demo makes is checked; a failed one is printed where
    it happens and makes the demo exit 1."""

    def __init__(self):
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            step(f"{GREEN}ok{RESET}    {what}")
        else:
            step(f"{RED}FAILED{RESET} {what}" + (f": {detail}" if detail else ""))
            self.failed.append(what)
        return ok


# ---------------------------------------------------------------------- daemon log

# klog's header, read tolerantly: "I1128 10:12:08.123456   1234 run] msg" or
# "... 1234 run.cc:42] msg"; values in the message may be quoted.
_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6}\s+\d+\s+[^\]\s]+\]\s+(.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def sync_fields(line: str) -> dict[str, str] | None:
    """The key=value fields of a "sync done" / "sync failed" line (plus
    "ok"), else None."""
    m = _KLOG.match(line)
    if not m or not re.match(r"sync (done|failed)\b", m.group(1)):
        return None
    fields = {k: json.loads(v) if v.startswith('"') else v for k, v in _FIELD.findall(m.group(1))}
    fields["ok"] = "true" if m.group(1).startswith("sync done") else "false"
    return fields


def wait_sync(daemon, *, after: int, reason: str, timeout: float) -> tuple[int, str, dict[str, str]]:
    """The first sync line logged at or after index `after` with `reason`:
    (index, line, fields)."""
    def wanted(line: str) -> bool:
        fields = sync_fields(line)
        return fields is not None and fields.get("reason") == reason

    index = daemon.lines.wait_for(wanted, start=after, timeout=timeout, what=f"sync reason={reason}")
    line = daemon.lines.snapshot(index)[0]
    return index, line, sync_fields(line)


def short(line: str) -> str:
    """A log line without its klog header's date and pid."""
    m = re.match(r"^[IWEF]\d{4} (\d\d:\d\d:\d\d\.\d{6})\s+\d+\s+[^\]\s]+\]\s+(.*)$", line)
    return f"{m.group(1)} {m.group(2)}" if m else line


# ---------------------------------------------------------------------- manifests

def copy_manifests(src: Path, dst: Path) -> list[str]:
    dst.mkdir(parents=True)
    names = []
    for path in sorted(src.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json"):
            shutil.copy2(path, dst / path.name)
            names.append(path.name)
    return names


def _endpoint_blocks(lines: list[str]):
    """Yields the lines of each `- addresses:` item (kubectl's block style)."""
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


def readiness(manifests: Path) -> dict[str, bool]:
    """pod name -> ready, from the web EndpointSlices' entries."""
    ready: dict[str, bool] = {}
    for path in sorted(manifests.glob("*.yaml")):
        for block in _endpoint_blocks(path.read_text().splitlines()):
            text = "\n".join(block)
            name = re.search(r"^\s*name:\s*(\S+)", text, re.M)
            state = re.search(r"^\s*ready:\s*(\S+)", text, re.M)
            if name and name.group(1) in WEB_PODS:
                ready[name.group(1)] = ready.get(name.group(1), True) and bool(state) and state.group(1) == "true"
    return ready


def unready_text(text: str, pod: str, trigger_time: str) -> tuple[str, int]:
    """`text` (a List of EndpointSlices) with ready/serving false for every
    endpoint of `pod`, and the last-change-trigger-time of the slices that
    hold it set to `trigger_time` (as the EndpointSlice controller does when
    a readiness probe fails). Returns the text and how many endpoints changed."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("- ")] + [len(lines)]
    out = lines[:starts[0]]
    changed = 0
    for begin, end in zip(starts, starts[1:]):
        item = lines[begin:end]
        new: list[str] = []
        i = 0
        hit = False
        while i < len(item):
            if not re.match(r"^\s*- addresses:\s*$", item[i]):
                new.append(item[i])
                i += 1
                continue
            block = next(_endpoint_blocks(item[i:]))
            if any(re.match(rf"^\s*name:\s*{re.escape(pod)}\s*$", line) for line in block):
                block = [re.sub(r"^(\s*)(ready|serving):\s*true\s*$", r"\1\2: false", line) for line in block]
                changed += 1
                hit = True
            new += block
            i += len(block)
        if hit:
            new = [re.sub(r"^(\s*endpoints\.kubernetes\.io/last-change-trigger-time:).*$",
                          rf'\1 "{trigger_time}"', line) for line in new]
        out += new
    return "\n".join(out) + "\n", changed


def replace_file(path: Path, text: str, tmp_dir: Path) -> float:
    """Writes a temp file and renames it over `path` (one atomic change for
    a watcher). The temp file lives outside the watched directory, on the
    same file system. Returns the time of the rename."""
    tmp = tmp_dir / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    t = time.time()
    os.rename(tmp, path)
    return t


# ---------------------------------------------------------------------- kernel rules

def nft_blocks(text: str) -> dict[tuple[str, str], list[str]]:
    """(table "ip"/"ip6", "chain services" / "map dnat-3" ...) -> its lines, from
    `nft list`-style text."""
    blocks: dict[tuple[str, str], list[str]] = {}
    family, current = "", None
    for line in text.splitlines():
        m = re.match(r"^table (\S+) svcproxy \{", line)
        if m:
            family = m.group(1)
            continue
        m = re.match(r"^\t(chain|set|map) (\S+) \{", line)
        if m:
            current = blocks.setdefault((family, f"{m.group(1)} {m.group(2)}"), [])
        if current is not None:
            current.append(line)
        if line == "\t}":
            current = None
    return blocks


def element(line: str) -> str:
    """One set or map element from its `nft list` line."""
    text = line.strip()
    text = text[len("elements = { "):] if text.startswith("elements = { ") else text
    return text.rstrip(",").removesuffix(" }")


def web_path(blocks: dict, family: str = "ip") -> list[str]:
    """The lines a packet to web's IPv4 ClusterIP walks: the services chain,
    the set that classifies web's address . protocol . port, the chain that
    set leads to, and web's endpoints in the dnat map that holds them."""
    out = [line[1:] for line in blocks[(family, "chain services")]]
    key = f"{WEB_VIP} . tcp . {WEB_PORT}"

    def holds(lines: list[str], suffix: str) -> bool:
        return any(element(line) == key + suffix or element(line).startswith(key + suffix) for line in lines)

    # A set whose element is exactly web's key (the class of service it is),
    # or the service-ips verdict map (services with a chain of their own).
    classes = [name for (fam, name), lines in blocks.items()
               if fam == family and name.startswith("set ") and any(element(line) == key for line in lines)]
    chain_name = ""
    for cls in classes:
        set_name = cls.split(" ", 1)[1]
        out.append(f"{cls} {{ ... {key} ... }}")
        rule = next((line for line in blocks[(family, "chain services")] if f"@{set_name} goto " in line), "")
        chain_name = chain_name or rule.partition(" goto ")[2].strip()
    entry = next((element(line) for line in blocks.get((family, "map service-ips"), []) if key + " :" in line), "")
    if entry:
        out.append(f"map service-ips {{ ... {entry} ... }}")
        chain_name = entry.partition("goto ")[2]
    chain = blocks.get((family, f"chain {chain_name}"), [])
    out += [line[1:] for line in chain]
    # The chain that finds the service's dnat map (one lookup per endpoint count).
    hop = next((line.partition("goto ")[2].strip() for line in chain if "goto dnat-maps" in line), "")
    out += [line[1:] for line in blocks.get((family, f"chain {hop}"), [])]
    dnat = next((name.split(" ", 1)[1] for (fam, name), lines in blocks.items()
                 if fam == family and name.startswith("map dnat-") and holds(lines, " . ")), "")
    elements = [element(line) for line in blocks.get((family, f"map {dnat}"), []) if key + " ." in line]
    if elements:
        out.append(f"map {dnat} {{ ... {elements[0]}")
        out += [f"    {' ' * len(dnat)}{e}" for e in elements[1:]]
        out[-1] += " ... }"
    return out


def block_items(lines: list[str]) -> list[str]:
    """A chain's rules, or a set's or map's properties and elements."""
    items = []
    for line in lines[1:-1]:
        text = element(line)
        if text:
            items.append(text)
    return items


def rules_diff(before: str, after: str, family: str = "ip") -> list[tuple[str, str]]:
    """What changed between two `rules --live` outputs in one table, object
    by object: (object, "+ element" / "- rule" ...) pairs, new objects with
    their contents, deleted objects on one line."""
    old, new = nft_blocks(before), nft_blocks(after)
    keys = sorted({k for k in (*old, *new) if k[0] == family}, key=lambda k: (k[1].split()[1], k[1]))
    out, deleted = [], []
    for key in keys:
        name = key[1]
        if key not in new:
            deleted.append(name)
            continue
        a, b = block_items(old.get(key, ["", ""])), block_items(new[key])
        changes = [f"- {i}" for i in a if i not in b] + [f"+ {i}" for i in b if i not in a]
        if key not in old:
            name += " (new)"
            changes = [c for c in changes if not c.startswith(("+ type", "+ typeof"))]
        out += [(name if i == 0 else "", c) for i, c in enumerate(changes)]
    if deleted:
        out.append((", ".join(deleted), "deleted"))
    return out


# ---------------------------------------------------------------------- traffic

def loadtest(box, ns: str, args: list[str], json_path: Path) -> tuple[dict, str]:
    """`svcproxy loadtest ARGS --quiet --json F` in namespace ns: (the
    report, its summary)."""
    r = box.exec(ns, [box.svcproxy, "loadtest", *args, "--quiet", "--json", str(json_path)], check=False)
    if r.returncode != 0 or not json_path.exists():
        raise sb.SandboxError(f"svcproxy loadtest {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(json_path.read_text()), r.stdout


def send(box, dst: str, port: int, count: int, work: Path) -> tuple[Counter, dict]:
    """`count` HTTP requests from the external client (`svcproxy loadtest
    --mode http`, the pods' echo naming itself in X-Endpoint); (who
    answered, failures by cause)."""
    report, _ = loadtest(box, box.ext, [f"{dst}:{port}", "--mode", "http", "--no-keepalive", "--requests", str(count),
                                        "--concurrency", "16", "--sources", sb.EXT_V4, "--timeout", "2s"],
                         work / f"send-{dst}-{port}-{time.monotonic_ns()}.json")
    failures = {k: v for k, v in report["errors"].items() if v}
    return Counter({name: e["count"] for name, e in report["endpoints"].items()}), failures


def bar(n: int, total: int, width: int = 20) -> str:
    filled = round(width * n / total) if total else 0
    return "#" * filled + "." * (width - filled)


def counts_table(rounds: list[tuple[str, Counter]], ready: dict[str, bool], total: int) -> None:
    name_w = max(len(p) for p in WEB_PODS)
    nodes = {name: node for name, _, node, _ in PODS}
    head = "".join(f"  {title:<{4 + 1 + 20}}" for title, _ in rounds)
    step(f"{'pod':<{name_w}}  {'node':<6}  {'state':<7}{head}".rstrip())
    for pod in WEB_PODS:
        state = f"{GREEN}ready  {RESET}" if ready.get(pod) else f"{RED}UNREADY{RESET}"
        cells = "".join(f"  {counts.get(pod, 0):>4} {bar(counts.get(pod, 0), total)}" for _, counts in rounds)
        step(f"{pod:<{name_w}}  {nodes[pod]:<6}  {state}{cells}")


def http_get(box, url: str) -> tuple[int, str]:
    """GET url from inside the node netns (Python's urllib; no proxies)."""
    code = ("import sys, urllib.request, urllib.error\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            "try:\n"
            "    r = opener.open(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n")
    result = box.exec(box.node, [sys.executable, "-c", code, url], check=False, timeout=30)
    if result.returncode != 0:
        return 0, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def parse_metrics(text: str) -> dict[str, float]:
    """Sample -> value. kube-proxy's per-family series (ip_family="IPv4" / "IPv6", nothing else)
    are also folded under the bare name: counts and sums added up, timestamps the latest."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
            bare, _, labels = name.partition("{")
            if labels.startswith("ip_family=") and "," not in labels:
                combine = max if bare.endswith("timestamp_seconds") else (lambda a, b: a + b)
                values[bare] = combine(values[bare], values[name]) if bare in values else values[name]
    return values


# ---------------------------------------------------------------------- the story

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
    source = Path(args.manifests).resolve()
    if not os.access(binary, os.X_OK):
        print(f"demo: no svcproxy binary at {binary} (run ./dev build)", file=sys.stderr)
        return 1

    started = time.monotonic()
    check = Checks()
    work = Path(tempfile.mkdtemp(prefix="svcproxy-demo-"))
    box = sb.Sandbox(binary)
    try:
        story(box, source, work, args.requests, check)
    except KeyboardInterrupt:
        print(f"\n{RED}demo: interrupted{RESET}")
        return 130
    except (sb.SandboxError, OSError, subprocess.TimeoutExpired) as exc:
        check(False, "the demo stopped early", str(exc))
    finally:
        heading("Teardown")
        created = list(box.namespaces)
        box.close()
        shutil.rmtree(work, ignore_errors=True)
        left = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                .stdout.split() if ns.startswith(box.prefix + "-")]
        step(f"removed {len(created)} network namespaces, the daemon and every other process started in them"
             + (f"; {RED}still there: {left}{RESET}" if left else ""))
    took = time.monotonic() - started
    if check.failed:
        print(f"\n{RED}demo: {len(check.failed)} check(s) failed: {'; '.join(check.failed)}{RESET} ({took:.1f} s)")
        return 1
    print(f"\n{GREEN}demo: all checks passed{RESET} ({took:.1f} s)")
    return 0


def story(box, source: Path, work: Path, requests: int, check: Checks) -> None:
    heading("Sandbox: a node, an external client and 8 pods, each in its own network namespace")
    box.build()
    pods = box.add_pods([sb.Pod(name, index, node=node) for name, index, node, _ in PODS])
    echoes = []
    for (_, _, _, ports), pod in zip(PODS, pods):
        echoes += box.start_pod_echoes(pod, ports, id_format="{pod}", wait=False)
    box.wait_ready(echoes)
    step(f"node {sb.NODE_V4} / {sb.NODE_V6} (node-a), netns {box.node}; external client {sb.EXT_V4}")
    step("pods (behind the node, each running `svcproxy echo`; node-b's pods are wired the same way):")
    for left, right in zip(pods[::2], pods[1::2]):
        step("".join(f"  {p.name:<26} {p.v4:<13} {p.node:<8}" for p in (left, right)).rstrip())

    manifests = work / "manifests"
    names = copy_manifests(source, manifests)
    flags = [*sb.NODE_FLAGS, "--sync-period", "1h"]
    heading("svcproxy run --manifests COPY <node flags> --sync-period 1h   (in the node netns)")
    step(f"COPY = {manifests} ({', '.join(names)}, copied from {source})")
    daemon = box.start_daemon(manifests, flags)
    _, line, fields = wait_sync(daemon, after=0, reason="start", timeout=30)
    step(f"log: {short(line)}")
    check(fields.get("ok") == "true" and fields.get("mode") == "full", "start: one full sync")

    heading("svcproxy rules --live   (read back from the kernel in the node netns; web's IPv4 path)")
    live_before = box.svcproxy_in(box.node, ["rules", "--live"]).stdout
    blocks = nft_blocks(live_before)
    tables = re.findall(r"^table (\S+ svcproxy) \{", live_before, re.M)
    step(f"{len(live_before.splitlines())} lines: tables {', '.join(tables)}; "
         f"{sum(1 for f, k in blocks if k.startswith('chain'))} chains, "
         f"{sum(1 for f, k in blocks if not k.startswith('chain'))} sets and maps")
    for line in web_path(blocks):
        step(f"  {line.expandtabs(2)}")

    ready_before = readiness(manifests)
    heading(f"{requests} HTTP requests from the external client to each of web's ClusterIP and NodePort")
    cluster_before, failures_c = send(box, WEB_VIP, WEB_PORT, requests, work)
    nodeport_before, failures_n = send(box, sb.NODE_V4, WEB_NODEPORT, requests, work)
    rounds = [(f"{WEB_VIP}:{WEB_PORT}", cluster_before), (f"{sb.NODE_V4}:{WEB_NODEPORT}", nodeport_before)]
    counts_table(rounds, ready_before, requests)
    missing = [p for p in WEB_PODS for _, counts in rounds if ready_before.get(p) and not counts.get(p)]
    extra = [p for p in WEB_PODS for _, counts in rounds if not ready_before.get(p) and counts.get(p)]
    check(not missing and not extra and all(sum(counts.values()) == requests for _, counts in rounds),
          f"all {2 * requests} answered, by every ready pod and no other",
          f"failures {failures_c or failures_n}, missing {missing}, unready pods answering {extra}")

    heading(f"{MAKE_UNREADY} fails its readiness probe (edited while traffic flows)")
    # `svcproxy loadtest --watch` in the node netns, reading the same COPY
    # as the daemon: connect mode, each connection attributed to its pod by
    # the node's conntrack; it times the change itself.
    pod_ips = {f"{p.v4}:8080": p.name for p in pods if p.name in WEB_PODS}
    report_path = work / "watch.json"
    lt = box.spawn(box.node, [box.svcproxy, "loadtest", "shop/web:http", "--manifests", str(manifests), *sb.NODE_FLAGS,
                              "--watch", "--mode", "connect", "--concurrency", "4", "--duration", "3s",
                              "--json", str(report_path)], name="loadtest", lines_from="stderr")
    lt.lines.wait_for("req/s", timeout=20, what="loadtest traffic")
    metrics_before = parse_metrics(http_get(box, METRICS_URL)[1])
    mark = daemon.mark()
    trigger = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text, changed = unready_text((manifests / SLICES_FILE).read_text(), MAKE_UNREADY, trigger)
    if not changed:
        raise sb.SandboxError(f"{MAKE_UNREADY} not found in {manifests / SLICES_FILE}")
    t_edit = replace_file(manifests / SLICES_FILE, text, work)
    step(f"COPY/{SLICES_FILE}: its {changed} endpoints (IPv4 and IPv6 slice) ready: false, serving: false; "
         f"temp file renamed into place")
    _, line, fields = wait_sync(daemon, after=mark, reason="manifests-changed", timeout=10)
    t_sync = sb.klog_time(line)
    step(f"log: {short(line)}")
    check(fields.get("ok") == "true" and fields.get("mode") == "partial",
          "the running daemon applied the edit in one partial sync (no restart)")
    seen = lt.lines.wait_for("endpoints changed at", timeout=10, what="loadtest --watch seeing the edit")
    lt.proc.wait(timeout=30)
    lt.stop()
    report = json.loads(report_path.read_text())
    summary = (lt.log.with_suffix(".other.log")).read_text()
    changed_at = datetime.datetime.strptime(re.search(r"changed at (\S+):", lt.lines.snapshot(seen)[0]).group(1),
                                            "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    step("svcproxy loadtest shop/web:http --manifests COPY <node flags> --watch --mode connect --duration 3s "
         "(node netns):")
    width = max(len(p) for p in pod_ips.values())
    for text_line in summary.rstrip().splitlines():
        bar_line = re.match(r"\s+(\S+:\d+)\s+(#.*)", text_line)
        if bar_line:
            step(f"  {pod_ips.get(bar_line.group(1), bar_line.group(1)):<{width}}  {bar_line.group(2)}")
        elif "Endpoint changes" in text_line or "removed" in text_line:
            for address, name in pod_ips.items():
                text_line = text_line.replace(address, name)
            step(f"  {text_line.strip()}")
    p_addr = next(a for a, n in pod_ips.items() if n == MAKE_UNREADY)
    change = next((c for c in report["changes"] if p_addr in c["removed"]), None)

    def ms(t: float) -> str:
        return f"{1000 * (t - t_edit):+6.1f} ms"

    last_hit = changed_at + change["drain_us"] / 1e6 if change and change["drain_us"] is not None else None
    step(f"edit (rename) -> \"sync done\" logged:                   {ms(t_sync)}")
    step(f"edit (rename) -> loadtest saw the change:             {ms(changed_at)}")
    if last_hit is not None:
        step(f"edit (rename) -> the pod's last answer (tool's drain): {ms(last_hit)}   "
             f"(drain {change['drain_us'] / 1000:+.1f} ms from the change)")
    errors = sum(report["errors"].values())
    # The answer is stamped when the load tester's thread runs: on a loaded
    # machine that can be late by a few hundred ms, hence the slack.
    check(last_hit is not None and last_hit <= t_sync + 0.5 and errors == 0
          and report["endpoints"].get(p_addr, {}).get("count", 0) > 0,
          f"the tool measured its drain: its last answer came before the sync; none of "
          f"{report['requests']} connections failed",
          f"change {change}, sync at {ms(t_sync)}, errors {report['errors']}")

    heading("What the partial sync changed: `rules --live` before vs after   (IPv4 table; IPv6 alike)")
    live_after = box.svcproxy_in(box.node, ["rules", "--live"]).stdout
    diff = rules_diff(live_before, live_after)
    width = max(len(name) for name, _ in diff if len(name) < 45)
    for name, change in diff:
        colour = RED if change.startswith("-") or change == "deleted" else GREEN
        step(f"  {name:<{width}}  {colour}{change}{RESET}")
    compiled = box.svcproxy_run(["rules", "--manifests", str(manifests), *sb.NODE_FLAGS]).stdout
    check(compiled == live_after, "the kernel now holds exactly what `svcproxy rules --manifests COPY` compiles")

    ready_after = readiness(manifests)
    heading(f"The same {requests} requests again")
    cluster_after, failures_c = send(box, WEB_VIP, WEB_PORT, requests, work)
    nodeport_after, failures_n = send(box, sb.NODE_V4, WEB_NODEPORT, requests, work)
    counts_table([(f"{WEB_VIP}:{WEB_PORT}", cluster_after), (f"{sb.NODE_V4}:{WEB_NODEPORT}", nodeport_after)],
                 ready_after, requests)
    got = cluster_after.get(MAKE_UNREADY, 0) + nodeport_after.get(MAKE_UNREADY, 0)
    check(got == 0, f"{MAKE_UNREADY} got no traffic", f"{got} requests reached it")
    others = [p for p in WEB_PODS if ready_after.get(p)]
    check(all(cluster_after.get(p) and nodeport_after.get(p) for p in others)
          and not failures_c and not failures_n
          and sum(cluster_after.values()) == sum(nodeport_after.values()) == requests,
          f"all answered by the other ready pods ({', '.join(p[-5:] for p in others)})",
          f"failures {failures_c or failures_n}")

    heading(f"svcproxy trace --live --src {sb.EXT_V4} --dst {WEB_VIP} --dport {WEB_PORT}   (node netns)")
    text = box.svcproxy_in(box.node, ["trace", "--live", "--src", sb.EXT_V4, "--dst", WEB_VIP,
                                      "--dport", str(WEB_PORT)]).stdout
    for line in text.rstrip().splitlines():
        step(f"  {line}")

    heading("More flows, each checked against `svcproxy trace --live --json`")
    other_flows(box, check)

    heading("GET /metrics and /healthz   (the daemon's default addresses; Python urllib in the node netns)")
    status, body = http_get(box, METRICS_URL)
    metrics_after = parse_metrics(body)
    step(f"{METRICS_URL}: {status}, {len(body.splitlines())} lines; a few, before the edit -> now:")

    def value(metrics: dict, name: str) -> str:
        v = metrics.get(name)
        if v is None:
            return "(absent)"
        if "timestamp_seconds" in name:
            return datetime.datetime.fromtimestamp(v, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        return f"{v:.6g}"

    for name, note in (
            # One sync programs both families: their series are the same, IPv4's is shown.
            ('kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"}', ""),
            ('kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"}', "partial"),
            # Each slice is observed under its own family: both added up.
            ("kubeproxy_network_programming_duration_seconds_count", "network"),
            ("kubeproxy_sync_proxy_rules_endpoint_changes_total", ""),
            ('kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}', ""),
            ('svcproxy_kernel_objects{kind="elements"}', "")):
        extra = ""
        if note:  # the histogram's new observations, from its _sum and _count
            stem = name.replace("_count", "_sum")
            n = metrics_after.get(name, 0) - metrics_before.get(name, 0)
            total = metrics_after.get(stem, 0) - metrics_before.get(stem, 0)
            if n > 0:
                extra = f"   (+{n:.0f}" + (", the IPv4 and IPv6 slice" if note == "network" else "") \
                    + f": {1000 * total / n:.1f} ms each)"
        step(f"  {name:<76} {value(metrics_before, name):>12} -> {value(metrics_after, name)}{extra}")
    partial = 'kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"}'
    check(status == 200 and metrics_after.get(partial, 0) > metrics_before.get(partial, 0),
          "/metrics counts the edit's partial sync", f"status {status}: {body[:200]}")
    status, body = http_get(box, HEALTHZ_URL)
    step(f"{HEALTHZ_URL}: {status} {body.strip()}")
    try:
        healthy = status == 200 and bool(json.loads(body).get("lastUpdated"))
    except ValueError:
        healthy = False
    check(healthy, "/healthz answers 200 with JSON")

    heading("kill -TERM the daemon")
    rc, took = daemon.stop()
    step(f"log: {short(daemon.lines.snapshot()[-1]) if len(daemon.lines) else '(nothing)'}")
    left = [t for t in re.findall(r"^table (\S+ svcproxy)$", box.nft_list(box.node, ["tables"]), re.M)]
    check(rc == 0, f"exited {rc} after {1000 * took:.0f} ms", "expected exit status 0")
    check(len(left) == 2, f"rules left in place, as kube-proxy does: {', '.join(left)} still in the node netns")


def other_flows(box, check: Checks) -> None:
    flows = [
        ("UDP DNS via kube-dns ClusterIP", sb.EXT_V4, DNS_VIP, 53, "udp"),
        ("web over IPv6 ClusterIP", sb.EXT_V6, WEB_VIP6, WEB_PORT, "tcp"),
        ("checkout LB IP, externalTrafficPolicy: Local", sb.EXT_V4, CHECKOUT_LB, CHECKOUT_PORT, "tcp"),
        ("web ClusterIP, a port not in the Service", sb.EXT_V4, WEB_VIP, 8080, "tcp"),
    ]
    for title, src, dst, port, proto in flows:
        t = json.loads(box.svcproxy_in(box.node, ["trace", "--live", "--json", "--src", src, "--dst", dst,
                                                  "--dport", str(port), "--proto", proto]).stdout)
        r = box.request(box.ext, dst, port, proto=proto, count=20, src=src, timeout=2.0)
        seen = Counter(r.ids)
        clients = sorted({ip for _, ip, _ in r.replies})
        target = f"[{dst}]:{port}" if ":" in dst else f"{dst}:{port}"
        n = len(t["endpoints"])
        verdict = t["verdict"] + (f" to {n} endpoint{'s' if n > 1 else ''}" if n else "") \
            + (", masquerade" if t.get("masquerade") else "")
        outcome = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        answered = ", ".join(f"{pod.rsplit('-', 1)[-1]} {n}" for pod, n in sorted(seen.items()))
        seen_as = ""
        if clients:
            seen_as = "; pods saw " + ("the client's address" if clients == [src] else "node addresses (masquerade)")
        check(agrees(t, r, src), f"{title}: {proto} {src} -> {target}",
              "packets did not do what trace said")
        step(f"        trace: {verdict} | 20 sent: {outcome}" + (f" ({answered})" if seen else "") + seen_as)


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
