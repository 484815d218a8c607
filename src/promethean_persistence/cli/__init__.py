"""``semantic-store``: each command is one library call on one store.

Global options go before or after the command (``_common._Command``). Exit codes: 0
success, 1 failure, 2 usage error (bad arguments, configuration or input), 130 interrupted
(the command says what it kept). Errors are one line unless ``--debug``.
"""

from . import entries, health, loading, mcp, transfer, worker  # noqa: F401  (each module registers its commands)
from ._common import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Run the ``semantic-store`` command line (the console script's entry point)."""
    cli(prog_name="semantic-store")
