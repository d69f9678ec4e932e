"""`cmux init`: make a git repository a cmux project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmux import git
from cmux.config import CONFIG_NAME, DEFAULT_TOML, load_config, write_project_marker
from cmux.errors import NotAGitRepo, UsageError
from cmux.fsutil import atomic_write, project_mode
from cmux.mail import store
from cmux.paths import HUMAN


@dataclass
class InitResult:
    project: Path
    config_file: Path
    data_root: Path
    created_config: bool
    gitignore_updated: bool


def init(directory: Path | None = None) -> InitResult:
    target = (directory or Path.cwd()).resolve()
    if not target.is_dir():
        raise UsageError(f"{target} is not a directory")
    top = git.toplevel(target)
    if top is None:
        raise NotAGitRepo(
            f"{target} is not inside a git repository",
            "cmux works on a git repository: run `git init` there first, or pass the repo's path",
        )
    project = target if directory else top
    cfg_file = project / CONFIG_NAME
    created = not cfg_file.exists()
    if created:
        atomic_write(cfg_file, DEFAULT_TOML, mode=project_mode(cfg_file))
    cfg = load_config(project)
    cfg.data.ensure()
    store.ensure(cfg.data, HUMAN)
    write_project_marker(cfg.data, cfg.project_root)
    updated = _ignore_data_root(top, cfg.data.root)
    return InitResult(project, cfg_file, cfg.data.root, created, updated)


def _ignore_data_root(top: Path, data_root: Path) -> bool:
    """Add the data root to the repository's .gitignore (once)."""
    try:
        rel = data_root.relative_to(top)
    except ValueError:
        return False  # outside the repository: nothing to ignore
    if str(rel) in ("", "."):
        return False
    entry = f"/{rel.as_posix()}/"
    gi = top / ".gitignore"
    text = gi.read_text() if gi.exists() else ""
    lines = {ln.strip() for ln in text.splitlines()}
    if {entry, entry.lstrip("/"), entry.rstrip("/"), entry.strip("/")} & lines:
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    atomic_write(
        gi,
        f"{text}{sep}# cmux data root (mailboxes, journal, state)\n{entry}\n",
        mode=project_mode(gi),
    )
    return True
