"""The ``taghead`` command line: ``taghead <command> --help`` for each command.

Every command lives in ``taghead/commands/<name>.py`` (a ``-`` in the command is a ``_`` in the module name) and
exposes ``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
``argparse.Namespace``; returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order ``taghead --help`` lists them.
COMMANDS = ("demo", "train", "extract-features", "eval", "predict", "explain", "convert", "weights", "info")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(prog="taghead", description="Plug-in heads for fine-grained video action recognition.")
    parser.add_argument("--version", action="version", version=f"taghead {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"taghead.commands.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # command not provided by this build
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
