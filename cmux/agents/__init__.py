"""Agents: the registry and its state machine, profiles, spawn and kill."""
