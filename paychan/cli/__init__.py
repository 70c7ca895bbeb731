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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown, epilogs (exit codes, examples) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if "default" in help_text or action.default in (None, False, argparse.SUPPRESS):
            return help_text  # says its default itself, or has none worth showing
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from paychan import __version__

    parser = argparse.ArgumentParser(
        prog="paychan",
        description="Ethereum payment channels.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"paychan {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    for command, subparser in subparsers.choices.items():
        subparser.formatter_class = HelpFormatter
        if not subparser.description:  # the one-line help doubles as the description
            subparser.description = next(
                (a.help for a in subparsers._choices_actions if a.dest == command),
                None,  # noqa: SLF001
            )
    return parser


def add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rpc-url``: the chain to use; by default ``$PAYCHAN_RPC_URL``, else ``$ETH_RPC_URL`` (Foundry's),
    else the embedded in-process chain. Every command that can run on the embedded chain uses this."""
    from paychan.chain import default_rpc_url

    parser.add_argument(
        "--rpc-url",
        default=default_rpc_url(),
        help="JSON-RPC URL of an Ethereum node (default: $PAYCHAN_RPC_URL, else $ETH_RPC_URL, else the embedded "
        "in-process chain)",
    )


def port_number(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected a number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: ports run from 0 (any free port) to 65535")
    return port


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
