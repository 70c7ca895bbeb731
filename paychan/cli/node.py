"""``paychan node`` runs one party's node; ``open``/``pay``/``close``/``status`` drive it; ``backup``/``restore``.

The node writes ``<db>.control.json`` (mode 0600) with its control API's address and token; the driving
commands find the node through ``--db``. ``backup`` copies the store with SQLite's online backup API and is
consistent while the node runs; ``restore`` refuses while a node holds the store.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from paychan.exceptions import PaychanError


class NodeNotRunning(PaychanError):
    """Raised when no node answers for the given store."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = subparsers.add_parser("node", help="run one party's node (peer endpoint, control API, chain watcher)")
    node.add_argument(
        "--keystore", required=True, help="encrypted keystore file (password: $PAYCHAN_PASSWORD or prompt)"
    )
    node.add_argument("--db", required=True, help="the node's SQLite store (created if missing)")
    node.add_argument("--host", default="127.0.0.1", help="peer endpoint address (default 127.0.0.1)")
    node.add_argument("--port", type=int, default=9735, help="peer endpoint port (default 9735; 0 = any)")
    node.add_argument("--control-port", type=int, default=0, help="control API port on 127.0.0.1 (default: any)")
    node.add_argument("--public-url", default="", help="URL the counterparty reaches this node at")
    node.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain")
    node.add_argument(
        "--contract", default=None, help="PaymentChannels address (default: the deployment record of the chain)"
    )
    node.add_argument("--poll-interval", type=float, default=1.0, help="chain watcher interval in seconds")
    node.add_argument(
        "--log-page-blocks", type=int, default=2000, help="most blocks in one eth_getLogs query (default 2000)"
    )
    node.add_argument(
        "--no-auto-settle",
        dest="auto_settle",
        action="store_false",
        help="do not settle closed channels after their deadline (default: the watcher settles them)",
    )
    node.add_argument("--max-batch", type=int, default=256, help="most states proposed in one message")
    node.add_argument("--payment-timeout", type=float, default=60.0, help="seconds a pay request waits")
    node.add_argument("--log-level", default="INFO")
    node.set_defaults(func=run_node)

    keystore = subparsers.add_parser("keystore", help="write an encrypted keystore for a node (new or imported key)")
    keystore.add_argument("--out", required=True, help="keystore file to create (mode 0600)")
    keystore.add_argument(
        "--import-env", metavar="VAR", default=None, help="import the hex private key in environment variable VAR"
    )
    keystore.set_defaults(func=run_keystore)

    status = subparsers.add_parser("status", help="channels, balances and close deadlines of a running node")
    _add_db(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)

    open_ = subparsers.add_parser("open", help="open a channel to a peer's node, funded by this node")
    _add_db(open_)
    open_.add_argument("--peer", required=True, help="the counterparty node's peer URL")
    open_.add_argument("--deposit", required=True, type=int, help="this node's deposit, in wei")
    open_.add_argument("--challenge-period", type=int, default=3600, help="seconds (default 3600)")
    open_.add_argument("--json", action="store_true")
    open_.set_defaults(func=run_open)

    pay = subparsers.add_parser("pay", help="pay the counterparty over the channel")
    _add_db(pay)
    pay.add_argument("amount", type=int, help="amount in wei")
    pay.add_argument("--channel", default=None, help="channel id (default: the node's only channel)")
    pay.add_argument("--count", type=int, default=1, help="send this many payments of AMOUNT")
    pay.add_argument("--json", action="store_true")
    pay.set_defaults(func=run_pay)

    close = subparsers.add_parser("close", help="close the channel cooperatively (final state, paid out at once)")
    _add_db(close)
    close.add_argument("--channel", default=None, help="channel id (default: the node's only channel)")
    close.add_argument("--json", action="store_true")
    close.set_defaults(func=run_close)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="the node's store (its control file sits beside it)")


# --- running a node -------------------------------------------------------------------------------


def lock_store(db: str | Path) -> TextIO:
    """An exclusive lock on ``<db>.lock`` held while the node runs; raises if another node holds it."""
    handle = open(f"{db}.lock", "w")  # noqa: SIM115 - held for the node's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PaychanError(f"another node is running on {db}") from None
    return handle


def run_node(args: argparse.Namespace) -> int:
    from paychan.chain import rpc_chain
    from paychan.contract import PaychanContract
    from paychan.node.keystore import load_key
    from paychan.node.store import Store

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = load_key(args.keystore)
    lock = lock_store(args.db)
    store = Store(args.db)
    from paychan.deployments import load_contract
    from paychan.node.watcher import CURSOR_KEY

    chain = rpc_chain(args.rpc_url, ["0x" + key.hex()])
    if args.contract is not None and store.get_meta(CURSOR_KEY) is not None:
        contract = PaychanContract(chain, args.contract)  # the watcher resumes where it stopped
    else:
        contract = load_contract(chain, args.contract)  # finds the deployment block: events start there
    for name, value in (
        ("chainId", str(chain.chain_id)),
        ("contract", contract.address),
        ("address", chain.accounts[0].address),
    ):
        known = store.get_meta(name)
        if known is None:
            store.set_meta(name, value)
        elif known != value:
            raise PaychanError(f"store {args.db} belongs to {name} {known}, not {value}")
    try:
        asyncio.run(_serve(args, store, key, contract))
    finally:
        store.close()
        lock.close()
    return 0


async def _serve(args: argparse.Namespace, store: Any, key: bytes, contract: Any) -> None:
    from paychan.node.server import Node, serve, write_control_file
    from paychan.node.watcher import Watcher

    node = Node(
        store,
        key,
        contract.domain,
        contract,
        public_url=args.public_url,
        max_batch=args.max_batch,
        payment_timeout=args.payment_timeout,
    )
    peer_runner, control_runner, peer_url, control_url = await serve(node, args.host, args.port, args.control_port)
    watcher = Watcher(node, args.poll_interval, page_blocks=args.log_page_blocks, auto_settle=args.auto_settle)
    watcher_task = asyncio.get_running_loop().create_task(watcher.run())
    control_file = write_control_file(
        args.db,
        {
            "controlUrl": control_url,
            "peerUrl": node.public_url,
            "token": node.control_token,
            "pid": os.getpid(),
            "address": node.address,
        },
    )
    print(f"paychan node {node.address}: peer {node.public_url}, control {control_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watcher_task.cancel()
        await peer_runner.cleanup()
        await control_runner.cleanup()
        await node.stop()
        control_file.unlink(missing_ok=True)


def run_keystore(args: argparse.Namespace) -> int:
    from eth_account import Account

    from paychan.node.keystore import read_password, write_keystore

    if Path(args.out).exists():
        raise PaychanError(f"{args.out} exists; choose a new file")
    if args.import_env:
        secret = os.environ.get(args.import_env)
        if not secret:
            raise PaychanError(f"environment variable {args.import_env} is empty")
        key = bytes.fromhex(secret.removeprefix("0x"))
    else:
        key = bytes(Account.create().key)
    address = write_keystore(args.out, key, read_password("new keystore password: "))
    print(f"{address} -> {args.out}")
    return 0


# --- driving a node -------------------------------------------------------------------------------


def control_request(
    db: str, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 120.0
) -> Any:
    """Calls the control API of the node running on store ``db``."""
    try:
        control = json.loads(Path(f"{db}.control.json").read_text())
    except (OSError, ValueError):
        raise NodeNotRunning(f"no node is running on {db} (no control file)") from None
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        control["controlUrl"] + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {control['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            message = f"{error['type']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise PaychanError(message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise NodeNotRunning(f"the node on {db} does not answer ({exc})") from None


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def _eth(wei: str | int) -> str:
    """Exact: ``4700`` wei is ``0.0000000000000047 ETH``."""
    whole, fraction = divmod(int(wei), 10**18)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".") + " ETH"


def run_status(args: argparse.Namespace) -> int:
    data = control_request(args.db, "GET", "/status")
    lines = [f"node {data['address']} (chain {data['chainId']}, contract {data['contract']})"]
    if not data["channels"]:
        lines.append("no channels")
    for ch in data["channels"]:
        lines.append(f"channel {ch['channelId']}  role {ch['role']}  status {ch['status']}  nonce {ch['nonce']}")
        lines.append(f"  counterparty {ch['counterparty']} at {ch['peerUrl']}")
        lines.append(f"  balances: A {_eth(ch['balanceA'])}  B {_eth(ch['balanceB'])}  (mine {_eth(ch['myBalance'])})")
        lines.append(f"  in flight {ch['inflight']}, queued {ch['queued']}, my turn {ch['haveTurn']}")
        if ch["closeDeadline"] is not None:
            lines.append(
                f"  closing on chain with nonce {ch['closeNonce']}; challenge deadline {ch['closeDeadline']}"
                + (f"; challenged with nonce {ch['challengedNonce']}" if ch["challengedNonce"] is not None else "")
            )
    _print(args, data, "\n".join(lines))
    return 0


def run_open(args: argparse.Namespace) -> int:
    data = control_request(
        args.db,
        "POST",
        "/open",
        {"peer": args.peer, "deposit": str(args.deposit), "challengePeriod": args.challenge_period},
    )
    _print(args, data, f"opened channel {data['channelId']}")
    return 0


def run_pay(args: argparse.Namespace) -> int:
    data = control_request(
        args.db, "POST", "/pay", {"channelId": args.channel, "amount": str(args.amount), "count": args.count}
    )
    _print(args, data, f"paid: channel {data['channelId']} nonce {data['nonce']}, my balance {_eth(data['myBalance'])}")
    return 0


def run_close(args: argparse.Namespace) -> int:
    data = control_request(args.db, "POST", "/close", {"channelId": args.channel})
    _print(
        args,
        data,
        f"closed channel {data['channelId']} at nonce {data['nonce']}: A gets {_eth(data['payoutA'])}, "
        f"B gets {_eth(data['payoutB'])} (tx {data['transaction']})",
    )
    return 0

