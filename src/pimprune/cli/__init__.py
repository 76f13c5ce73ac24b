"""The ``pimprune`` command line.

Each sub-command lives in its own module of this package and provides
``add_parser(subparsers)`` and ``run(args) -> int``. User errors
(:class:`pimprune.errors.PimpruneError`) print one line and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pimprune import __version__
from pimprune.errors import PimpruneError

#: Sub-command name -> module inside ``pimprune.cli``.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "map": "map_cmd",
    "train": "train_cmd",
    "prune": "prune_cmd",
    "evaluate": "evaluate_cmd",
    "hardware": "hardware_cmd",
    "sweep": "sweep_cmd",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``pimprune: error: ...``) and exit 2."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"pimprune {self.prog.split(' ', 1)[-1]}: error: {message}; see --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every sub-command whose module is importable."""
    parser = _Parser(
        prog="pimprune",
        description="Crossbar-aligned pruning and crossbar design-space exploration for PIM.",
    )
    parser.add_argument("--version", action="version", version=f"pimprune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(f"pimprune.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pimprune.cli.{module_name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def _print_error(command: str, exc: PimpruneError) -> None:
    """Print a user error once: rank 0 prints errors every rank shares, other ranks their own."""
    from pimprune.runtime import env_rank

    rank = env_rank()
    if rank != 0 and getattr(exc, "from_main", False):
        return
    prefix = f"[rank {rank}] " if rank != 0 else ""
    message = " ".join(str(exc).split("\n"))
    print(f"pimprune {command}: error: {prefix}{message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pimprune`` console script.

    Returns:
        0 on success, 2 for a user error (one line on stderr; ``--debug`` or
        ``PIMPRUNE_DEBUG=1`` raise it with its traceback instead), 130 when
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PIMPRUNE_DEBUG") == "1"
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PimpruneError as exc:
        if debug:
            raise
        _print_error(args.command, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"pimprune {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
