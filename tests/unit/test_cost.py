"""Tokens from Claude Code transcripts (lines shaped as 2.1.197 writes them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmux.agents import cost, registry
from cmux.agents.adapters import base as adapters
from cmux.agents.cost import Tokens
from cmux.agents.registry import Agent
from cmux.paths import DataRoot


def assistant(mid: str, inp: int, out: int, cw: int = 0, cr: int = 0) -> dict[str, Any]:
    return {
        "type": "assistant",
        "isSidechain": False,
        "requestId": f"req_{mid}",
        "message": {
            "id": mid,
            "role": "assistant",
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_creation_input_tokens": cw,
                "cache_read_input_tokens": cr,
                "server_tool_use": {"web_search_requests": 0},
                "service_tier": "standard",
            },
        },
    }


def write(path: Path, *entries: dict[str, Any], partial: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e) + "\n")
        fh.write(partial)


def test_sums_usage_and_counts_a_message_written_twice_once(tmp_path: Path) -> None:
    t = tmp_path / "s.jsonl"
    write(
        t,
        {"type": "user", "message": {"role": "user", "content": "hi"}},
        assistant("msg_1", 100, 7, 3, 5),
        assistant("msg_1", 100, 7, 3, 5),  # second content block of the same message
        {"type": "system", "subtype": "turn_duration"},
        assistant("msg_2", 50, 3),
    )
    tokens, offset, _ = cost.read_transcript(t)
    assert tokens == Tokens(input=150, output=10, cache_creation=3, cache_read=5, messages=2)
    assert tokens.total == 168
    assert offset == t.stat().st_size


def test_a_half_written_line_waits_for_the_next_read(tmp_path: Path) -> None:
    t = tmp_path / "s.jsonl"
    write(t, assistant("msg_1", 10, 1), partial='{"type": "assistant", "mess')
    tokens, offset, recent = cost.read_transcript(t)
    assert tokens.messages == 1 and offset < t.stat().st_size
    with open(t, "a") as fh:
        fh.write('age": {"id": "msg_2", "usage": {"input_tokens": 5, "output_tokens": 2}}}\n')
    more, _, _ = cost.read_transcript(t, offset=offset, recent=recent)
    assert more == Tokens(input=5, output=2, messages=1)


def test_garbage_lines_and_missing_files_are_not_errors(tmp_path: Path) -> None:
    t = tmp_path / "s.jsonl"
    t.write_text('not json\n[1, 2]\n{"type": "assistant", "message": "x"}\n')
    assert cost.read_transcript(t)[0] == Tokens()
    assert cost.read_transcript(tmp_path / "missing.jsonl")[0] == Tokens()


def test_per_agent_over_incarnations_and_subagents_with_a_cache(
    data: DataRoot, tmp_path: Path
) -> None:
    first = tmp_path / "t" / "a.jsonl"
    second = tmp_path / "t" / "b.jsonl"
    write(first, assistant("m1", 100, 10))
    write(second, assistant("m2", 200, 20))
    write(second.with_suffix("") / "subagents" / "agent-x.jsonl", assistant("m3", 1, 1))
    registry.save(data, Agent(name="w1", profile="claude", transcript=str(second)))
    registry.save(data, Agent(name="w2", profile="shell"))
    cost.remember_transcript(data, "w1", str(first))
    cost.remember_transcript(data, "w1", str(first))  # listed once
    per = cost.usage(data, registry.list_agents(data))
    assert per["w1"] == Tokens(input=301, output=31, messages=3)
    assert per["w2"] == Tokens()
    cached = json.loads((data.state_dir / cost.CACHE_NAME).read_text())
    assert str(second) in cached
    # a transcript that grows is read on from where the cache left off
    write(second, assistant("m4", 1000, 100))
    per = cost.usage(data, registry.list_agents(data))
    assert per["w1"] == Tokens(input=1301, output=131, messages=4)


def test_transcript_found_from_the_session_id_when_hooks_never_said(
    data: DataRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude"))
    sid = "11111111-2222-3333-4444-555555555555"
    cwd = "/work/my.project"
    path = tmp_path / "claude" / "projects" / "-work-my-project" / f"{sid}.jsonl"
    write(path, assistant("m1", 7, 7))
    agent = Agent(name="w1", profile="claude", session_id=sid, cwd=cwd)
    assert adapters.get("claude").transcript(agent) == path
    assert cost.usage(data, [agent])["w1"].total == 14


def test_short_numbers() -> None:
    assert [cost.short(n) for n in (0, 999, 12345, 2_500_000)] == ["0", "999", "12.3k", "2.50M"]


def test_cmux_cost_json(project: Any, tmp_path: Path) -> None:
    from cmux.config import load_config

    cfg = load_config(project.root)
    t = tmp_path / "t.jsonl"
    write(t, assistant("m1", 100, 10, 1, 2))
    registry.save(cfg.data, Agent(name="w1", profile="claude", transcript=str(t)))
    out = project.ok("cost", "--json").json()
    [w1] = out["agents"]
    assert w1["name"] == "w1" and w1["input"] == 100 and w1["total"] == 113
    assert out["total"]["total"] == 113
    table = project.ok("cost").out
    assert "w1" in table and "113" in table


def test_cmux_approve_without_a_session_says_so(project: Any) -> None:
    from cmux.config import load_config

    registry.save(load_config(project.root).data, Agent(name="w1", profile="claude", state="busy"))
    r = project.cmux("approve", "w1")
    assert r.code == 1
    assert "w1" in r.err or "not running" in r.err
