"""A stand-in agent for the tests: puts its tty in raw mode and appends every
byte it receives to a file, so a test sees exactly what reached the pane.

    python tests/recorder.py OUTFILE [--reply]

Each delivered message ends with the Enter key, which arrives as CR.
"""

from __future__ import annotations

import os
import sys
import termios
import tty


def main() -> None:
    out = sys.argv[1]
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)
    with open(out, "ab", buffering=0) as fh:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            fh.write(chunk)


if __name__ == "__main__":
    main()
