#!/usr/bin/env python3
"""Long-running traffic for the daemon tests, run inside a namespace (see
Sandbox.spawn). Each mode prints one JSON object per line on stdout, flushed
at once, with wall-clock times (time.time(), CLOCK_REALTIME: comparable to
the timestamps of svcproxy's log lines), and runs until stdin is closed.

  udp      --dst --port --sport [--interval 0.01]
           One datagram every --interval seconds from the fixed source port
           --sport (so conntrack keeps one entry for the whole flow). Prints
           {"t": ..., "id": "<echo id>"} per reply and {"t": ..., "error": ...}
           per error (e.g. "refused": an ICMP port unreachable came back).
  tcp-loop --dst --port [--parallel 2] [--timeout 1]
           Short connections, one after the other in each of --parallel
           threads: connect, send a line, read the echo's answer, close.
           Prints {"t0": start, "t1": end, "id": ...} or {"t0", "t1", "error"}
           per request, then {"done": true} once stdin is closed.
  tcp-hold --dst --port [--timeout 1]
           One connection kept open: prints {"connected": true, "id": ...}
           after its first exchange, then one exchange per stdin line
           ({"id": ...} or {"error": ...}).

Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import threading
import time

_out_lock = threading.Lock()


def emit(obj: dict) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def reply_id(data: bytes) -> str:
    line = data.decode(errors="replace").strip().splitlines()[-1]
    ident, _, _client = line.rpartition(" ")
    if not ident:
        raise ValueError(f"unexpected reply {line!r}")
    return ident


def describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return f"{type(exc).__name__}: {exc}"


def stdin_closed() -> threading.Event:
    """Set once stdin reaches EOF (the test's way of saying stop)."""
    done = threading.Event()

    def watch():
        for _ in sys.stdin:
            pass
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    return done


def udp(args) -> int:
    stop = stdin_closed()
    family = family_of(args.dst)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", args.sport))
    # Connected: replies (reverse-NATed to dst:port) are accepted, ICMP
    # errors are reported to us.
    s.connect((args.dst, args.port))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    emit({"t": time.time(), "started": True, "sport": args.sport})
    next_send = time.monotonic()
    sent = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_send:
            try:
                s.send(b"ping %d\n" % sent)
            except OSError as exc:  # an earlier ICMP error can surface on send
                emit({"t": time.time(), "error": describe(exc)})
            sent += 1
            next_send += args.interval
            if next_send < now:  # fell behind (scheduling): keep the pace, skip the backlog
                next_send = now + args.interval
            continue
        for _key, _ in sel.select(timeout=next_send - now):
            while True:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    emit({"t": time.time(), "error": describe(exc)})
                    break
                emit({"t": time.time(), "id": reply_id(data)})
    emit({"t": time.time(), "done": True, "sent": sent})
    return 0


def tcp_exchange(sock: socket.socket) -> str:
    sock.sendall(b"hello\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed before the answer")
        data += chunk
    return reply_id(data)


def tcp_loop(args) -> int:
    stop = stdin_closed()
    family = family_of(args.dst)

    def worker():
        while not stop.is_set():
            t0 = time.time()
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(args.timeout)
                    s.connect((args.dst, args.port))
                    ident = tcp_exchange(s)
                emit({"t0": t0, "t1": time.time(), "id": ident})
            except Exception as exc:  # recorded, never fatal
                emit({"t0": t0, "t1": time.time(), "error": describe(exc)})

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit({"done": True})
    return 0


def tcp_hold(args) -> int:
    family = family_of(args.dst)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect((args.dst, args.port))
        emit({"connected": True, "id": tcp_exchange(s), "local": list(s.getsockname()[:2])})
    except Exception as exc:
        emit({"connected": False, "error": describe(exc)})
        return 1
    for _ in sys.stdin:
        try:
            emit({"id": tcp_exchange(s)})
        except Exception as exc:
            emit({"error": describe(exc)})
    s.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("udp", "tcp-loop", "tcp-hold"))
    parser.add_argument("--dst", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sport", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    return {"udp": udp, "tcp-loop": tcp_loop, "tcp-hold": tcp_hold}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
