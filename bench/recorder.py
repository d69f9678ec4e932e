"""A stand-in agent that timestamps each message the moment it is submitted.

    python bench/recorder.py OUTFILE

Puts its tty in raw mode (so every byte arrives as typed and nothing is
echoed), writes ``ready <time>`` once, then for every Enter (CR) it receives
appends one line ``<time.time()> <id>`` to OUTFILE, where ``<id>`` comes from
the delivery's header ``[cmux mail <id> ...]`` (``?`` if there was none,
``-`` for an Enter on an empty line). The
time is taken right after the read(2) that returned the CR: the moment the
message was submitted in this pane, as an agent would see it.
"""

from __future__ import annotations

import os
import re
import sys
import termios
import time
import tty

HEADER = re.compile(rb"\[cmux mail (\S+) ")


def main() -> None:
    out = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)
    os.write(out, f"ready {time.time():.6f}\n".encode())
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        now = time.time()
        if not chunk:
            break
        buf += chunk
        if b"\r" not in chunk:
            continue
        *done, buf = buf.split(b"\r")
        lines = []
        for text in done:
            m = HEADER.search(text)
            mid = m.group(1).decode(errors="replace") if m else "?" if text.strip() else "-"
            lines.append(f"{now:.6f} {mid}\n")
        os.write(out, "".join(lines).encode())


if __name__ == "__main__":
    main()
