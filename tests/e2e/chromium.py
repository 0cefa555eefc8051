"""Headless Chromium (Debian's `chromium`) for e2e tests of generated pages:
load a file, take a screenshot, dump the DOM and collect every console
message. Chromium runs in a network namespace of its own (`unshare -n`), so a
page that needed the network would fail to render what it fetches, and the
host's network is never touched. Python 3 stdlib only.

Console messages come from Chromium's own log (`--enable-logging=stderr`),
where each one is a line with "CONSOLE" in it: JavaScript errors, refused
loads (Content-Security-Policy) and SVG attribute errors all land there.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE[:(]\S*\s+(.*)$")


def available() -> bool:
    return shutil.which("chromium") is not None and shutil.which("unshare") is not None


@dataclass
class Loaded:
    dom: str                 # the DOM after load, serialized (--dump-dom)
    console: list[str]       # every console message, in order
    screenshot: Path         # PNG
    log: str                 # Chromium's stderr of the screenshot run


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    argv = ["unshare", "-n", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def load(page: Path, screenshot: Path, *, width: int = 1000, height: int = 2400, timeout: float = 120) -> Loaded:
    """Loads `page` (a file) twice: once for the screenshot (and the console
    log), once for the DOM. Raises if Chromium fails or writes no PNG."""
    url = page.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        shot = _run([f"--screenshot={screenshot}", f"--window-size={width},{height}", url], Path(profile), timeout)
        if shot.returncode != 0 or not screenshot.exists():
            raise RuntimeError(f"chromium screenshot failed (exit {shot.returncode}): {shot.stderr[-2000:]}")
        dump = _run(["--dump-dom", url], Path(profile), timeout)
        if dump.returncode != 0:
            raise RuntimeError(f"chromium --dump-dom failed (exit {dump.returncode}): {dump.stderr[-2000:]}")
    console = [m.group(1) for line in (shot.stderr + dump.stderr).splitlines() if (m := CONSOLE.search(line))]
    return Loaded(dom=dump.stdout, console=console, screenshot=screenshot, log=shot.stderr)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG,
    unfiltered (what Chromium's screenshots are)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            if depth != 8 or color not in (2, 6):
                raise ValueError(f"{path}: PNG depth {depth} color type {color} not handled")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def color_counts(path: Path, colors: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], int]:
    """How many pixels of the screenshot have exactly each of these colours
    (one decode: a full-page screenshot takes seconds in pure Python)."""
    width, _, rows = png_pixels(path)
    bpp = len(rows[0]) // width if rows else 3
    wanted = {bytes(c): c for c in colors}
    counts = dict.fromkeys(colors, 0)
    for row in rows:
        for x in range(0, len(row), bpp):
            c = wanted.get(row[x:x + 3])
            if c is not None:
                counts[c] += 1
    return counts
