"""The baseline: the simple router many tmux agent tools use.

    python bench/baseline_router.py --socket NAME --dir DIR --pane w1=%3 --pane w2=%4 ...

A loop that sleeps ``--interval`` seconds (2 by default), then reads the new
lines of each recipient's mailbox file ``DIR/<name>.jsonl`` (one JSON message
per line, appended by the sender) and types each message into the
recipient's pane with ``tmux send-keys``: the text literally, then Enter, in
one tmux call per message. No inotify, no per-pane parallelism, no
verification: the design cmux's router is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path


def sweep(socket: str, folder: Path, panes: dict[str, str], offsets: dict[str, int]) -> int:
    typed = 0
    for name, pane in panes.items():
        path = folder / f"{name}.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(offsets.get(name, 0))
                chunk = fh.read()
        except FileNotFoundError:
            continue
        end = chunk.rfind(b"\n")
        if end < 0:
            continue
        offsets[name] = offsets.get(name, 0) + end + 1
        for raw in chunk[: end + 1].splitlines():
            msg = json.loads(raw)
            text = f"[cmux mail {msg['id']} from {msg['from']} kind=message] {msg['body']}"
            subprocess.run(
                [
                    "tmux",
                    "-L",
                    socket,
                    "send-keys",
                    "-t",
                    pane,
                    "-l",
                    "--",
                    text,
                    ";",
                    "send-keys",
                    "-t",
                    pane,
                    "Enter",
                ],
                check=False,
                capture_output=True,
            )
            typed += 1
    return typed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--socket", required=True)
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--pane", action="append", default=[], metavar="NAME=%ID")
    p.add_argument("--interval", type=float, default=2.0)
    args = p.parse_args()
    panes = dict(item.split("=", 1) for item in args.pane)
    # Start where the files end now: only what is sent from here on is delivered.
    offsets = {}
    for name in panes:
        try:
            offsets[name] = os.path.getsize(args.dir / f"{name}.jsonl")
        except FileNotFoundError:
            offsets[name] = 0
    while True:
        time.sleep(args.interval)
        sweep(args.socket, args.dir, panes, offsets)


if __name__ == "__main__":
    main()
