"""`svcproxy echo` on loopback (no root needed): TCP lines, HTTP, UDP, IPv6,
readiness line, exit status on SIGTERM/SIGINT, bad --listen values."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("SVCPROXY_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SVCPROXY = os.environ.get("SVCPROXY_BIN", str(SOURCE_DIR / "build" / "svcproxy"))


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Echo:
    """Runs `svcproxy echo` and waits for its "listening on" line."""

    def __init__(self, listen: str, *extra: str, timeout: float = 10):
        self.proc = subprocess.Popen([SVCPROXY, "echo", "--listen", listen, *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise AssertionError(f"echo --listen {listen}: no 'listening on' line in {timeout}s")
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    raise AssertionError(f"echo exited {self.proc.wait()}: {self.proc.stderr.read().decode()}")
                line += chunk
        self.line = line.decode().strip()
        host, _, port = self.line.removeprefix("listening on ").rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=5)
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                stream.close()


@unittest.skipUnless(os.access(SVCPROXY, os.X_OK), f"no svcproxy binary at {SVCPROXY}")
class TestEcho(unittest.TestCase):
    def test_tcp_answers_every_line_with_id_and_client(self):
        echo = Echo("127.0.0.1:0", "--id", "pod-1")
        try:
            self.assertRegex(echo.line, r"^listening on 127\.0\.0\.1:\d+$")
            with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
                me = "%s:%d" % s.getsockname()
                f = s.makefile("rwb")
                for _ in range(3):
                    f.write(b"ping\n")
                    f.flush()
                    self.assertEqual(f.readline().decode(), f"pod-1 {me}\n")
                # A last line without newline is answered at EOF, then the server closes.
                f.write(b"tail")
                f.flush()
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(f.read().decode(), f"pod-1 {me}\n")
        finally:
            self.assertEqual(echo.stop(), 0)

    def test_http_get(self):
        echo = Echo("127.0.0.1:0", "--id", "web")
        try:
            with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
                me = "%s:%d" % s.getsockname()
                s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            head, _, body = data.decode().partition("\r\n\r\n")
            self.assertTrue(head.startswith("HTTP/1.0 200 OK\r\n"), head)
            self.assertIn(f"Content-Length: {len(body)}", head)
            self.assertEqual(body, f"web {me}\n")
        finally:
            self.assertEqual(echo.stop(signal.SIGINT), 0)

    def test_udp(self):
        echo = Echo("127.0.0.1:0", "--udp", "--id", "dns-1")
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.connect(("127.0.0.1", echo.port))
                me = "%s:%d" % s.getsockname()
                for _ in range(2):
                    s.send(b"q")
                    self.assertEqual(s.recv(100).decode(), f"dns-1 {me}\n")
        finally:
            self.assertEqual(echo.stop(), 0)

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_dual_stack_listener(self):
        for udp in ([], ["--udp"]):
            echo = Echo("[::]:0", "--id", "x", *udp)
            try:
                self.assertRegex(echo.line, r"^listening on \[::\]:\d+$")
                for family, address in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
                    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
                    with socket.socket(family, kind) as s:
                        s.settimeout(5)
                        s.connect((address, echo.port))
                        host, port = s.getsockname()[:2]
                        me = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
                        s.send(b"hi\n")
                        self.assertEqual(s.recv(100).decode(), f"x {me}\n")
            finally:
                self.assertEqual(echo.stop(), 0)

    def test_default_id_is_hostname(self):
        echo = Echo("127.0.0.1:0")
        try:
            with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
                s.sendall(b"x\n")
                self.assertTrue(s.recv(200).decode().startswith(socket.gethostname() + " "))
        finally:
            echo.stop()

    def test_bad_listen_values(self):
        for bad in ("1.2.3:80", "::1:80", "127.0.0.1:70000", "127.0.0.1", "[::1]:x"):
            result = subprocess.run([SVCPROXY, "echo", "--listen", bad], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(result.returncode, 0, bad)
            self.assertIn(bad, result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
