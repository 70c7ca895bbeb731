"""``paychan withdraw AMOUNT``: take part of this node's balance out of an open channel, which stays open.

The node proposes the withdrawal to its peer's node, both sign it (with the state it leaves), the node
submits it on chain and waits for the receipt. One line says what happened: the amount, the transaction and
the channel's deposits after it. Anything that stops it (a zero amount, more than this node's balance, the
peer's node down or refusing, an expiry out of range) is one sentence with exit code 1, and nothing changed.
"""

from __future__ import annotations

import argparse

from paychan.cli.node import (
    EXIT_OK,
    _add_channel,
    _add_db,
    _add_json,
    _amount,
    _asset_info,
    _channel_of,
    _fmt,
    _print,
    control_request,
)
from paychan.cli.progress import waiting
from paychan.node.withdraw import DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN, MIN_EXPIRES_IN


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    withdraw = subparsers.add_parser(
        "withdraw",
        help="take part of your balance out of an open channel (it stays open); the peer's node countersigns",
        description="Withdraws AMOUNT of this node's balance from an open channel while it stays open: both "
        "nodes sign the withdrawal and the state it leaves, then this node submits it on chain.",
    )
    _add_db(withdraw)
    withdraw.add_argument("amount", help="1ether, 0.5gwei, 1e15, 2500wei or plain wei; in a token channel: token units")
    _add_channel(withdraw)
    withdraw.add_argument(
        "--expires-in",
        type=int,
        default=DEFAULT_EXPIRES_IN,
        metavar="SECONDS",
        help=f"the withdrawal is valid this long ({MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} s; the peer's node may "
        f"accept at most 3600; default {DEFAULT_EXPIRES_IN})",
    )
    _add_json(withdraw)
    withdraw.set_defaults(func=run_withdraw)


def run_withdraw(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    info = _asset_info(args.db, channel["asset"])
    amount = _amount(args.amount, info)
    payload = {"channel": channel["channelId"], "amount": str(amount), "expiresIn": args.expires_in}
    with waiting("withdrawing: the peer countersigns, then the transaction is mined"):
        data = control_request(args.db, "POST", "/withdraw", payload, timeout=3600)
    _print(
        args,
        data,
        f"withdrew {_fmt(data['amount'], info)} from channel {data['channelId']} (tx {data['transaction']}): "
        f"deposits now A {_fmt(data['depositA'], info)}, B {_fmt(data['depositB'], info)}; my balance "
        f"{_fmt(data['myBalance'], info)}, nonce {data['nonce']}",
    )
    return EXIT_OK
