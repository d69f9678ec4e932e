"""tools/journal: write and search the team's long-term memory.

argparse, plain text, light imports: agents call this many times a minute.
The data root comes from CMUX_HOME (set for every agent) or the nearest
cmux.toml; the author is CMUX_AGENT (checked against its CMUX_AGENT_TOKEN),
or ``human`` for a person. Whatever the journal holds is printed through
``_say`` (sanitized), JSON through ``_dump``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from cmux.agenttools import identity, run
from cmux.inputs import arg_text
from cmux.paths import DataRoot
from cmux.text import json_text, one_line, sanitize

if TYPE_CHECKING:
    from cmux.config import Config

PROG = "journal"

DESCRIPTION = """\
The journal is the team's long-term memory: markdown files under
journal/YYYY-MM-DD.md that every agent can write and search, and
journal/MEMORY.md, the short list of facts every agent is started with.
Write an entry when you finish something, decide something, or hit a wall:
the next session (yours or another agent's) starts from what you wrote.
"""

EPILOG = """\
examples:
  journal add "Fixed the flaky login test" --tags tests,auth --body "What was done: ...
  Why: ... Key decisions: ... Issues encountered: ..."
  git diff --stat | journal add "Refactored the router" --tags mail -
  journal search "flaky test"          every word must match
  journal search '"exact phrase"'      words in this order
  journal search -- 'deploy*' -staging  prefix, and exclude a word
  journal recent --days 3
  journal show yesterday
  journal remember "the tests need TZ=UTC"
"""


def _cfg() -> Config:
    from cmux.config import load_config

    return load_config()


def _data() -> DataRoot:
    return _cfg().data


def _dump(obj: Any) -> None:
    sys.stdout.write(json_text(json.dumps(obj, indent=2, ensure_ascii=False)) + "\n")


def _say(text: str, end: str = "\n") -> None:
    """Print stored text, safe for the terminal it lands in."""
    sys.stdout.write(sanitize(text) + end)


def cmd_add(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    cfg = _cfg()
    title = arg_text(args.title, "the title")
    body = journal.body_text(args.body, args.body_arg)
    tags = journal.tags(args.tags)
    entry = journal.add(cfg.data, agent=identity(cfg), title=title, body=body, tags=tags)
    if args.json:
        _dump(entry.to_dict())
    else:
        _say(f"added {entry.date} {one_line(entry.heading)}  ({entry.file}:{entry.line})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    query = " ".join(args.query)
    hits = journal.search(_data(), query, limit=args.limit, agent=args.agent)
    if args.json:
        _dump([h.to_dict() for h in hits])
        return 0
    if not hits:
        print(f"no journal entry matches {query!r}")
        return 0
    for h in hits:
        tags = f"  [{', '.join(h.tags)}]" if h.tags else ""
        _say(one_line(f"{h.date} {h.time or '--:--:--'}  {h.agent}  {h.title}{tags}"))
        snippet = " ".join(h.snippet.split())
        if snippet:
            _say(f"    {one_line(snippet)}")
        _say(one_line(f"    {h.file}:{h.line}"))
    return 0


def cmd_recent(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    entries = journal.recent(_data(), days=args.days, agent=args.agent)
    if args.json:
        _dump([e.to_dict() for e in entries])
        return 0
    if not entries:
        days = "today" if args.days == 1 else f"in the last {args.days} days"
        print(f"no journal entries {days}; `journal recent --days 30` looks further back")
        return 0
    for e in entries:
        _say(_brief(e, full=args.full))
    return 0


def _brief(entry: Any, *, full: bool, lines: int = 6) -> str:
    text = entry.to_markdown(with_date=True).rstrip("\n")
    if full:
        return text + "\n"
    body = text.split("\n")
    if len(body) > lines + 3:
        more = len(body) - (lines + 3)
        body = [*body[: lines + 3], f"… ({more} more lines: journal show {entry.date})"]
    return "\n".join(body) + "\n"


def cmd_show(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    shown = journal.show(_data(), args.date)
    if shown.text is None:
        if args.json:
            _dump([])
            return 0
        days = shown.latest_days()
        hint = f"; the latest days with entries: {', '.join(days)}" if days else ""
        print(f"no journal entries on {shown.day}{hint}")
        return 0
    if args.json:
        _dump([e.to_dict() for e in shown.entries()])
    else:
        _say(shown.text, end="" if shown.text.endswith("\n") else "\n")
    return 0


def cmd_remember(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    cfg = _cfg()
    r = journal.remember(cfg.data, arg_text(" ".join(args.text), "the fact"), agent=identity(cfg))
    if args.json:
        _dump(r.to_dict())
        return 0
    _say(f"remembered: {r.fact}" if r.added else f"already remembered: {r.fact}")
    if r.dropped:
        print(
            f"MEMORY.md was full: dropped the {len(r.dropped)} oldest fact(s), "
            "kept in the journal (tag memory):"
        )
        for d in r.dropped:
            _say(f"  - {one_line(d)}")
    return 0


def cmd_memory(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    mem = journal.memory(_data())
    if args.json:
        _dump(mem)
    elif mem["text"]:
        _say(mem["text"], end="" if mem["text"].endswith("\n") else "\n")
    else:
        print('MEMORY.md is empty; add a fact with `journal remember "..."`')
    return 0


def cmd_context(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    _say(journal.context(_data(), budget=args.budget), end="")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from cmux.ops import journal

    data = _data()
    stats = journal.reindex(data)
    if args.json:
        _dump(stats.to_dict())
    else:
        print(
            f"rebuilt {data.index_db}: {stats.entries_indexed} entries from "
            f"{stats.files_indexed} files in {stats.seconds:.2f}s"
        )
    return 0


def _para(text: str) -> str:
    return textwrap.fill(text, 78)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return n


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    a = sub.add_parser(
        "add",
        help="write an entry (what was done, why, decisions, issues)",
        description=_para(
            "Append an entry to today's file, signed with your agent name. "
            "Suggested body: What was done / Why / Key decisions / Issues encountered."
        ),
        formatter_class=raw,
        epilog='example:\n  journal add "Moved config loading into one place" '
        '--tags config --body "What was done: ..."\n  pytest -q 2>&1 | tail -5 | '
        'journal add "Test run after the refactor" -',
    )
    a.add_argument("title", help="one line: what happened")
    a.add_argument("body_arg", nargs="?", metavar="BODY", help="the body; '-' reads stdin")
    a.add_argument("--body", "-b", metavar="TEXT", help="the body (markdown); '-' reads stdin")
    a.add_argument("--tags", "-t", action="append", metavar="A,B", help="comma-separated tags")
    a.add_argument("--json", action="store_true", help="print the entry as JSON")
    a.set_defaults(fn=cmd_add)

    s = sub.add_parser(
        "search",
        help="full-text search, best match first",
        description=_para(
            "Search titles, tags and bodies of every entry, best match first "
            "(titles count most). Words match by stem: 'failing' finds 'failed'."
        ),
        formatter_class=raw,
        epilog="query syntax:\n"
        "  flaky test          entries with both words\n"
        '  "flaky test"        the words in this order\n'
        "  deploy*             any word starting with deploy\n"
        "  redis OR memcached  either word\n"
        "  -staging            without this word (put `--` before a query that starts with -)\n"
        "  title:router        only in titles (also tags:, body:)",
    )
    s.add_argument("query", nargs="+", help='words, "phrases", prefix*, OR, -word')
    s.add_argument("--limit", "-n", type=_positive, default=10, help="at most N hits (10)")
    s.add_argument("--agent", metavar="NAME", help="only entries written by NAME")
    s.add_argument("--json", action="store_true", help="print the hits as JSON")
    s.set_defaults(fn=cmd_search)

    r = sub.add_parser(
        "recent",
        help="the latest entries, oldest first",
        description="Entries of the last N days (today included), oldest first; "
        "long bodies are shortened unless --full.",
    )
    r.add_argument("--days", "-d", type=_positive, default=1, help="how many days back (1)")
    r.add_argument("--agent", metavar="NAME", help="only entries written by NAME")
    r.add_argument("--full", action="store_true", help="whole bodies")
    r.add_argument("--json", action="store_true", help="print the entries as JSON")
    r.set_defaults(fn=cmd_recent)

    sh = sub.add_parser(
        "show",
        help="print a day's file",
        description="Print a day's journal file as it is on disk.",
    )
    sh.add_argument(
        "date", nargs="?", default="today", help="YYYY-MM-DD, today, yesterday or -N (days ago)"
    )
    sh.add_argument("--json", action="store_true", help="print the day's entries as JSON")
    sh.set_defaults(fn=cmd_show)

    m = sub.add_parser(
        "remember",
        help="add a fact to MEMORY.md, which every agent is started with",
        description=_para(
            "Add a one-line fact to journal/MEMORY.md. Every agent is started "
            "with this file, so keep facts short and durable (how to run the tests, a "
            "convention, a trap). Past 4 KB or 60 lines the oldest facts are dropped and "
            "written to the journal."
        ),
    )
    m.add_argument("text", nargs="+", help="the fact")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.set_defaults(fn=cmd_remember)

    mem = sub.add_parser("memory", help="print MEMORY.md")
    mem.add_argument("--json", action="store_true", help="the facts as JSON")
    mem.set_defaults(fn=cmd_memory)

    c = sub.add_parser(
        "context",
        help="print what a new session is started with",
        description="MEMORY.md and the latest entries, within a budget of characters.",
    )
    c.add_argument("--budget", type=_positive, default=12000, help="characters (12000)")
    c.set_defaults(fn=cmd_context)

    x = sub.add_parser(
        "reindex",
        help="rebuild the search index from the files",
        description=_para(
            "Searches keep the index up to date by themselves; this throws it "
            "away and rebuilds it (state/index.db), e.g. to measure or after a scare."
        ),
    )
    x.add_argument("--json", action="store_true", help="print the figures as JSON")
    x.set_defaults(fn=cmd_reindex)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    run(main, PROG)
