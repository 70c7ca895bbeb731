"""The ``paychan`` command line.

Each module of this package that defines ``register(subparsers)`` adds its subcommands; a subcommand sets
``func`` to a function taking the parsed arguments and returning the exit code. Errors paychan knows
(``PaychanError``) print as one line on stderr with exit code 1; bad usage exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from paychan.exceptions import PaychanError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paychan", description="Ethereum payment channels.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rpc-url``: the chain to use (default: the embedded eth-tester chain)."""
    parser.add_argument(
        "--rpc-url",
        default=None,
        help="JSON-RPC URL of an Ethereum node (default: the embedded in-process chain)",
    )


def fail(message: str) -> int:
    print(f"paychan: error: {message}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PaychanError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        return fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
