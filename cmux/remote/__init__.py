"""Agents on other hosts over SSH (docs/CLUSTER.md): probing a host
(``probe``), preparing a checkout and starting an agent there (``place``),
and the side that runs there (``there``)."""
