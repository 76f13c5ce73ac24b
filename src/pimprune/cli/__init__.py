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
from pimprune.errors import ConfigError, PimpruneError

#: Sub-command name -> module inside ``pimprune.cli``.
COMMANDS: dict[str, str] = {
    "demo": "demo_cmd",
    "map": "map_cmd",
    "train": "train_cmd",
    "prune": "prune_cmd",
    "evaluate": "evaluate_cmd",
    "hardware": "hardware_cmd",
    "sweep": "sweep_cmd",
    "export": "export_cmd",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``pimprune: error: ...``) and exit 2."""

    def error(self, message: str) -> None:  # noqa: D102
        name = self.prog if self.prog.startswith("pimprune") else f"pimprune {self.prog}"
        self.exit(2, f"{name}: error: {message}; see --help\n")


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
    """Print a user error once under torchrun.

    Rank 0 prints every error; the other ranks stay quiet about errors all ranks
    share (invalid settings, and errors rank 0 found and handed to them) and
    print their own ones with a ``[rank N]`` prefix.
    """
    from pimprune.training.runtime import env_rank

    rank = env_rank()
    if rank != 0 and (isinstance(exc, ConfigError) or getattr(exc, "from_main", False)):
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
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--debug"]  # --debug may follow the command
    if extra:
        sub = parser._subparsers._group_actions[0].choices[args.command]
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
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
