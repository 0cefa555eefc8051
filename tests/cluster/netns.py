"""Run Python code inside a network namespace without a subprocess.

A network namespace is per thread (setns(2) with CLONE_NEWNET changes only
the calling thread), and a socket stays in the namespace it was created in.
So a thread that entered a lab namespace makes its connections there, while
the rest of the process (and its one clock) stays where it was: this is how
one benchmark process talks to the apiserver, to each proxy's metrics port
and through each node's VIPs at once. Python 3 stdlib only.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import Future

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter(ns: str) -> None:
    """Moves the calling thread into /run/netns/ns (for good: use a thread of its own)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def start(ns: str, fn, *args, name: str | None = None, **kwargs) -> tuple[threading.Thread, Future]:
    """Runs fn(*args, **kwargs) in a new daemon thread inside ns; the Future has its result."""
    future: Future = Future()

    def body():
        try:
            enter(ns)
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to whoever waits on the future
            future.set_exception(e)

    thread = threading.Thread(target=body, name=name or f"netns:{ns}", daemon=True)
    thread.start()
    return thread, future


def call(ns: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) inside ns; waits for and returns its result."""
    thread, future = start(ns, fn, *args, **kwargs)
    result = future.result()
    thread.join()
    return result
