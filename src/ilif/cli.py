"""The ``ilif`` command line: each subcommand lives beside the code it drives.

A module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands with ``parser.set_defaults(func=...)``; ``func(args)`` returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "ilif.train.cli",  # train, eval
    "ilif.analysis.cli",  # sweep, report, demo
)


def build_parser() -> argparse.ArgumentParser:
    from ilif.version import __version__

    parser = argparse.ArgumentParser(
        prog="ilif", description="Train, measure and compare spiking networks with ILIF."
    )
    parser.add_argument("--version", action="version", version=f"ilif {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
