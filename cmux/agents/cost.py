"""Tokens each agent used, read from its program's transcripts.

Where an agent's transcript is and how its usage is read is its adapter's
(``Adapter.transcript``, ``Adapter.read_tokens``); this module keeps the
list of an agent's transcripts and the cache. Claude Code's format is read
here (``read_transcript``), the Codex CLI's and the Gemini CLI's by their adapters.

Claude Code: every assistant message in a transcript (``~/.claude/projects/<dir>/<session
id>.jsonl``) carries the API's ``usage``: input, output, cache-creation and
cache-read tokens. One message can be written as several lines (one per
content block) with the same message id; it is counted once. An agent's total
adds up every incarnation's transcript (the SessionStart hook lists them in
state/hooks/<name>.sessions) and the subagent transcripts beside them.

Transcripts only grow, so what was counted is cached in state/cost.json by
path, with the offset read up to; ``cmux status`` rereads only what is new.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cmux.agents.adapters import base as adapters
from cmux.agents.registry import Agent
from cmux.fsutil import atomic_write
from cmux.paths import DataRoot

CACHE_NAME = "cost.json"
RECENT_IDS = 64  # message ids remembered across reads, to count each message once


@dataclass
class Tokens:
    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    messages: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokens:
        return cls(**{f.name: int(d.get(f.name, 0) or 0) for f in fields(cls)})


def short(n: int) -> str:
    """12345 -> '12.3k'; for tables."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


# -- reading a transcript -------------------------------------------------------------


def _usage_of(entry: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if entry.get("type") != "assistant":
        return None
    msg = entry.get("message")
    if not isinstance(msg, dict):
        return None
    usage = msg.get("usage")
    if not isinstance(usage, dict):
        return None
    mid = str(msg.get("id") or entry.get("requestId") or entry.get("uuid") or "")
    return mid, usage


def _num(v: Any) -> int:
    return v if isinstance(v, int) and v > 0 else 0


def read_transcript(
    path: Path, *, offset: int = 0, recent: list[str] | None = None
) -> tuple[Tokens, int, list[str]]:
    """Tokens in ``path`` from byte ``offset``; returns them, the offset read up
    to (a partly written last line is left for next time) and the latest ids."""
    seen = list(recent or [])
    tokens = Tokens()
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return tokens, offset, seen
    end = chunk.rfind(b"\n")
    if end < 0:
        return tokens, offset, seen
    for raw in chunk[: end + 1].splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        found = _usage_of(entry) if isinstance(entry, dict) else None
        if found is None:
            continue
        mid, usage = found
        if mid and mid in seen:
            continue
        if mid:
            seen.append(mid)
            del seen[:-RECENT_IDS]
        tokens.input += _num(usage.get("input_tokens"))
        tokens.output += _num(usage.get("output_tokens"))
        tokens.cache_creation += _num(usage.get("cache_creation_input_tokens"))
        tokens.cache_read += _num(usage.get("cache_read_input_tokens"))
        tokens.messages += 1
    return tokens, offset + end + 1, seen


# -- where an agent's transcripts are -------------------------------------------------------


def sessions_file(data: DataRoot, name: str) -> Path:
    return data.state_dir / "hooks" / f"{name}.sessions"


def remember_transcript(data: DataRoot, name: str, transcript: str) -> None:
    """Add a transcript to the agent's list (called by the SessionStart hook)."""
    if transcript in known_transcripts(data, name):
        return
    path = sessions_file(data, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(transcript + "\n")


def known_transcripts(data: DataRoot, name: str) -> list[str]:
    try:
        text = sessions_file(data, name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()]


def transcripts(data: DataRoot, agent: Agent) -> list[Path]:
    """Every transcript of every incarnation of ``agent``, with subagents'."""
    paths = [Path(p) for p in known_transcripts(data, agent.name)]
    current = Path(agent.transcript) if agent.transcript else None
    if current is None:
        current = adapters.for_agent(agent).transcript(agent)
    if current is not None and current not in paths:
        paths.append(current)
    out: list[Path] = []
    for p in paths:
        out.append(p)
        sub = p.with_suffix("") / "subagents"
        if sub.is_dir():
            out.extend(sorted(sub.glob("*.jsonl")))
    return out


# -- per agent, cached ------------------------------------------------------------------


def _load_cache(data: DataRoot) -> dict[str, Any]:
    try:
        value = json.loads((data.state_dir / CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def transcript_tokens(
    path: Path, cache: dict[str, Any], adapter: adapters.Adapter | None = None
) -> Tokens:
    """Tokens of one transcript, reading on from where ``cache`` left off;
    ``adapter`` (of the agent whose transcript it is) knows its format
    (``Adapter.read_tokens``; Claude Code's by default)."""
    reader = (adapter or adapters.get("claude")).read_tokens
    key = str(path)
    entry = cache.get(key) if isinstance(cache.get(key), dict) else None
    try:
        size = path.stat().st_size
    except OSError:
        return Tokens.from_dict(entry["tokens"]) if entry else Tokens()
    if entry and int(entry.get("offset", 0)) <= size:
        base = Tokens.from_dict(entry.get("tokens") or {})
        if int(entry.get("offset", 0)) == size:
            return base
        total, offset, recent = reader(
            path,
            offset=int(entry["offset"]),
            recent=list(entry.get("recent") or []),
            base=base,
        )
    else:
        total, offset, recent = reader(path, base=Tokens())
    cache[key] = {"offset": offset, "tokens": total.to_dict(), "recent": recent}
    return total


def usage(data: DataRoot, agents: Iterable[Agent]) -> dict[str, Tokens]:
    """Tokens per agent name (agents without transcripts have zeros)."""
    cache = _load_cache(data)
    before = json.dumps(cache, sort_keys=True)
    out: dict[str, Tokens] = {}
    for agent in agents:
        total = Tokens()
        adapter = adapters.for_agent(agent)
        for path in transcripts(data, agent):
            total = total + transcript_tokens(path, cache, adapter)
        out[agent.name] = total
    after = json.dumps(cache, sort_keys=True)
    if after != before:
        try:
            atomic_write(data.state_dir / CACHE_NAME, after + "\n")
        except Exception:  # a cache that cannot be written is only slower next time
            pass
    return out


def timeline(data: DataRoot, agent: Agent, *, points: int = 200) -> list[tuple[float, int]]:
    """The agent's tokens over time: (seconds since the epoch, total so far)
    at each model call its transcripts time-stamp, at most ``points`` of them
    (evenly thinned, the last one kept). Each message counted once, as ``usage``."""
    from datetime import datetime

    calls: list[tuple[float, int]] = []
    seen: set[str] = set()
    for path in transcripts(data, agent):
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            found = _usage_of(entry) if isinstance(entry, dict) else None
            if found is None:
                continue
            mid, u = found
            if mid and mid in seen:
                continue
            seen.add(mid)
            try:
                ts = datetime.fromisoformat(str(entry.get("timestamp")).replace("Z", "+00:00"))
            except ValueError:
                continue
            n = sum(
                _num(u.get(k))
                for k in (
                    "input_tokens",
                    "output_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            )
            calls.append((ts.timestamp(), n))
    calls.sort()
    out: list[tuple[float, int]] = []
    total = 0
    for t, n in calls:
        total += n
        out.append((t, total))
    if len(out) > points:
        step = len(out) / points
        out = [out[int(i * step)] for i in range(points - 1)] + [out[-1]]
    return out
