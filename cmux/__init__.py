"""cmux: a supervisor and disposable coding agents in tmux.

The package is layered; docs/ARCHITECTURE.md draws the layers and what each
package owns, and tests/unit/test_layers.py keeps imports pointing down them.
``tmux``, ``git`` and ``watch`` are the only doors to their worlds; ``cli``
and ``agenttools`` only parse and print.
"""

__version__ = "0.1.0"
