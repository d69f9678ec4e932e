"""send, inbox, events, router: mail for a person, and the router daemon."""

from __future__ import annotations

import json

import click

from cmux import identity, ui
from cmux.config import load_config
from cmux.text import one_line


@click.command("send")
@click.argument("name")
@click.argument("text")
@click.option("--subject", default="", help="A short subject line.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored message as JSON.")
def send_cmd(name: str, text: str, subject: str, as_json: bool) -> None:
    """Send TEXT to agent NAME as `human` ('-' reads TEXT from stdin).

    The router types it into NAME's pane, headed by one line
    `[cmux mail <id> from human kind=message]`.
    """
    from cmux.inputs import arg_text, text_or_stdin
    from cmux.ops import agents, mail

    body = text_or_stdin(text, "the message")
    subject = arg_text(subject, "the subject")
    msg = mail.send(load_config(), to=name, body=body, sender="human", subject=subject)
    if as_json:
        ui.out_json(msg.to_json())
    else:
        ui.out(f"sent {msg.id} to {name}")
    agents.check(load_config())  # a dead monitor would leave the mail undelivered


@click.command("inbox")
@click.option("--all", "everything", is_flag=True, help="Also the messages you have read.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.option("--peek", is_flag=True, help="Show new messages without marking them read.")
def inbox_cmd(everything: bool, as_json: bool, peek: bool) -> None:
    """What agents sent to you: reports, questions, alerts.

    New messages are shown and marked read; --all shows the read ones too.
    """
    from cmux.ops import mail

    cfg = load_config()
    identity.require_person(cfg, "read the person's inbox")
    msgs = mail.inbox(cfg, everything=everything, peek=peek)
    if as_json:
        ui.out_json("[" + ",".join(m.to_json() for m in msgs) + "]")
        return
    if not msgs:
        ui.out("no new messages" + ("" if everything else " (--all shows the read ones)"))
        return
    for m in msgs:  # ui.out makes stored text safe; a field stays on its line
        ui.out(one_line(f"── {m.ts}  from {m.sender}  ({m.kind})  {m.id}"))
        ui.out(m.body.rstrip("\n"))
        ui.out()


@click.command("events")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C to stop).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--agent", help="Only events about this agent.")
@click.option("--host", "host", metavar="NAME", help="Only events of this host ([cluster] only).")
@click.option(
    "-n", "--lines", type=int, default=50, show_default=True, help="How many past events (0: all)."
)
def events_cmd(
    follow: bool, as_json: bool, agent: str | None, host: str | None, lines: int
) -> None:
    """What happened: sends, claims, deliveries, holds, dead letters, states.

    With [cluster] nats in cmux.toml, the whole team's: the past lines are
    every host's, this host's log merged by time with the other hosts' from
    NATS (CMUX_EVENTS), and --follow goes on with them all as they happen;
    each line says its host (host=NAME). --host NAME shows one host's only.
    Without NATS answering, this host's, with a warning (docs/CLUSTER.md).
    """
    from cmux import events

    cfg = load_config()
    clustered = bool(cfg.section("cluster").get("nats"))  # one machine: not even the import
    if host and not clustered:
        from cmux.errors import UsageError

        raise UsageError(
            "--host needs a cluster: this project has no [cluster] nats in cmux.toml",
            "without it every event is this host's: leave --host out",
        )

    def show(e: dict) -> None:
        if agent and e.get("agent") != agent:
            return
        if host and e.get("host") != host:
            return
        if as_json:
            ui.out_json(json.dumps(e, ensure_ascii=False))
            return
        rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("ts", "event", "agent"))
        head = f"{e.get('ts', '')}  {e.get('event', ''):<12} {e.get('agent') or '-':<14} {rest}"
        ui.out(one_line(head))  # one event, one line

    batch, offset = events.read(cfg.data)
    if clustered:
        from cmux.cluster import view

        past = view.team_events(cfg, batch, last=lines)
        if past.problem:
            ui.warn(f"this host's events only: {past.problem}")
        me = view.host_name(cfg)
        for e in past.events:
            show(e)
        if follow:
            for e in view.follow_events(cfg, offset=offset, start_seq=past.next_seq):
                show(e if e.get("host") else {**e, "host": me})
        return
    for e in batch[-lines:] if lines else batch:
        show(e)
    if follow:
        for e in events.follow(cfg.data, offset=offset):
            show(e)


@click.command("router")
def router_cmd() -> None:
    """Run the mail router in the foreground (`cmux start` runs it for you).

    One router per data root; a second one exits with an error.
    """
    import logging

    from cmux.delivery.router import run

    cfg = load_config()
    logging.basicConfig(
        filename=str(cfg.data.state_dir / "router.log"),
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(levelname)s %(message)s",
        force=True,
    )
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    run(cfg)


@click.group("mail")
def mail_group() -> None:
    """One message, followed from send to read (`cmux inbox` is your own mail)."""


@mail_group.command("show")
@click.argument("msg_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The trail as JSON.")
def mail_show_cmd(msg_id: str, as_json: bool) -> None:
    """The whole trail of message ID: sent, claimed, held and why, delivered
    how, read by what proof (or `delivered (no receipt)` where its program
    cannot prove it), delivered again, and the replies to it.

    \b
    The id is in the header an agent is shown: [cmux mail <id> from ...],
    in `cmux events`, and in what `mailbox send` prints.
    """
    from cmux.ops import mail

    t = mail.trail(load_config(), msg_id)
    if as_json:
        ui.print_json(t)
        return
    m = t["message"] or {}
    ui.out(
        one_line(
            f"message {t['id']}  to {t['to']}  from {m.get('from', '?')}  ({m.get('kind', '?')})"
        )
    )
    ui.out(one_line(f"now: {t['state']}"))
    for e in t["steps"]:
        rest = " ".join(
            f"{k}={v}" for k, v in e.items() if k not in ("ts", "event", "agent", "id") and v
        )
        ui.out(one_line(f"  {e.get('ts', '')}  {e.get('event', ''):<10} {rest}"))
    if m:
        ui.out("")
        ui.out(str(m.get("body", "")).rstrip("\n"))
    for r in t["replies"]:
        ui.out(one_line(f"reply {r['id']} from {r['from']} at {r['ts']}"))
