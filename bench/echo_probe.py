"""One fresh TCP connection to a service, answered by the lab's echo pods (`svcproxy echo`
style: a line in, "<id> <rest>" out): which pod answered. Shared by daemon_bench.py and
cluster_bench.py."""
from __future__ import annotations

import socket


def ask(vip: str, port: int, timeout: float = 1.0) -> str | None:
    """The id of the echo answering one fresh TCP connection to vip:port, or None (no answer,
    refused, ...). Runs in the calling thread's network namespace."""
    try:
        with socket.create_connection((vip, port), timeout=timeout) as s:
            s.sendall(b"hello\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    ident, _, _ = data.decode(errors="replace").strip().rpartition(" ")
    return ident or None
