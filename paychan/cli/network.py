"""``paychan fees`` and ``paychan route``: the node's advertised forwarding fees, and routes through the network.

- ``paychan fees``: the fee the node announces on each of its open channels (base fee + ppm), and how much of
  the network's channel graph it knows; ``paychan fees set --base WEI --ppm N [--channel ID]`` signs a new
  announcement (all open channels by default), keeps it and sends it to its peers' nodes, which relay it;
- ``paychan route --to ADDRESS AMOUNT``: the ``--k`` cheapest routes from the node to ADDRESS for AMOUNT, each
  hop with what it carries and each intermediary's fee (base + ppm computed), without paying anything;
- ``paychan pay --to ADDRESS AMOUNT`` (``run_pay_routed``, when the node has no channel to ADDRESS): pays
  through the network and prints the route, each hop's fee and the outcome; ``paychan transfers`` lists the
  routed payments the node made, forwarded (with the fee it earned) or received.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from paychan.cli.node import EXIT_OK, _add_db, _add_json, _channel_of, _fmt, _print
from paychan.exceptions import PaychanError
from paychan.node.control import control_request


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fees = subparsers.add_parser(
        "fees",
        help="show the forwarding fees the node announces per channel; `fees set` announces new ones",
        description="Without ACTION: the fee (base + ppm) the node announces on each of its open channels. "
        "`paychan fees set --base AMOUNT --ppm N`: signs a new announcement for every open channel (or "
        "--channel), keeps it and sends it to the peers' nodes, which relay it. An intermediary charges "
        "base + amount * ppm / 1000000 (rounded down) on what it forwards.",
    )
    fees.add_argument("action", nargs="?", choices=["set"], help="set: announce new fees")
    _add_db(fees)
    fees.add_argument("--base", default=None, help="set: the base fee per forward: 1gwei, 1000wei or plain wei")
    fees.add_argument("--ppm", default=None, type=int, help="set: the proportional fee in parts per million")
    fees.add_argument(
        "--channel", default=None, help="set: only this channel (id or a unique prefix; default: every open one)"
    )
    _add_json(fees)
    fees.set_defaults(func=run_fees)

    route = subparsers.add_parser(
        "route",
        help="the cheapest routes to ADDRESS for AMOUNT through the network, with each intermediary's fee",
        description="The --k cheapest routes from this node to --to for a payment of AMOUNT, from the channel "
        "graph the node learned (channels from the chain, fees from its peers): each hop, each "
        "intermediary's fee (base + ppm computed) and the total. Nothing is paid.",
    )
    _add_db(route)
    route.add_argument("--to", required=True, help="the payee's address")
    route.add_argument("amount", help="what the payee is to receive: 1ether, 0.5gwei, 1e15, 2500wei or plain wei")
    route.add_argument("--k", type=int, default=3, help="how many routes at most, 1 to 10 (default 3)")
    _add_json(route)
    route.set_defaults(func=run_route)

    transfers = subparsers.add_parser(
        "transfers",
        help="the payments the node made, forwarded or received through the network, and the fees it earned",
        description="Every routed payment the node holds: as payer (initiator), intermediary (mediator, with "
        "the fee it charged) or payee (target), where each stands, and the totals sent, earned and received.",
    )
    _add_db(transfers)
    _add_json(transfers)
    transfers.set_defaults(func=run_transfers)


def run_transfers(args: argparse.Namespace) -> int:
    data = control_request(args.db, "GET", "/transfers")
    lines = [
        f"{len(data['transfers'])} payment(s); sent {data['sent']} wei, earned {data['feesEarned']} wei in fees, "
        f"received {data['received']} wei"
    ]
    for row in data["transfers"]:
        lines.append(f"  {row['paymentId']}: {row['role']} {row['status']}, {row['amount']} wei, fee {row['fee']} wei")
    _print(args, data, "\n".join(lines))
    return EXIT_OK


def run_fees(args: argparse.Namespace) -> int:
    from paychan.units import parse_amount

    if args.action != "set":
        if args.base is not None or args.ppm is not None or args.channel is not None:
            raise PaychanError("--base, --ppm and --channel go with `paychan fees set`")
        return _show_fees(args)
    if args.base is None or args.ppm is None:
        raise PaychanError("`paychan fees set` needs both --base and --ppm")
    payload: dict[str, Any] = {"baseFee": str(parse_amount(args.base)), "ppm": args.ppm}
    if args.channel is not None:
        payload["channel"] = _channel_of(args)["channelId"]
    data = control_request(args.db, "POST", "/fees", payload)
    lines = [
        f"announced {_fee(a['baseFee'], a['ppm'])} on channel {a['channelId']} (timestamp {a['timestamp']})"
        for a in data["announced"]
    ]
    _print(args, data, "\n".join(lines))
    return EXIT_OK


def _show_fees(args: argparse.Namespace) -> int:
    data = control_request(args.db, "GET", "/fees")
    lines = [f"node {data['address']}"]
    if not data["channels"]:
        lines.append("no open channel seen on chain yet")
    for channel in data["channels"]:
        fees = channel["fees"]
        what = (
            "no fee announced (not an intermediary on it: `paychan fees set`)"
            if fees is None
            else f"{_fee(fees['baseFee'], fees['ppm'])} (timestamp {fees['timestamp']})"
        )
        lines.append(f"channel {channel['channelId']} with {channel['peer']}: {what}")
    graph = data["graph"]
    lines.append(
        f"channel graph: {graph['channels']} open channels, {graph['announcements']} fee announcements "
        f"({data['announcementsAccepted']} received, {data['announcementsRefused']} refused, "
        f"{data['announcementsRelayed']} sent)"
    )
    _print(args, data, "\n".join(lines))
    return EXIT_OK


def _fee(base: str | int, ppm: str | int) -> str:
    return f"{int(base)} wei + {int(ppm)} ppm"


def direct_channel(args: argparse.Namespace) -> str | None:
    """The id of our open channel with ``args.to``, if there is exactly one (a direct payment needs no route)."""
    to = _address(args.to)
    channels = control_request(args.db, "GET", "/status")["channels"]
    direct = [c for c in channels if c["status"] == "open" and str(c["counterparty"]).lower() == to.lower()]
    return str(direct[0]["channelId"]) if len(direct) == 1 else None


def run_pay_routed(args: argparse.Namespace) -> int:
    """``paychan pay --to ADDRESS AMOUNT`` with no channel to ADDRESS: one routed payment per ``--count``."""
    from paychan.cli.node import EXIT_FAILED, EXIT_PENDING
    from paychan.cli.progress import waiting
    from paychan.units import parse_amount

    amount = parse_amount(args.amount, allow_zero=False)
    if not 1 <= args.count <= 1000:
        raise PaychanError("a routed --count is 1 to 1000")
    if not 1 <= args.k <= 10:
        raise PaychanError("--k is 1 to 10")
    payload = {"to": _address(args.to), "amount": str(amount), "k": args.k, "timeout": 120}
    results, code = [], EXIT_OK
    for number in range(args.count):
        with waiting(f"paying {_fmt(amount)} to {payload['to']} through the network ({number + 1}/{args.count})"):
            data = control_request(args.db, "POST", "/transfers", payload, timeout=180)
        results.append(data)
        if not getattr(args, "json", False):
            print(format_payment(data, amount))
        if data["outcome"] != "succeeded":
            code = EXIT_PENDING if data["outcome"] == "pending" else EXIT_FAILED
            break
    if getattr(args, "json", False):
        print(json.dumps(results[0] if args.count == 1 else results, indent=2))
    return code


def format_payment(data: dict[str, Any], amount: int) -> str:
    """A routed payment's outcome as text: what happened, the route, each hop's fee."""
    outcome, attempts = data["outcome"], data["attempts"]
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if outcome == "succeeded":
        head = f"paid {_fmt(amount)} ({amount} wei) as payment {data['paymentId']}, {tries}, no transaction"
    elif outcome == "failed":
        head = f"payment {data['paymentId']} failed after {tries}: {data['reason']}; nothing was paid"
    else:
        head = (
            f"payment {data['paymentId']} is not decided yet ({tries}): its locks are signed and resolve by "
            "themselves; `paychan transfers` shows it"
        )
    if data.get("route") is None:
        return head
    return head + "\n" + format_route(attempts, data["route"]).replace(f"route {attempts}:", "route:", 1)


def _address(value: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise PaychanError(f"--to is a 0x-prefixed address, not {value!r}")
    return str(to_checksum_address(value))


def run_route(args: argparse.Namespace) -> int:
    from paychan.units import parse_amount

    amount = parse_amount(args.amount, allow_zero=False)
    data = control_request(args.db, "POST", "/route", {"to": args.to, "amount": str(amount), "k": args.k})
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{len(data['routes'])} route(s) to {data['to']} for {_fmt(amount)} ({amount} wei), cheapest first:")
    for number, route in enumerate(data["routes"], 1):
        print(format_route(number, route))
    return EXIT_OK


def format_route(number: int, route: dict[str, Any]) -> str:
    """One route as text: its nodes, each hop, each intermediary's fee computed, and the total."""
    hops = route["hops"]
    nodes = [hops[0]["sender"], *(hop["receiver"] for hop in hops)]
    lines = [f"route {number}: {' -> '.join(nodes)}"]
    for hop in hops:
        lines.append(f"  {hop['sender']} locks {hop['amount']} wei for {hop['receiver']} on {hop['channelId']}")
    for hop in hops[1:]:
        if "baseFee" not in hop:  # its channel closed since: the fee it charged, not how
            lines.append(f"  fee {hop['sender']}: {hop['fee']} wei")
            continue
        base, ppm, forwarded = int(hop["baseFee"]), int(hop["ppm"]), int(hop["amount"])
        lines.append(
            f"  fee {hop['sender']}: {base} wei + {forwarded} wei * {ppm} / 1000000 = "
            f"{base} + {forwarded * ppm // 1_000_000} = {hop['fee']} wei"
        )
    lines.append(
        f"  total fee {route['totalFee']} wei ({_fmt(route['totalFee'])}); the payer locks {route['sent']} wei "
        f"and the payee receives {route['amount']} wei"
    )
    return "\n".join(lines)
