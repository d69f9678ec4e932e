"""The pure parts: terminal-safe text, exact JSON, tmux format literals, and
what a shell agent is typed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmux.mail.message import Message
from cmux.mail.render import render
from cmux.paths import DataRoot
from cmux.text import json_text, one_line, sanitize
from cmux.tmux import format_literal


def test_sanitize_is_idempotent_and_one_line_keeps_spaces() -> None:
    text = "a\x1b]52;c;eA==\x07b\tc\nd  e\x9b"
    assert sanitize(sanitize(text)) == sanitize(text) == "ab\tc\nd  e"
    assert one_line(text) == "ab c d  e"


def test_json_text_escapes_what_json_dumps_leaves_raw_and_reads_back_the_same() -> None:
    value = {"body": "c1 \x9b del \x7f esc \x1b ✓"}
    raw = json.dumps(value, ensure_ascii=False)
    assert "\x9b" in raw  # json.dumps leaves C1 raw
    safe = json_text(raw)
    assert not any("\x7f" <= c <= "\x9f" or c == "\x1b" for c in safe)
    assert json.loads(safe) == value
    assert "✓" in safe


def test_format_literal_doubles_every_hash() -> None:
    assert format_literal("/p/a#(x)#{y}#S##") == "/p/a##(x)##{y}##S####"


def test_cmux_mail_to_a_shell_agent_is_all_comments_other_mail_as_it_is(tmp_path: Path) -> None:
    data = DataRoot(tmp_path)
    note = Message(to="sh", sender="cmux", kind="notice", body="a\ntouch X\n$(y)")
    person = Message(to="sh", sender="human", body="ls\npwd")
    for profile in ("shell", "command"):
        lines = render(note, data, profile).split("\n")
        assert all(line.startswith("# ") for line in lines) and len(lines) == 4
        assert render(person, data, profile) == render(person, data)
    assert render(note, data, "claude") == render(note, data)
    one = Message(to="sh", sender="cmux", kind="notice", body="one; touch X")
    assert render(one, data, "shell").startswith("# [cmux mail ")


def test_private_umask_keeps_the_persons_for_children(tmp_path: Path) -> None:
    code = (
        "import os, subprocess\n"
        "from cmux.umask import private_umask, user_umask\n"
        "private_umask()\n"
        "open('mine', 'w').close()\n"
        "subprocess.run(['touch', 'theirs'], umask=user_umask(), check=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CMUX_USER_UMASK"}
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True,
    )
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "theirs").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o700])
def test_ensure_makes_the_root_private(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "data"
    root.mkdir(mode=mode)
    os.chmod(root, mode)
    DataRoot(root).ensure()
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / "mailbox" / "human").stat().st_mode & 0o777 == 0o700


def test_a_data_root_that_cannot_be_made_private_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmux.errors import StorageError

    root = tmp_path / "data"
    root.mkdir()
    os.chmod(root, 0o755)

    def refuse(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    with pytest.raises(StorageError) as err:
        DataRoot(root).ensure()
    assert "open to other users (755)" in err.value.message
    assert err.value.hint and "chmod 700" in err.value.hint
