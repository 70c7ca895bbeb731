"""``paychan demo``: five channel lifecycles (cooperative, disputed, a cheater punished, a conditional
payment settled on chain, a withdrawal while open), each explained as a ledger; ``--network``: payments routed
through intermediaries who earn fees (``paychan.demo_network``)."""

from __future__ import annotations

import argparse
import json
import sys

from paychan.chain import EMBEDDED, connect, default_rpc_url
from paychan.cli import add_chain_arguments
from paychan.demo import run_all
from paychan.demo_network import run_network


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="run five channel lifecycles (close, dispute, penalty, locks, withdraw) and print who paid what",
        description=(
            "Deploys the contract and runs five channels: a cooperative lifecycle, a dispute, a cheater "
            "punished (a close with a revoked state), a conditional payment settled on chain (a revealed "
            "lock and an expired one) and a withdrawal while open; prints for each a ledger read from "
            "receipts, events and chain balances. It runs on --rpc-url, else $PAYCHAN_RPC_URL or "
            f"$ETH_RPC_URL, else the embedded in-process chain (`--rpc-url {EMBEDDED}` forces that one). With "
            "--network it runs a payment network instead: five parties, payments routed through intermediaries "
            "who earn their advertised fees (docs/network.md)."
        ),
    )
    add_chain_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the ledgers as JSON")
    parser.add_argument(
        "--network",
        action="store_true",
        help=(
            "instead: five parties and two routes from alice to erin; payments routed through intermediaries "
            "who earn their fees, a hop without the capacity, an offline intermediary, a payee that never "
            "reveals, an intermediary paid on chain; prints each payment's route and fees and every party's totals"
        ),
    )
    parser.add_argument(
        "--tower",
        action="store_true",
        help=(
            "instead: bob pushes his newest state to a watchtower and goes offline; alice closes with a state she "
            "revoked; the tower proves it and settles from its own account (it pays the gas, bob sends nothing)"
        ),
    )
    parser.add_argument("--payments", type=_positive, default=20, help="off-chain payments in the cooperative run")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also draw each party's channel balance over every lifecycle into this PNG (matplotlib)",
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    # the environment's URL when no --rpc-url was given (add_chain_arguments' default may already be it)
    if args.network and args.tower:
        print("paychan: error: --network and --tower are two different demos: choose one", file=sys.stderr)
        return 2
    if (args.network or args.tower) and args.plot is not None:
        which = "--network" if args.network else "--tower"
        print(f"paychan: error: --plot draws the two-party lifecycles, not {which}", file=sys.stderr)
        return 2
    chain = connect(args.rpc_url if args.rpc_url is not None else default_rpc_url())
    if args.tower:
        from paychan.demo import run_watchtower

        ledger = run_watchtower(chain)
        print(json.dumps(ledger.to_json(), indent=2) if args.json else ledger.to_text())
        return 0
    if args.network:
        network = run_network(chain)
        print(json.dumps(network.to_json(), indent=2) if args.json else network.to_text())
        return 0
    ledgers = run_all(chain, payments=args.payments)  # the first deploys the contract, recorded in its ledger
    if args.json:
        print(json.dumps([ledger.to_json() for ledger in ledgers], indent=2))
    else:
        print("\n\n".join(ledger.to_text() for ledger in ledgers))
    if args.plot is not None:
        from paychan.plot import plot_balances

        written = plot_balances(ledgers, args.plot)
        print(f"paychan: wrote the balance chart to {written}", file=sys.stderr)
    return 0
