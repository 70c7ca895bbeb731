"""The ``paychan`` command line.

Each module of this package that defines ``register(subparsers)`` adds its subcommands; a subcommand sets
``func`` to a function taking the parsed arguments and returning the exit code. Errors paychan knows
(``PaychanError``) print as one line on stderr with exit code 1; so does any other exception (naming its
type: that is a bug to report), never a traceback unless ``PAYCHAN_TRACEBACK=1`` asks for one; bad usage
exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from paychan.exceptions import PaychanError

TRACEBACK_ENV = "PAYCHAN_TRACEBACK"


def build_parser() -> argparse.ArgumentParser:
    from paychan import __version__

    parser = argparse.ArgumentParser(
        prog="paychan",
        description="Ethereum payment channels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paychan {__version__}")
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
    """Prints ``message`` as one line ``paychan: error: ...`` on stderr; returns the exit code 1."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"paychan: error: {line}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except PaychanError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        detail = f": {exc}" if str(exc) else ""
        return fail(f"unexpected {type(exc).__name__}{detail} (a bug in paychan; {TRACEBACK_ENV}=1 shows where)")


if __name__ == "__main__":
    sys.exit(main())
