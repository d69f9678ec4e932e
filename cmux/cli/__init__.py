"""The `cmux` command. Subcommands load lazily so each call imports only
what it needs (an agent's hook or mailbox call must be quick)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import click

from cmux import __version__
from cmux.errors import CmuxError

# name -> "module:function"; one module per group of commands.
COMMANDS: dict[str, str] = {
    "init": "cmux.cli.session:init_cmd",
    "start": "cmux.cli.session:start_cmd",
    "stop": "cmux.cli.session:stop_cmd",
    "attach": "cmux.cli.session:attach_cmd",
    "doctor": "cmux.cli.session:doctor_cmd",
    "monitor": "cmux.cli.session:monitor_cmd",
    "demo": "cmux.cli.demo:demo_cmd",
    "spawn": "cmux.cli.agents:spawn_cmd",
    "kill": "cmux.cli.agents:kill_cmd",
    "status": "cmux.cli.agents:status_cmd",
    "logs": "cmux.cli.agents:logs_cmd",
    "hosts": "cmux.cli.hosts:hosts_cmd",
    "_host-spawn": "cmux.cli.hosts:host_spawn_cmd",
    "_host-stop": "cmux.cli.hosts:host_stop_cmd",
    "_pane-died": "cmux.cli.agents:pane_died_cmd",
    "send": "cmux.cli.mail:send_cmd",
    "inbox": "cmux.cli.mail:inbox_cmd",
    "events": "cmux.cli.mail:events_cmd",
    "mail": "cmux.cli.mail:mail_group",
    "router": "cmux.cli.mail:router_cmd",
    "merge": "cmux.cli.merge:merge_cmd",
    "queue": "cmux.cli.merge:queue_cmd",
    "merger": "cmux.cli.merge:merger_cmd",
    "node": "cmux.cli.node:node_cmd",
    "journal": "cmux.cli.journal:journal_group",
    "health": "cmux.cli.health:health_cmd",
    "rollback": "cmux.cli.health:rollback_cmd",
    "rescue": "cmux.cli.health:rescue_group",
    "hook": "cmux.cli.claude:hook_cmd",
    "approve": "cmux.cli.claude:approve_cmd",
    "deny": "cmux.cli.claude:deny_cmd",
    "cost": "cmux.cli.claude:cost_cmd",
    "dashboard": "cmux.cli.dashboard:dashboard_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [n for n in COMMANDS if not n.startswith("_")]
        return [n for n in names if self._importable(n)]

    @staticmethod
    def _importable(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
        cmd = getattr(mod, attr, None)
        return cmd if isinstance(cmd, click.Command) else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cmux")
@click.option("-v", "--verbose", count=True, help="Log what cmux does (-vv: every tmux call).")
def cli(verbose: int) -> None:
    """Run a team of coding agents in tmux.

    A supervisor agent takes your task, splits it, and spawns worker agents,
    each in its own tmux window. They talk through a file mailbox delivered
    by a router daemon, remember through a markdown journal, and a health
    monitor rolls git back when their changes break the project, without
    losing anyone's work.

    \b
    First steps:
      cmux init                 in your git repository
      cmux start                the supervisor and the monitor, then attach
      cmux send supervisor "fix the failing tests in tests/api"
      cmux status               what every agent is doing
      cmux demo                 see it all work, no account needed
    """
    level = logging.WARNING - 10 * verbose
    if os.environ.get("CMUX_DEBUG"):
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main() -> None:
    from cmux import ui
    from cmux.umask import private_umask

    private_umask()

    try:
        rv = cli.main(prog_name="cmux", standalone_mode=False)
    except click.exceptions.Abort:
        ui.err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CmuxError as exc:
        ui.error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)
