"""Command line: the ``nas`` parser, its dispatcher and its error handling; nothing else.

Each sub-command lives in its own module with ``register_command(subparsers)`` and imports torch, optuna
and the rest of the library only inside its handler, so ``nas --help`` stays fast. Library modules never
import this one. Bad input prints one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from .errors import UsageError

# In the order ``nas --help`` lists them.
COMMAND_MODULES = ("nas.commands.search", "nas.commands.status", "nas.commands.export", "nas.commands.verify",
                   "nas.dashboard", "nas.commands.report",
                   "nas.commands.analyze", "nas.commands.ensemble", "nas.worker")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # a nas.cli_types validator's message reads like a config error: '--timeout must be a number >= 0, got ..'
        message = re.sub(r"^argument ([^:]+): must ", r"\1 must ", message)
        sys.stderr.write(f"nas: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The ``nas`` parser with every sub-command of :data:`COMMAND_MODULES` registered."""
    parser = _Parser(prog="nas", description="Robust multi-objective neural architecture search.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for module in COMMAND_MODULES:
        importlib.import_module(module).register_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads made a search 5x slower
    # (issue 12). Read once, when torch loads, so it is set before any command module imports torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0), or a bad option already printed as one line (2)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return int(args.handler(args) or 0)
    except UsageError as error:
        sys.stderr.write(f"nas: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("nas: interrupted; completed trials are stored, continue with 'nas search CONFIG --resume'\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
