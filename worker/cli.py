"""`crs-alert` command line: one argparse tree, one module per command group under worker/commands/.

Each command module exposes ``register(subparsers)`` and sets ``func`` on its parser; ``func(args)``
returns the process exit status. Import-heavy modules (Celery, SQLAlchemy) are imported inside the
command functions, so `crs-alert evaluate` stays fast and needs no service.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order of `crs-alert --help`.
COMMAND_MODULES = [
    "worker.commands.evaluate",
    "worker.commands.rules",
    "worker.commands.submit",
    "worker.commands.drain",
    "worker.commands.status",
    "worker.commands.patients",
    "worker.commands.db",
    "worker.commands.run",
    "worker.commands.demo",
    "worker.commands.health",
    "worker.commands.alerts",
    "worker.commands.api",
    "worker.commands.channels",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crs-alert",
        description="Grade CRS/ICANS check-ins after immune-effector therapy and alert the care team.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
