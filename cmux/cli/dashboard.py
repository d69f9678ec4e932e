"""dashboard: the web dashboard of the team (docs/DASHBOARD.md)."""

from __future__ import annotations

from typing import Any

import click

from cmux import ui
from cmux.config import load_config


@click.command("dashboard")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (0: a free one).")
@click.option("--host", metavar="HOST", help="Address to listen on (default 127.0.0.1).")
@click.option("--open", "open_", is_flag=True, help="Open it in your web browser.")
@click.option("--url", "url_only", is_flag=True, help="Print the running one's URL and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print its address, pid and token as JSON.")
def dashboard_cmd(
    port: int | None, host: str | None, open_: bool, url_only: bool, as_json: bool
) -> None:
    """Serve the web dashboard: every agent live, the mail, the journal,
    health, cost and the event stream, with send, approve, deny and kill.

    It listens on 127.0.0.1 ([dashboard] host, port in cmux.toml) and its
    URL carries a random token: a request without it is refused. `cmux
    start` runs one in the monitor window ([dashboard] enabled = true, the
    default); `cmux dashboard --url` prints the address of the one running,
    token included.

    \b
    Examples:
      cmux dashboard --open          serve it here and open a browser
      cmux dashboard --url           where is the running one?
      xdg-open "$(cmux dashboard --url)"
    """
    from cmux.dashboard import server

    cfg = load_config()
    if url_only:
        info = server.require_running(cfg)
        if as_json:
            ui.print_json(info)
        else:
            ui.out(info["url"])
        if open_:
            _open(info["url"])
        return

    def ready(info: dict[str, Any]) -> None:
        if as_json:
            ui.print_json(info)
        else:
            ui.out(f"dashboard: {info['url']}")
            ui.out("(Ctrl-C stops it; `cmux dashboard --url` prints the address again)")
        if open_:
            _open(info["url"])

    server.serve(cfg, host, port, on_ready=ready)


def _open(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        ui.warn(f"could not open a browser; open {url}")


def announce(cfg: Any, timeout: float = 30.0) -> str | None:
    """After `cmux start`: the URL of the dashboard the monitor starts, once
    it listens (None when [dashboard] enabled = false, or it did not come up
    within ``timeout``: 30 s, since the monitor and then uvicorn start first,
    which took over 10 s on a 2-core machine at load 20)."""
    import time

    from cmux.dashboard import server

    if not cfg.section("dashboard").get("enabled", True):
        return None
    deadline = time.monotonic() + timeout
    while True:
        info = server.running(cfg)
        if info is not None:
            url = str(info["url"])
            ui.out(f"dashboard: {url}")
            return url
        if time.monotonic() > deadline:
            ui.warn("the dashboard did not come up; see state/monitor.log, or run `cmux dashboard`")
            return None
        time.sleep(0.1)
