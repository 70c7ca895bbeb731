"""``paychan node`` runs one party's node; ``open``/``pay``/``close``/``status`` drive it; ``backup``/``restore``.

The node writes ``<db>.control.json`` (mode 0600) with its control API's address and token; the driving
commands find the node through ``--db``. ``backup`` copies the store with SQLite's online backup API and is
consistent while the node runs; ``restore`` refuses while a node holds the store.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from paychan.cli import port_number
from paychan.cli.progress import waiting
from paychan.deployments import add_deployment_arguments
from paychan.exceptions import PaychanError
from paychan.node.control import ControlError, NodeNotRunning, control_request

__all__ = ["ControlError", "NodeNotRunning", "control_request", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = subparsers.add_parser("node", help="run one party's node (peer endpoint, control API, chain watcher)")
    node.add_argument(
        "--keystore", required=True, help="encrypted keystore file (password: $PAYCHAN_PASSWORD or prompt)"
    )
    node.add_argument("--db", required=True, help="the node's SQLite store (created if missing)")
    node.add_argument("--host", default="127.0.0.1", help="peer endpoint address (default 127.0.0.1)")
    node.add_argument("--port", type=port_number, default=9735, help="peer endpoint port (default 9735; 0 = any)")
    node.add_argument(
        "--control-port", type=port_number, default=0, help="control API port on 127.0.0.1 (default: any)"
    )
    node.add_argument("--public-url", default="", help="URL the counterparty reaches this node at")
    add_watcher_arguments(node, "a node")
    node.add_argument(
        "--no-auto-settle",
        dest="auto_settle",
        action="store_false",
        help="do not settle closed channels after their deadline (default: the watcher settles them)",
    )
    signers = node.add_mutually_exclusive_group()
    signers.add_argument(
        "--signer-url",
        default=None,
        help="sign the node's off-chain messages (states, revocations, withdrawals) with eth_signTypedData_v4 "
        "for the keystore's address at this JSON-RPC URL (a wallet, a remote signer, a node's unlocked account); "
        "every signature is checked to recover to that address. The keystore is still needed: its key pays the "
        "node's transactions' gas, authenticates its peer requests and re-signs states it already signed "
        "(default: the keystore's key signs all)",
    )
    signers.add_argument(
        "--ape-account",
        default=None,
        metavar="ALIAS",
        help="sign the node's off-chain messages with this Ape account (an alias of `ape accounts list`: "
        "keyfile, Ledger, Trezor; TEST::N for Ape's test account N; a keyfile's passphrase from "
        "$APE_ACCOUNTS_<ALIAS>_PASSPHRASE); it must be the keystore's address, whose key is still needed as "
        "with --signer-url",
    )
    node.add_argument(
        "--signer-timeout", type=float, default=10.0, help="seconds to wait for --signer-url's answer (default 10)"
    )
    node.add_argument(
        "--tower",
        default=None,
        metavar="URL",
        help="a watchtower (`paychan tower`) to push each channel's newest state, peer revocation and incoming "
        "secrets to (batched, twice a second), and, after `paychan restore`, to read them back from before "
        "serving (default: none)",
    )
    node.add_argument(
        "--wallet",
        type=wallet_address,
        default=None,
        metavar="ADDRESS",
        help="run the node for this contract wallet (ERC-1271, with execute(target, value, data)), owned by the "
        "keystore's key: the wallet is the channel participant, the key signs its states (or --signer-url / "
        "--ape-account for the key), sends its transactions through the wallet's execute and pays their gas. "
        "Checked at start: the wallet must accept the key's signatures and calls",
    )
    node.add_argument("--max-batch", type=int, default=256, help="most states proposed in one message")
    node.add_argument("--payment-timeout", type=float, default=60.0, help="seconds a pay request waits")
    node.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    node.set_defaults(func=run_node)

    keystore = subparsers.add_parser("keystore", help="write an encrypted keystore for a node (new or imported key)")
    keystore.add_argument("--out", required=True, help="keystore file to create (mode 0600)")
    keystore.add_argument(
        "--import-env", metavar="VAR", default=None, help="import the hex private key in environment variable VAR"
    )
    _add_json(keystore)
    keystore.set_defaults(func=run_keystore)

    status = subparsers.add_parser(
        "status",
        help="channels, balances, phases and what to do next, of a running node",
        description="Each channel of the node: balances, nonce, phase (open, challenge period, settleable, "
        "closed) and what you can do next.",
    )
    _add_db(status)
    _add_json(status)
    status.set_defaults(func=run_status)

    open_ = subparsers.add_parser(
        "open",
        help="open a channel to a peer's node, funded by this node",
        description="Opens a channel on chain from this node (participant A) to the node at --peer (B), "
        "deposits --deposit for A (an ERC-20 with --asset: approved first) and tells the peer's node.",
    )
    _add_db(open_)
    open_.add_argument("--peer", required=True, help="the counterparty node's peer URL")
    open_.add_argument(
        "--deposit", required=True, help="this node's deposit: 1ether, 0.5gwei, 1e15, 2500wei or wei; tokens: 1.5"
    )
    open_.add_argument("--asset", default=None, metavar="TOKEN", help="ERC-20 token address (default: ETH)")
    open_.add_argument("--challenge-period", type=int, default=3600, help="seconds, 3600 to 2592000")
    _add_json(open_)
    open_.set_defaults(func=run_open)

    pay = subparsers.add_parser(
        "pay",
        help="pay the counterparty over the channel, or anyone through intermediaries (--to)",
        description="Pays AMOUNT to the counterparty, COUNT times (one signed state each), and reports exactly "
        "what happened. With --to ADDRESS and no open channel to it, the payment is routed through "
        "intermediaries (each earns its advertised fee): it prints the route, each hop's fee and the outcome.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(pay)
    pay.add_argument("amount", help="1ether, 0.5gwei, 1e15, 2500wei or plain wei; in a token channel: token units")
    _add_channel(pay)
    pay.add_argument("--count", type=int, default=1, help="send this many payments of AMOUNT (default 1)")
    pay.add_argument(
        "--to",
        default=None,
        metavar="ADDRESS",
        help="the payee: over our channel with it if there is one, else routed through the network",
    )
    pay.add_argument("--k", type=int, default=3, help="with --to: routes to try at most, 1 to 10 (default 3)")
    _add_json(pay)
    pay.set_defaults(func=run_pay)

    close = subparsers.add_parser(
        "close",
        help="close the channel: cooperatively (paid out at once) or --unilateral (without the peer)",
        description="Cooperative close: both sign a final state and the contract pays out at once. With "
        "--unilateral (the peer is gone): the latest state both signed is submitted; after the challenge "
        "period the node settles it (or run `paychan settle`).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_db(close)
    _add_channel(close)
    close.add_argument("--unilateral", action="store_true", help="close without the peer (challenge period)")
    close.add_argument(
        "--i-lost-data",
        dest="lost_data",
        action="store_true",
        help="with --unilateral, on a store restored from a backup that has not synced with the peer (gone for "
        "good): close with the latest state this node has; if you signed newer states after the backup, the "
        "peer can take the whole channel (README: I lost data and my peer is gone)",
    )
    _add_json(close)
    close.set_defaults(func=run_close)

    settle = subparsers.add_parser(
        "settle",
        help="pay out a unilaterally closed channel after its challenge period",
        description="Settles the recorded state of a closing channel once its deadline has passed (the node "
        "does this by itself unless started with --no-auto-settle).",
    )
    _add_db(settle)
    _add_channel(settle)
    _add_json(settle)
    settle.set_defaults(func=run_settle)

    claim = subparsers.add_parser(
        "claim",
        help="collect payouts the contract could not push to you",
        description="Collects this node's payouts in an asset that the contract credited instead of pushing "
        "(a recipient that rejected them or needed too much gas).",
    )
    _add_db(claim)
    claim.add_argument("--asset", default=None, metavar="TOKEN", help="ERC-20 token address (default: ETH)")
    _add_json(claim)
    claim.set_defaults(func=run_claim)

    deposit = subparsers.add_parser(
        "deposit",
        help="add funds to an open channel (top-up), for this node's side or the counterparty's",
        description="Deposits AMOUNT into an open channel, for this node's side (default) or, with --for-peer, "
        "the counterparty's. The next state splits it.",
    )
    _add_db(deposit)
    deposit.add_argument("amount", help="1ether, 0.5gwei, 1e15, 2500wei or plain wei; in a token channel: token units")
    _add_channel(deposit)
    deposit.add_argument("--for-peer", action="store_true", help="deposit for the counterparty's side")
    _add_json(deposit)
    deposit.set_defaults(func=run_deposit)


def add_watcher_arguments(parser: argparse.ArgumentParser, who: str) -> None:
    """The chain options of a process that watches the chain (``who``: "a node", "a tower"): the RPC, the
    contract (``add_deployment_arguments``), the watcher's poll interval and log page."""
    parser.add_argument(
        "--rpc-url",
        default=None,
        help=f"JSON-RPC URL of the chain (default: $PAYCHAN_RPC_URL, else $ETH_RPC_URL; {who} needs a real chain)",
    )
    add_deployment_arguments(parser)
    parser.add_argument("--poll-interval", type=float, default=1.0, help="chain watcher interval in seconds")
    parser.add_argument(
        "--log-page-blocks", type=int, default=2000, help="most blocks in one eth_getLogs query (default 2000)"
    )


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="the node's store (its control file sits beside it)")


def _add_channel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel", default=None, help="channel id or a unique prefix of it (default: the node's only open channel)"
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


EXIT_OK, EXIT_FAILED, EXIT_PARTIAL, EXIT_PENDING = 0, 1, 3, 4
EXIT_CODES = """exit codes:
  0  done: everything asked happened
  1  nothing happened (an error; nothing was paid or sent)
  2  bad usage
  3  partly done: some payments went through, the rest will not (refused or cancelled); nothing pending
  4  pending: some payments (or the final state) are signed and sent but not countersigned yet; they
     complete when the peer answers. Check `paychan status` before trying again: retrying may pay twice.
Ctrl-C on pay cancels the payments not signed yet and reports what was paid."""


# --- running a node -------------------------------------------------------------------------------


def wallet_address(text: str) -> str:
    """An ``argparse`` type: a contract wallet's address (0x and 40 hex digits), checksummed."""
    from eth_utils.address import to_checksum_address

    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected 0x and 40 hex digits")
    return str(to_checksum_address(text))


def check_wallet(chain: Any, wallet: str, key: bytes) -> None:
    """``--wallet``: the wallet must accept the keystore key's signatures and make calls for it (two
    ``eth_call``s, no transaction); else one sentence, before anything is created."""
    from eth_account import Account

    from paychan.wallets import NotAWallet, NotWalletOwner, WalletAccount, WalletRefusesSigner, check_wallet_owner

    owner = Account.from_key(key)
    try:
        check_wallet_owner(chain.w3, WalletAccount(wallet, owner))
    except NotAWallet:
        raise PaychanError(
            f"--wallet {wallet} has no code on chain {chain.chain_id}: it is not a contract wallet (a key runs a "
            "node with its keystore alone)"
        ) from None
    except WalletRefusesSigner:
        raise PaychanError(
            f"the wallet {wallet} does not accept signatures of the keystore's key {owner.address} "
            "(isValidSignature): start the node with the keystore of its owner"
        ) from None
    except NotWalletOwner:
        raise PaychanError(
            f"the wallet {wallet} does not make calls for the keystore's key {owner.address} (execute reverts): "
            "start the node with the keystore of its owner"
        ) from None


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
    from paychan.chain import default_rpc_url, genesis_hash, rpc_chain
    from paychan.contract import PaychanContract, require_transient_storage
    from paychan.node.keystore import load_key
    from paychan.node.store import Store

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rpc_url = args.rpc_url or default_rpc_url()
    if not rpc_url:
        raise PaychanError(
            "a node needs a chain: pass --rpc-url URL or set ETH_RPC_URL (e.g. `paychan devnet` prints its URL)"
        )
    if args.wallet is not None and args.tower:
        raise PaychanError(
            "--wallet and --tower cannot be combined yet: a tower checks a push's signature by ecrecover "
            "against the channel's participant, which for a wallet is the wallet, not its owner's key"
        )
    key = load_key(args.keystore)
    signer = build_signer(args, key)  # before the chain and the store: a bad signer creates nothing
    from paychan.deployments import load_contract
    from paychan.node.watcher import CURSOR_KEY, GENESIS_KEY

    chain = rpc_chain(rpc_url, ["0x" + key.hex()])  # before the store: an unreachable chain creates no file
    if args.wallet is not None:
        check_wallet(chain, args.wallet, key)  # before the store too
    lock = lock_store(args.db)
    store = Store(args.db)
    if args.contract is not None and store.get_meta(CURSOR_KEY) is not None:
        require_transient_storage(chain)
        contract = PaychanContract(chain, args.contract)  # the watcher resumes where it stopped
    else:  # the recorded (or given) contract; finds its deployment block: events start there
        contract = load_contract(chain, args.contract, args.deployments)
    genesis = genesis_hash(chain)
    for name, value in (
        ("chainId", str(chain.chain_id)),
        (GENESIS_KEY, genesis),
        ("contract", contract.address),
        ("address", args.wallet or chain.accounts[0].address),
    ):
        known = store.get_meta(name)
        if known is None:
            store.set_meta(name, value)
        elif known != value:
            raise PaychanError(f"store {args.db} belongs to {name} {known}, not {value}")
    try:
        asyncio.run(_serve(args, store, key, contract, signer))
    finally:
        store.close()
        lock.close()
    return 0


def build_signer(args: argparse.Namespace, key: bytes) -> Any:
    """The signer of ``paychan node``'s off-chain messages: None (the keystore's key), a ``JsonRpcSigner``
    (``--signer-url``) or an ``ApeSigner`` (``--ape-account``), for the keystore's address; with
    ``--wallet``, an ``Erc1271Signer`` of the wallet around it (or around the key). A signer for
    another address is refused in one sentence; one that does not answer yet only warns: the node starts,
    refuses to sign until it is back, and finds it back by itself."""
    from eth_account import Account

    from paychan.signers import (
        AccountNotHeld,
        ApeSigner,
        Erc1271Signer,
        JsonRpcSigner,
        LocalKeySigner,
        SignerUnavailable,
    )

    address = Account.from_key(key).address
    signer: Any = None
    if args.signer_url:
        signer = JsonRpcSigner(args.signer_url, address, timeout=args.signer_timeout)
        try:
            signer.check_available()
        except AccountNotHeld as exc:
            raise PaychanError(f"{exc}, and --signer-url must sign for the keystore's address") from None
        except SignerUnavailable as exc:
            print(
                f"paychan node: the signer at {exc.url} does not answer ({exc.reason}): the node starts and signs "
                "nothing until the signer is back (`paychan status` shows it)",
                file=sys.stderr,
                flush=True,
            )
    elif args.ape_account:
        signer = ApeSigner(load_ape_account(args.ape_account))
    if signer is not None and signer.address != address:
        raise PaychanError(
            f"the signer signs for {signer.address}, not for the keystore's address {address}: give the keystore "
            "of the signer's account"
        )
    if args.wallet is not None:  # the key (or its signer) signs for the wallet it owns
        signer = Erc1271Signer(args.wallet, signer if signer is not None else LocalKeySigner(key, check=False))
    return signer


def load_ape_account(alias: str) -> Any:
    """Ape's account ``alias`` (``TEST::N``: its test account N); one sentence if there is none."""
    try:
        from ape import accounts
    except ImportError:
        raise PaychanError("--ape-account needs Ape: pip install eth-ape") from None
    test = re.fullmatch(r"TEST::(\d{1,4})", alias, flags=re.IGNORECASE)
    if test is not None:
        return accounts.test_accounts[int(test.group(1))]
    try:
        return accounts.load(alias)
    except KeyError:
        known = ", ".join(accounts.aliases) or "none"
        raise PaychanError(f"no Ape account {alias!r} (known: {known}; TEST::N names Ape's test account N)") from None


async def _serve(args: argparse.Namespace, store: Any, key: bytes, contract: Any, signer: Any = None) -> None:
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
        signer=signer,
        wallet=args.wallet,
    )
    tower = None
    if args.tower:
        from paychan.node.tower_client import TowerClient, restore_from_tower

        tower = TowerClient(node, args.tower)
        await restore_from_tower(tower)  # a restored store reads its newest states back before serving
    try:
        peer_runner, control_runner, peer_url, control_url = await serve(node, args.host, args.port, args.control_port)
    except OSError as exc:
        await node.stop()
        if exc.errno == errno.EADDRINUSE:
            raise PaychanError(
                f"port {args.port} on {args.host} is already in use (is another node running there?); "
                "choose another with --port (0: any free port)"
            ) from None
        raise PaychanError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    watcher = Watcher(node, args.poll_interval, page_blocks=args.log_page_blocks, auto_settle=args.auto_settle)
    watcher_task = asyncio.get_running_loop().create_task(watcher.run())
    tower_task = None if tower is None else asyncio.get_running_loop().create_task(tower.run())
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
    freeze_startup_objects()
    try:
        await until_stopped()
    finally:
        watcher_task.cancel()
        if tower is not None and tower_task is not None:
            tower_task.cancel()
            await tower.close()
        await peer_runner.cleanup()
        await control_runner.cleanup()
        await node.stop()
        control_file.unlink(missing_ok=True)


def freeze_startup_objects() -> None:
    """Moves what the node holds once it serves (web3, eth-abi and aiohttp modules, the loaded channels: some
    100,000 objects) out of the garbage collector's sight (``gc.freeze``): a full collection, which a node
    runs every few seconds under load, then scans only what was made since, and stops pausing the event loop
    for 50-70 ms each time (measured: ``docs/node.md``)."""
    import gc

    gc.collect()
    gc.freeze()


async def until_stopped() -> None:
    """Returns once the process gets SIGTERM or SIGINT (a server's main loop waits here)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_keystore(args: argparse.Namespace) -> int:
    from eth_account import Account

    from paychan.node.keystore import read_password, write_keystore

    if Path(args.out).exists():
        raise PaychanError(f"{args.out} exists; choose a new file")
    if args.import_env:
        secret = os.environ.get(args.import_env)
        if not secret:
            raise PaychanError(f"environment variable {args.import_env} is empty")
        hex_key = secret.strip().removeprefix("0x")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", hex_key):
            raise PaychanError(
                f"environment variable {args.import_env} does not hold a private key: expected 32 bytes as 64 hex "
                f"digits (with or without 0x), got {len(hex_key)} characters"
            )
        key = bytes.fromhex(hex_key)
    else:
        key = bytes(Account.create().key)
    address = write_keystore(args.out, key, read_password("new keystore password: "))
    _print(args, {"address": address, "keystore": str(args.out)}, f"{address} -> {args.out}")
    return 0


# --- driving a node -------------------------------------------------------------------------------


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def _asset_info(db: str, asset: str) -> dict[str, Any]:
    return dict(control_request(db, "GET", f"/token/{asset}"))


def _amount(text: str, info: dict[str, Any], allow_zero: bool = False) -> int:
    """An amount the user typed, in wei (ETH) or the token's smallest unit."""
    from paychan.units import parse_amount

    if info["address"] == ETH_ADDRESS:  # wei, or a number with a unit (ether, gwei, wei)
        return parse_amount(text, allow_zero=allow_zero)
    # a token: whole tokens with up to its decimals of fraction (1.5 is 1500000 of a 6-decimal token)
    return parse_amount(text, int(info["decimals"]), whole_units=True, symbol=str(info["symbol"]), allow_zero=False)


def _fmt(amount: str | int, info: dict[str, Any] | None = None) -> str:
    from paychan.units import format_amount

    info = info or {"decimals": 18, "symbol": "ETH"}
    return format_amount(int(amount), int(info["decimals"]), str(info["symbol"]))


def _channel_of(args: argparse.Namespace) -> dict[str, Any]:
    """The status of the channel the command names (``--channel``), or of the only open one."""
    channels = control_request(args.db, "GET", "/status")["channels"]
    name = (args.channel or "").lower().removeprefix("0x")
    if name:
        matches = [c for c in channels if c["channelId"][2:].startswith(name)]
    else:
        matches = [c for c in channels if c["status"] != "closed"]
    if len(matches) == 1:
        return dict(matches[0])
    if name:
        raise PaychanError(
            f"{len(matches)} channels of this node start with {args.channel}: give more digits"
            if matches
            else f"no channel of this node starts with {args.channel}"
        )
    raise PaychanError(
        f"the node has {len(matches)} open channels: name one with --channel (an id or a unique prefix)"
        if matches
        else "the node has no open channel: open one with `paychan open`"
    )


def run_status(args: argparse.Namespace) -> int:
    data = control_request(args.db, "GET", "/status")
    lines = [f"node {data['address']} (chain {data['chainId']}, contract {data['contract']})"]
    if data.get("chainLost"):
        lines.append(f"  CHAIN LOST: {data['chainLost']}")
    if data.get("signerAvailable") is False:
        lines.append(
            f"  SIGNER UNAVAILABLE: {data.get('signer')}: {data.get('signerProblem')}; payments, locks and "
            "withdrawals are refused until it is back (the watcher still protects the channels)"
        )
    if not data["channels"]:
        lines.append("no channels")
    for ch in data["channels"]:
        info = _asset_info(args.db, ch["asset"]) if ch["asset"] != ETH_ADDRESS else None
        lines.append(f"channel {ch['channelId']}  role {ch['role']}  {ch['phase']}  nonce {ch['nonce']}")
        lines.append(f"  counterparty {ch['counterparty']} at {ch['peerUrl'] or '(not announced yet)'}")
        lines.append(
            f"  balances: A {_fmt(ch['balanceA'], info)}  B {_fmt(ch['balanceB'], info)}"
            f"  (mine {_fmt(ch['myBalance'], info)}); deposits A {_fmt(ch['depositA'], info)}"
            f"  B {_fmt(ch['depositB'], info)}"
        )
        if ch["inflight"] or ch["queued"]:
            lines.append(f"  in flight {ch['inflight']}, queued {ch['queued']}")
        lines.append(
            f"  revocations: ours below nonce {ch['ownRevocation']}, the peer's below nonce {ch['peerRevocation']};"
            f" pending locks {ch['pendingLocks']}"
        )
        if ch["closeDeadline"] is not None:
            closer = f" by {ch['closedBy']}" if ch.get("closedBy") else ""
            lines.append(
                f"  closing on chain{closer} with nonce {ch['closeNonce']}; challenge deadline {ch['closeDeadline']}"
                + (f"; challenged with nonce {ch['challengedNonce']}" if ch["challengedNonce"] is not None else "")
            )
        if ch.get("penalized"):
            lines.append(
                f"  the closer ({ch['closedBy']}) was proven to have closed with nonce {ch['closerNonce']}, which it"
                " revoked: settling pays the whole channel to the other side"
            )
        if ch.get("payoutA") is not None:
            mine = ch["payoutA"] if ch["role"] == "A" else ch["payoutB"]
            lines.append(
                f"  paid out on chain: A {_fmt(ch['payoutA'], info)}  B {_fmt(ch['payoutB'], info)}"
                f"  (mine {_fmt(mine, info)})"
            )
        pending = ch.get("pendingWithdrawal")
        if pending:
            signed = "signed by both" if pending["bothSigned"] else "signed by this node only"
            lines.append(
                f"  withdrawal not made on chain yet ({signed}): A {_fmt(pending['amountA'], info)}, "
                f"B {_fmt(pending['amountB'], info)}, valid until {pending['expiry']}; no new state until it is made"
            )
        if ch.get("restoredUnsynced"):
            lines.append(
                "  restored from a backup and not synced with the peer yet: no unilateral close until it is "
                "(or `paychan close --unilateral --i-lost-data`)"
            )
        lines.append(f"  next: {ch['next']}")
    _print(args, data, "\n".join(lines))
    return EXIT_OK


ETH_ADDRESS = "0x0000000000000000000000000000000000000000"


def run_open(args: argparse.Namespace) -> int:
    asset = args.asset or ETH_ADDRESS
    info = _asset_info(args.db, asset)
    deposit = _amount(args.deposit, info, allow_zero=True)
    with waiting("opening the channel on chain and telling the peer's node"):
        data = control_request(
            args.db,
            "POST",
            "/open",
            {"peer": args.peer, "deposit": str(deposit), "challengePeriod": args.challenge_period, "asset": asset},
        )
    announced = "" if data["announced"] else " (the peer's node has not seen it yet: this node keeps announcing it)"
    _print(args, data, f"opened channel {data['channelId']} with a deposit of {_fmt(deposit, info)}{announced}")
    return EXIT_OK


def _pay_exit(outcome: str) -> int:
    return {"done": EXIT_OK, "partial": EXIT_PARTIAL, "pending": EXIT_PENDING}.get(outcome, EXIT_FAILED)


def run_pay(args: argparse.Namespace) -> int:
    import uuid

    if args.to is not None and not args.channel:
        from paychan.cli.network import direct_channel, run_pay_routed

        direct = direct_channel(args)
        if direct is None:
            return run_pay_routed(args)
        args.channel = direct
    channel = _channel_of(args)
    info = _asset_info(args.db, channel["asset"])
    amount = _amount(args.amount, info)
    request_id = uuid.uuid4().hex
    payload = {
        "channel": channel["channelId"],
        "amount": str(amount),
        "count": args.count,
        "requestId": request_id,
    }
    interrupted = False
    start = int(channel["nonce"])

    def countersigned() -> int:
        return int(_channel_of(args)["nonce"]) - start

    try:
        try:
            with waiting(f"paying {args.count} x {_fmt(amount, info)}", countersigned, args.count):
                data = control_request(args.db, "POST", "/pay", payload, timeout=3600)
        except KeyboardInterrupt:  # Ctrl-C: take back what is not signed yet, then report what was
            interrupted = True
            data = control_request(args.db, "POST", "/pay/cancel", {"requestId": request_id})
    except ControlError as exc:
        if exc.type != "PayIncomplete":
            raise
        data = exc.fields
    paid = int(data["paid"])
    text = (
        f"paid {paid} of {data['requested']} x {_fmt(data['amount'], info)}"
        + (" (interrupted)" if interrupted else "")
        + f": channel {data['channelId']} nonce {data['nonce']}, my balance {_fmt(data['myBalance'], info)}"
    )
    details = []
    if data["refused"]:
        details.append(f"{data['refused']} refused: {data['reason']}")
    if data["cancelled"]:
        details.append(f"{data['cancelled']} cancelled before they were signed: they will not happen")
    if data["inFlight"]:
        details.append(
            f"{data['inFlight']} signed and sent, not countersigned yet: they complete when the peer answers; "
            "check `paychan status` before paying again"
        )
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print(text)
        for line in details:
            print(f"  {line}", file=sys.stderr)
    return _pay_exit(str(data["outcome"]))


def run_close(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    info = _asset_info(args.db, channel["asset"])
    if args.lost_data and not args.unilateral:
        raise PaychanError("--i-lost-data only goes with --unilateral (a cooperative close needs the peer anyway)")
    payload = {"channel": channel["channelId"], "unilateral": args.unilateral, "lostData": args.lost_data}
    try:
        with waiting(
            "closing (unilaterally)" if args.unilateral else "waiting for the peer to countersign the final state"
        ):
            data = control_request(args.db, "POST", "/close", payload, timeout=3600)
    except ControlError as exc:
        if exc.type != "CloseTimeout":
            raise
        # our final state, if already sent, may still close the channel when the peer answers: pending
        timed_out = EXIT_PENDING if exc.fields.get("signed") else EXIT_FAILED
        print(f"paychan: error: {exc}", file=sys.stderr)
        if not sys.stdin.isatty():
            return timed_out
        if input("close unilaterally now, without the peer? [y/N] ").strip().lower() not in ("y", "yes"):
            return timed_out
        data = control_request(args.db, "POST", "/close", {**payload, "unilateral": True}, timeout=3600)
        args.unilateral = True
    if args.unilateral:
        text = (
            f"closed channel {data['channelId']} unilaterally with nonce {data['nonce']} "
            f"(A {_fmt(data['balanceA'], info)}, B {_fmt(data['balanceB'], info)}); "
            f"challenge period until {data['deadline']}, then the node settles "
            f"(or run `paychan settle`) (tx {data['transaction']})"
        )
    else:
        text = (
            f"closed channel {data['channelId']} at nonce {data['nonce']}: A gets {_fmt(data['payoutA'], info)}, "
            f"B gets {_fmt(data['payoutB'], info)} (tx {data['transaction']})"
        )
    _print(args, data, text)
    return EXIT_OK


def run_settle(args: argparse.Namespace) -> int:
    channel = _channel_of_any(args)
    info = _asset_info(args.db, channel["asset"])
    with waiting("settling on chain"):
        data = control_request(args.db, "POST", "/settle", {"channel": channel["channelId"]}, timeout=3600)
    if data.get("alreadySettled"):
        text = (
            f"channel {data['channelId']} was settled already (by the node itself, or when it closed): "
            f"A got {_fmt(data['payoutA'], info)}, B got {_fmt(data['payoutB'], info)}; nothing more to do"
        )
        _print(args, data, text)
        return EXIT_OK
    deferred = "".join(
        f"; {_fmt(amount, info)} to {who} could not be pushed: `paychan claim` collects it"
        for who, amount in data["deferred"].items()
    )
    _print(
        args,
        data,
        f"settled channel {data['channelId']} at nonce {data['nonce']}: A gets {_fmt(data['payoutA'], info)}, "
        f"B gets {_fmt(data['payoutB'], info)}{deferred} (tx {data['transaction']})",
    )
    return EXIT_OK


def _channel_of_any(args: argparse.Namespace) -> dict[str, Any]:
    """Like ``_channel_of``, but without ``--channel`` the only channel that is closing."""
    if args.channel:
        return _channel_of(args)
    channels = [c for c in control_request(args.db, "GET", "/status")["channels"] if c["status"] == "closing"]
    if len(channels) != 1:
        raise PaychanError(
            f"the node has {len(channels)} closing channels: name one with --channel"
            if channels
            else "no channel of this node is closing: there is nothing to settle"
        )
    return dict(channels[0])


def run_claim(args: argparse.Namespace) -> int:
    asset = args.asset or ETH_ADDRESS
    info = _asset_info(args.db, asset)
    with waiting("claiming on chain"):
        data = control_request(args.db, "POST", "/claim", {"asset": asset}, timeout=3600)
    _print(args, data, f"claimed {_fmt(data['amount'], info)} (tx {data['transaction']})")
    return EXIT_OK


def run_deposit(args: argparse.Namespace) -> int:
    channel = _channel_of(args)
    info = _asset_info(args.db, channel["asset"])
    amount = _amount(args.amount, info)
    payload = {"channel": channel["channelId"], "amount": str(amount), "forPeer": args.for_peer}
    with waiting("depositing on chain"):
        data = control_request(args.db, "POST", "/deposit", payload, timeout=3600)
    _print(
        args,
        data,
        f"deposited {_fmt(amount, info)} for {data['participant']} in channel {data['channelId']}: deposits now "
        f"A {_fmt(data['depositA'], info)}, B {_fmt(data['depositB'], info)} (tx {data['transaction']})",
    )
    return EXIT_OK
