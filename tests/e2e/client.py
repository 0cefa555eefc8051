#!/usr/bin/env python3
"""Test client, run inside a namespace: makes --count fresh connections (TCP)
or sockets (UDP) to --dst:--port, sends one line (or an HTTP GET with
--http) on each, reads the `svcproxy echo` answer "<id> <client>", and prints
one JSON object:

  {"replies": [{"id": "web-1:8080", "client": "10.244.1.1:40000"}, ...],
   "outcomes": {"reply": 58, "timeout": 2},
   "errors": ["first few unexpected errors"]}

With --serve it instead reads one JSON request per stdin line (the same
fields as the flags: dst, port, proto, count, timeout, parallel, src, http)
and answers each with one such JSON line, so a test pays the interpreter's
start-up once per namespace rather than once per request.

Outcomes: reply; refused (TCP reset or ICMP port unreachable); unreachable
(ICMP host/net unreachable or prohibited); timeout (no answer in --timeout);
eperm (dropped by the local output hook: UDP sees it at once, TCP as a
timeout); reset (reset after the connection was established); error.
Python 3 stdlib only.
"""

import argparse
import errno
import json
import socket
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor


def classify(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES):
            return "unreachable"
        if exc.errno == errno.EPERM:
            return "eperm"
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
    return "error"


def parse_reply(text: str) -> dict:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    ident, _, client = line.rpartition(" ")
    if not ident or not client:
        raise ValueError(f"unexpected reply {text!r}")
    return {"id": ident, "client": client}


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def attempt_tcp(args) -> dict:
    family = family_of(args.dst)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(args.timeout)
        if args.src:
            s.bind((args.src, 0))
        s.connect((args.dst, args.port))
        if args.http:
            host = f"[{args.dst}]" if family == socket.AF_INET6 else args.dst
            s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        else:
            s.sendall(b"hello\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if not args.http and data.endswith(b"\n"):
                break
        text = data.decode(errors="replace")
        if args.http:
            head, _, body = text.partition("\r\n\r\n")
            if not head.startswith("HTTP/1.0 200"):
                raise ValueError(f"unexpected HTTP response {text!r}")
            text = body
        return parse_reply(text)


def attempt_udp(args) -> dict:
    family = family_of(args.dst)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(args.timeout)
        if args.src:
            s.bind((args.src, 0))
        # Connected, so that ICMP errors (REJECT) are reported to us.
        s.connect((args.dst, args.port))
        s.send(b"hello\n")
        return parse_reply(s.recv(65536).decode(errors="replace"))


def run(args) -> dict:
    attempt = attempt_udp if args.proto == "udp" else attempt_tcp

    def one(_):
        try:
            return "reply", attempt(args)
        except Exception as exc:  # classified, never fatal
            return classify(exc), f"{type(exc).__name__}: {exc}"

    workers = max(1, min(args.parallel, args.count))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, range(args.count)))

    outcomes = Counter(kind for kind, _ in results)
    replies = [value for kind, value in results if kind == "reply"]
    errors = [value for kind, value in results if kind == "error"][:5]
    return {"replies": replies, "outcomes": dict(outcomes), "errors": errors}


def serve() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            args = argparse.Namespace(dst=request["dst"], port=int(request["port"]),
                                      proto=request.get("proto", "tcp"), count=int(request.get("count", 1)),
                                      timeout=float(request.get("timeout", 1.0)),
                                      parallel=int(request.get("parallel", 16)), src=request.get("src"),
                                      http=bool(request.get("http", False)))
            answer = run(args)
        except Exception as exc:
            answer = {"fatal": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="answer JSON requests from stdin")
    parser.add_argument("--dst")
    parser.add_argument("--port", type=int)
    parser.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--src", help="source address to bind")
    parser.add_argument("--http", action="store_true", help="send an HTTP GET instead of a line (TCP)")
    args = parser.parse_args()
    if args.serve:
        return serve()
    if not args.dst or args.port is None:
        parser.error("--dst and --port are required (or --serve)")
    json.dump(run(args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
