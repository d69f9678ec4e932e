"""Delivery: mail from the store into an agent, by keyboard (the router) or
at the end of a turn (the Stop hook's handover), under one hold/defer policy
(policy.py). Above cmux.mail and cmux.agents; see docs/ARCHITECTURE.md."""
