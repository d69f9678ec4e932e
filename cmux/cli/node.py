"""node: the cluster's node daemon on this host (docs/CLUSTER.md)."""

from __future__ import annotations

import click

from cmux.config import load_config


@click.command("node")
@click.option("--nats", "url", metavar="URL", help="NATS server (default: [cluster] nats).")
@click.option("--host", metavar="NAME", help="This host's name (default: [cluster] host).")
@click.option(
    "--project", metavar="ID", help="The project's id on NATS (default: its root commit)."
)
@click.option("--token", metavar="TOKEN", help="NATS token (default: [cluster] token).")
@click.option(
    "--ack-wait",
    type=float,
    metavar="S",
    help="Seconds before an unacked delivery comes again (default 5; set when made).",
)
def node_cmd(
    url: str | None,
    host: str | None,
    project: str | None,
    token: str | None,
    ack_wait: float | None,
) -> None:
    """Run this host's node daemon in the foreground (the monitor runs it
    when cmux.toml has a [cluster] section).

    It publishes the mail spooled here for agents on other hosts to NATS
    JetStream, moves each file to sent/ only after JetStream stored it,
    takes this host's agents' mail into their Maildirs (acked only once it
    is on disk; a repeat of an id is dropped), mirrors this host's agents
    into the CMUX_AGENTS bucket and beats into CMUX_HOSTS. It publishes
    this host's journal entries to CMUX_JOURNAL and adds the other hosts'
    to this host's journal files, each once, so `journal search` finds
    them here. One per host and
    data root; a second one exits with an error. Its log: state/node.log.

    \b
    Example:
      cmux node --nats nats://10.0.0.1:4222 --host build2
    """
    import logging

    from cmux.errors import ConfigError

    try:
        from cmux.cluster.node import run, settings_for
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("nats"):
            raise
        raise ConfigError(
            "the NATS client (nats-py) is not installed",
            "install cmux with its cluster extra: pip install 'cmux-agents[cluster]'",
        ) from None

    cfg = load_config()
    settings = settings_for(
        cfg, url=url, host=host, project=project, token=token, ack_wait=ack_wait
    )
    logging.basicConfig(
        filename=str(cfg.data.state_dir / "node.log"),
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(levelname)s %(message)s",
        force=True,
    )
    run(cfg, settings)
