"""Agent programs as adapters: one small shape per program cmux can run.

- ``capabilities``: the plain flags the lower layers ask (base layer: no
  imports; the mailbox, the router and the monitor read it).
- ``base``: the Adapter interface and the registry of adapters by name.
- ``claude``: Claude Code; ``plain``: demo, shell, command and program (no hooks).

Kept free of imports: ``cmux.agents.adapters.capabilities`` is read on the
hook path and by the stores.
"""
