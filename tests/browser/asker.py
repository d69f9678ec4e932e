"""A stand-in for a program that asks permission before a tool call: it draws
the dialog Claude Code draws (a rule, the tool, "Do you want to proceed?",
numbered options; cmux/agents/screen.py reads it as a permission dialog) and
waits for one key. The answer it got stays on its screen: APPROVED for the
"Yes" option, DENIED for any other key. Run in a cmux pane by the browser
tests (`cmux spawn NAME --command "python asker.py"`)."""

from __future__ import annotations

import sys
import termios
import time
import tty


def main() -> None:
    print("asker: I want to run a command")
    print("─" * 60)
    print(" Bash command")
    print("   touch approved.txt")
    print(" Do you want to proceed?")
    print(" ❯ 1. Yes")
    print("   2. No")
    sys.stdout.flush()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        key = sys.stdin.read(1)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    sys.stdout.write("\x1b[2J\x1b[H")  # the dialog goes away, as Claude Code's does
    print("APPROVED" if key == "1" else f"DENIED with {key!r}")
    sys.stdout.flush()
    time.sleep(3600)


if __name__ == "__main__":
    main()
