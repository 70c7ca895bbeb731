"""``paychan demo``: a cooperative and a disputed channel lifecycle, each explained as a ledger."""

from __future__ import annotations

import argparse
import json
import sys

from paychan.chain import EMBEDDED, connect, default_rpc_url
from paychan.cli import add_chain_arguments
from paychan.contract import PaychanContract
from paychan.demo import run_cooperative, run_dispute


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="run a cooperative and a disputed channel and print who paid what",
        description=(
            "Deploys the contract, runs a cooperative lifecycle and a dispute, and prints for each a ledger "
            "read from receipts, events and chain balances. It runs on --rpc-url, else $PAYCHAN_RPC_URL or "
            f"$ETH_RPC_URL, else the embedded in-process chain (`--rpc-url {EMBEDDED}` forces that one)."
        ),
    )
    add_chain_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the ledgers as JSON")
    parser.add_argument("--payments", type=_positive, default=20, help="off-chain payments in the cooperative run")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also draw each party's channel balance over both lifecycles into this PNG (matplotlib)",
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    # the environment's URL when no --rpc-url was given (add_chain_arguments' default may already be it)
    chain = connect(args.rpc_url if args.rpc_url is not None else default_rpc_url())
    cooperative = run_cooperative(chain, payments=args.payments)  # deploys the contract, recorded in the ledger
    dispute = run_dispute(chain, PaychanContract(chain, cooperative.contract))
    ledgers = [cooperative, dispute]
    if args.json:
        print(json.dumps([ledger.to_json() for ledger in ledgers], indent=2))
    else:
        print("\n\n".join(ledger.to_text() for ledger in ledgers))
    if args.plot is not None:
        from paychan.plot import plot_balances

        written = plot_balances(ledgers, args.plot)
        print(f"paychan: wrote the balance chart to {written}", file=sys.stderr)
    return 0
