"""tools/mailbox: an agent's mailbox client (see mailbox/README.md).

    mailbox send TO TEXT        TEXT may be - to read standard input
    mailbox done TEXT           to your supervisor; marks you done
    mailbox blocked TEXT        to your supervisor; marks you blocked
    mailbox status TEXT         a progress note to your supervisor
    mailbox read [--all] [--json]
    mailbox ls [--json]

The sender is $CMUX_AGENT, proven by $CMUX_AGENT_TOKEN (a person without
them is `human`); see cmux/identity.py.
"""

from __future__ import annotations

import sys

from cmux.agenttools import identity, run
from cmux.errors import EmptyMessage

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

PROG = "mailbox"


def _text(value: str) -> str:
    from cmux.inputs import text_or_stdin

    text = text_or_stdin(value, "the message")
    if not text.strip():
        raise EmptyMessage(
            "the message is empty", 'give the text: mailbox send NAME "text" (or - for stdin)'
        )
    return text


def parser() -> argparse.ArgumentParser:
    import argparse  # only when the quick path does not fit (~11 ms to import)

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Send and read cmux mail. Your name comes from $CMUX_AGENT.",
        epilog='Examples:  mailbox send w1 "rebase on main"   |   '
        'mailbox done "tests pass, see commit abc123"'
        "   |   git diff | mailbox send supervisor -",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("send", help="send TEXT to agent TO (or `human`)")
    s.add_argument("to")
    s.add_argument("text", help="the message; - reads standard input")
    s.add_argument("--subject", default="")
    s.add_argument("--reply-to", metavar="ID", help="the id of the message this answers")
    s.add_argument("--json", action="store_true", help="print the stored message as JSON")
    for kind, what in (
        ("done", "report your task finished (after the tests pass)"),
        ("blocked", "report that you cannot go on, and what you need"),
        ("status", "a progress note"),
    ):
        k = sub.add_parser(kind, help=f"{what}; goes to your supervisor")
        k.add_argument("text", help="the report; - reads standard input")
        k.add_argument("--json", action="store_true")
    r = sub.add_parser("read", help="show your new mail (and mark it read)")
    r.add_argument("--all", action="store_true", help="everything in your mailbox, read or not")
    r.add_argument("--json", action="store_true")
    r.add_argument("--id", help="only the message with this id")
    ls = sub.add_parser("ls", help="the agents you can write to, and their mail")
    ls.add_argument("--json", action="store_true")
    return p


class _Args:
    """What parse_args would give for a quick call (argparse.Namespace without argparse)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _quick(argv: list[str]) -> Any:
    """The common calls (``send TO TEXT``, ``done TEXT`` ...) without
    building the argparse parser (~10 ms of every agent's call)."""

    def plain(a: str) -> bool:
        return a == "-" or not a.startswith("-")

    if len(argv) == 3 and argv[0] == "send" and plain(argv[1]) and plain(argv[2]):
        return _Args(cmd="send", to=argv[1], text=argv[2], subject="", reply_to=None, json=False)
    if len(argv) == 2 and argv[0] in ("done", "blocked", "status") and plain(argv[1]):
        return _Args(cmd=argv[0], text=argv[1], json=False)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _quick(argv) or parser().parse_args(argv)
    from cmux.config import load_config
    from cmux.ops import mail

    cfg = load_config()
    # Verified (cmux/identity.py): an agent sends, reports and reads only as itself.
    me = identity(cfg) if args.cmd != "ls" else ""
    if args.cmd == "send":
        msg = mail.send(
            cfg,
            to=args.to,
            body=_text(args.text),
            sender=me,
            subject=args.subject,
            reply_to=args.reply_to,
        )
        print(msg.to_json() if args.json else f"sent {msg.id} to {msg.to}")
        return 0
    if args.cmd in mail.REPORTS:
        msg = mail.report(cfg, me, args.cmd, _text(args.text))
        print(msg.to_json() if args.json else f"sent {args.cmd} {msg.id} to {msg.to}")
        return 0
    if args.cmd == "read":
        return _read(cfg, me, everything=args.all, as_json=args.json, only=args.id)
    if args.cmd == "ls":
        rows = mail.boxes(cfg)
        if args.json:
            import json

            print(json.dumps(rows))
        else:
            from cmux.text import one_line

            for r in rows:
                held = r["held_reason"]
                line = f"{r['name']:<20} {r['pending']} waiting"
                line += f", {r['unread']} unread" if r.get("unread") else ""
                line += f" (held: {held})" if held else ""
                print(one_line(line))
        return 0
    return 2


def _read(cfg, me: str, *, everything: bool, as_json: bool, only: str | None) -> int:
    """Print the mail: bodies and fields are stored text, so sanitized (and
    each header field kept on its line); --json is exact."""
    from cmux.ops import mail
    from cmux.text import json_text, one_line, sanitize

    msgs = mail.read(cfg, me, everything=everything, only=only)
    if as_json:
        print(json_text("[" + ",".join(m.to_json() for m in msgs) + "]"))
        return 0
    if not msgs:
        print("no new mail" if not everything else "no mail")
    for m in msgs:
        head = f"--- {m.id} from {m.sender} kind={m.kind} at {m.ts}"
        print(one_line(head + (f" subject: {m.subject}" if m.subject else "")))
        print(sanitize(m.body.rstrip("\n")))
    return 0


if __name__ == "__main__":
    run(main, PROG)
