"""``paychan lock``: conditional payments (HTLC locks) through the running node.

- ``paychan lock secret``: the payee keeps a fresh secret (or ``--secret 0x…``) and prints its hashlock
  (``sha256(secret)``), which it gives the payer;
- ``paychan lock add AMOUNT HASHLOCK``: the payer locks AMOUNT of its balance towards the peer under HASHLOCK
  until ``--expiry`` (a chain timestamp; by default halfway through the window the channel allows);
- ``paychan lock settle SECRET``: either side moves the lock of ``sha256(SECRET)`` to its receiver;
- ``paychan lock expire HASHLOCK``: the payer takes its lock back once the chain's time is past its expiry;
- ``paychan lock list``: the pending locks of a channel (``paychan status`` counts them).

The peer's node checks each (``Channel``) before countersigning; a refusal is one sentence, exit code 1. The
node's watcher reveals the secret of an incoming lock on chain before it expires if the peer does not settle
it off chain (see ``paychan.node.watcher.REVEAL_MARGIN``).
"""

from __future__ import annotations

import argparse
from typing import Any

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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lock = subparsers.add_parser(
        "lock",
        help="conditional payments: add a lock under a hashlock, settle it by its secret, expire it",
        description="Conditional payments (hashlocks) in an open channel, through the running node.",
    )
    commands = lock.add_subparsers(
        dest="lock_command", required=True, metavar="COMMAND", help="secret, add, settle, expire or list"
    )

    secret = commands.add_parser(
        "secret",
        help="keep a secret for a lock the peer is to add; print its hashlock",
        description="Keep a secret for a lock the peer is to add; print its hashlock.",
    )
    _add_db(secret)
    secret.add_argument("--secret", default=None, help="the secret (0x and 64 hex digits; default: a fresh one)")
    _add_json(secret)
    secret.set_defaults(func=run_secret)

    add = commands.add_parser(
        "add",
        help="lock AMOUNT of your balance towards the peer under HASHLOCK",
        description="Lock AMOUNT of your balance towards the peer under HASHLOCK.",
    )
    _add_db(add)
    add.add_argument("amount", help="1ether, 0.5gwei, 1e15, 2500wei or plain wei; in a token channel: token units")
    add.add_argument("hashlock", help="sha256 of the secret (0x and 64 hex digits), from the payee")
    add.add_argument("--expiry", type=int, default=None, help="chain timestamp the lock expires at (default: midway)")
    _add_channel(add)
    _add_json(add)
    add.set_defaults(func=run_add)

    settle = commands.add_parser(
        "settle",
        help="move the lock of sha256(SECRET) to its receiver",
        description="Move the lock of sha256(SECRET) to its receiver.",
    )
    _add_db(settle)
    settle.add_argument("secret", help="the secret (0x and 64 hex digits)")
    _add_channel(settle)
    _add_json(settle)
    settle.set_defaults(func=run_settle)

    expire = commands.add_parser(
        "expire", help="take your expired lock of HASHLOCK back", description="Take your expired lock of HASHLOCK back."
    )
    _add_db(expire)
    expire.add_argument("hashlock", help="the lock's hashlock (0x and 64 hex digits)")
    _add_channel(expire)
    _add_json(expire)
    expire.set_defaults(func=run_expire)

    listing = commands.add_parser(
        "list", help="the channel's pending locks", description="The channel's pending locks."
    )
    _add_db(listing)
    _add_channel(listing)
    _add_json(listing)
    listing.set_defaults(func=run_list)


def _describe(lock: dict[str, Any], info: dict[str, Any] | None) -> str:
    secret = "secret known" if lock["secretKnown"] else "secret unknown"
    revealed = f", revealed on chain at {lock['revealedAt']}" if lock.get("revealedAt") else ""
    return (
        f"  {lock['direction']} {_fmt(lock['amount'], info)} under {lock['hashlock']}, expires at {lock['expiry']}"
        f" ({secret}{revealed})"
    )


def _answer(args: argparse.Namespace, data: dict[str, Any], info: dict[str, Any] | None, what: str) -> int:
    lines = [f"{what}: channel {data['channelId']} nonce {data['nonce']}, my balance {_fmt(data['myBalance'], info)}"]
    lines.append(f"pending locks {len(data['locks'])}")
    lines += [_describe(lock, info) for lock in data["locks"]]
    _print(args, data, "\n".join(lines))
    return EXIT_OK


def _info(db: str, channel: dict[str, Any]) -> dict[str, Any] | None:
    return None if int(channel["asset"], 16) == 0 else _asset_info(db, channel["asset"])


def run_secret(args: argparse.Namespace) -> int:
    data = control_request(args.db, "POST", "/locks/secret", {} if args.secret is None else {"secret": args.secret})
    _print(args, data, f"hashlock {data['hashlock']} (give it to the payer)\nsecret {data['secret']} (keep it)")
    return EXIT_OK


def run_add(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    info = _info(args.db, channel)
    amount = _amount(args.amount, info or {"address": channel["asset"]})
    payload: dict[str, Any] = {"channel": channel["channelId"], "amount": str(amount), "hashlock": args.hashlock}
    if args.expiry is not None:
        payload["expiry"] = args.expiry
    data = control_request(args.db, "POST", "/locks/add", payload, timeout=3600)
    return _answer(args, data, info, f"locked {_fmt(amount, info)}")


def run_settle(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    payload = {"channel": channel["channelId"], "secret": args.secret}
    data = control_request(args.db, "POST", "/locks/settle", payload, timeout=3600)
    return _answer(args, data, _info(args.db, channel), "settled")


def run_expire(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    payload = {"channel": channel["channelId"], "hashlock": args.hashlock}
    data = control_request(args.db, "POST", "/locks/expire", payload, timeout=3600)
    return _answer(args, data, _info(args.db, channel), "expired")


def run_list(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    info = _info(args.db, channel)
    lines = [f"channel {channel['channelId']}: pending locks {channel['pendingLocks']}"]
    lines += [_describe(lock, info) for lock in channel["locks"]]
    _print(args, channel["locks"], "\n".join(lines))
    return EXIT_OK
