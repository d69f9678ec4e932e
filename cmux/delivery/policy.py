"""The one hold/defer policy: when mail may go into an agent, and by which way.

Two ways in, one rule between them:

- the router types mail into an agent's pane (``decide`` says Deliver),
  unless the agent cannot take input now (Hold, with the reason written to
  the mailbox's ``held`` file: mailbox/README.md, Holding);
- a busy Claude agent is not typed into: the router leaves its mail (Defer)
  and the agent's Stop hook hands it over at the end of the turn
  (``hand_over_at_stop``), up to MAX_CHAINED_HANDOVERS turns in a row that
  the hook itself started; past that the agent stops, goes idle, and the
  router types what is left.

Both functions are pure: they read what they are given and act on nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cmux.agents import registry
from cmux.agents.adapters import capabilities
from cmux.agents.registry import UNABLE

if TYPE_CHECKING:
    from cmux.agents.registry import Agent
    from cmux.tmux import Pane

# Consecutive Stop hooks that hand over mail while the agent is still going on
# because of an earlier hand-over; past this the agent stops and the router
# delivers what is left through the keyboard.
MAX_CHAINED_HANDOVERS = 5
MAX_HANDOVER_MESSAGES = 20  # messages handed over in one Stop


@dataclass(frozen=True)
class Deliver:
    """Type the mail now."""


@dataclass(frozen=True)
class Defer:
    """Leave the mail in new/, not held: the agent's Stop hook takes it."""


@dataclass(frozen=True)
class Hold:
    """Leave the mail in new/ and say why (the mailbox's held file)."""

    reason: str


Decision = Deliver | Defer | Hold


def decide(agent: Agent, pane: Pane | None, dialog: Callable[[], str | None]) -> Decision:
    """What the router does with ``agent``'s waiting mail, given its record
    and its pane (None: not found). ``dialog()`` is what the pane's screen
    shows that would take typed keys as an answer (screen.dialog of a
    capture), or None; it is called only for a screen-checked profile and
    only when nothing before it has decided."""
    name = agent.name
    if agent.state in ("exited", "killed", "crashed"):
        return Hold(f"{name} has {agent.state}")
    if agent.state == "starting":
        return Hold(f"{name} is starting")
    if pane is None or pane.dead or not registry.on_server(agent, pane.server):
        return Hold(f"{name}'s pane is not there")  # (that pane id, on another server)
    if pane.in_mode:
        return Hold(f"{name}'s pane is in copy mode")
    if agent.state == "waiting":
        return Hold(f"{name} is waiting for a permission answer")
    if agent.state in UNABLE:  # the API refused it, or nothing moves: typing helps nothing
        return Hold(f"{name} is {agent.state}")
    # A screen-checked program's dialog would take typed keys as its answer;
    # a hooked one takes mail at its turn end (its Stop hook).
    caps = capabilities.for_agent(agent)
    shown = dialog() if caps.screen_checked else None
    if shown:
        return Hold(f"{name}'s pane shows {shown}")
    if caps.hooks and agent.state == "busy":
        return Defer()
    return Deliver()


def hand_over_at_stop(chained: bool, chain: int) -> bool:
    """Whether a Stop hook hands waiting mail over as the agent's next input.
    ``chained``: this Stop ends a turn the hook itself started
    (``stop_hook_active``); ``chain``: how many such hand-overs came in a row
    before it. False past the loop guard: the mail is left for the router."""
    return (chain if chained else 0) < MAX_CHAINED_HANDOVERS
