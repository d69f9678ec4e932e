"""The adapters without hooks: programs whose state cmux reads off the screen
(or never needs to).

- ``demo``: the built-in demo agent (cmux.agents.demo), which reports its own
  state; it is told its role with --role.
- ``shell``: an interactive shell with the agent's environment.
- ``command``: a one-off `--command`.
- ``program``: a ``[profiles.X]`` program cmux knows nothing of (the base
  Adapter): its screen is read for busy, idle and dialogs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmux.agents.adapters import capabilities
from cmux.agents.adapters.base import Adapter, Launch, register

if TYPE_CHECKING:
    from cmux.config import Config, Profile


class Demo(Adapter):
    name = capabilities.DEMO

    def launch(
        self,
        cfg: Config,
        *,
        name: str,
        role: str,
        profile: Profile,
        task: str,
        env: dict[str, str],
        resume_session: str | None = None,
        prompt: str | None = None,
        memory: bool = False,
    ) -> Launch:
        launch = super().launch(cfg, name=name, role=role, profile=profile, task="", env=env)
        if profile.builtin:
            launch.argv += ["--role", role]
        return _with_task(launch, profile, task)


class Shell(Adapter):
    name = capabilities.SHELL


class Command(Adapter):
    name = capabilities.COMMAND


def _with_task(launch: Launch, profile: Profile, task: str) -> Launch:
    if task and profile.task == "arg":
        launch.argv.append(task)
    elif task and profile.task == "type":
        launch.type_task = task
    return launch


PROGRAM = register(Adapter())
DEMO = register(Demo())
SHELL = register(Shell())
COMMAND = register(Command())
