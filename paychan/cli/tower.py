"""``paychan tower`` runs a watchtower; ``paychan tower status`` shows what one watches.

The tower writes ``<db>.tower.json`` (its URL, PID and gas account) while it runs; ``status`` reads the
store itself (SQLite in WAL mode allows it while the tower writes).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

from paychan.cli import port_number
from paychan.cli.node import add_watcher_arguments, until_stopped
from paychan.exceptions import PaychanError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tower = subparsers.add_parser(
        "tower",
        help="run a watchtower that defends its clients' channels while they are offline",
        description="Serves POST /pushes (clients' signed states, revocations and secrets) and watches the "
        "chain: a stale close is answered with a penalty or a challenge, held secrets are revealed before "
        "their locks expire, channels are settled when the client asked. `paychan tower status --db DB` "
        "shows what a tower watches.",
    )
    tower.add_argument("--keystore", default=None, help="encrypted keystore of the key that pays the tower's gas")
    tower.add_argument("--db", default=None, help="the tower's SQLite store (created if missing)")
    tower.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    tower.add_argument("--port", type=port_number, default=9737, help="port to listen on (default 9737; 0 = any)")
    add_watcher_arguments(tower, "a tower")
    tower.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    tower.set_defaults(func=run_tower)
    commands = tower.add_subparsers(
        dest="tower_command", metavar="COMMAND", help="status: what a tower watches (without one: run the tower)"
    )
    status = commands.add_parser(
        "status",
        help="what a tower's store holds: channels by phase, clients, nonces",
        description="Each channel the tower at --db watches: client, newest nonce held, revocation, secrets, "
        "whether it settles, and the phase the watcher last saw (open, closing, settled).",
    )
    status.add_argument("--db", required=True, help="the tower's store")
    status.add_argument("--json", action="store_true", help="print the result as JSON")
    status.set_defaults(func=run_status)


def info_file(db: str | Path) -> Path:
    return Path(f"{db}.tower.json")


def run_tower(args: argparse.Namespace) -> int:
    from paychan.chain import default_rpc_url, rpc_chain
    from paychan.cli.node import lock_store
    from paychan.deployments import load_contract
    from paychan.node.keystore import load_key
    from paychan.tower.registry import Registry
    from paychan.tower.store import TowerStore

    if args.keystore is None or args.db is None:
        raise PaychanError("a tower needs --keystore (the key that pays its gas) and --db (its store)")
    rpc_url = args.rpc_url or default_rpc_url()
    if not rpc_url:
        raise PaychanError("a tower needs a chain: pass --rpc-url URL or set ETH_RPC_URL")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    key = load_key(args.keystore)
    chain = rpc_chain(rpc_url, ["0x" + key.hex()])  # before the store: an unreachable chain creates no file
    contract = load_contract(chain, args.contract, args.deployments)
    lock = lock_store(args.db)
    store = TowerStore(args.db)
    try:
        store.bind(chain.chain_id, contract.address)
        registry = Registry(store, contract.domain)
        asyncio.run(_serve(args, registry, contract, chain.accounts[0]))
    finally:
        store.close()
        lock.close()
    return 0


async def _serve(args: argparse.Namespace, registry: Any, contract: Any, account: Any) -> None:
    from paychan.tower.service import serve
    from paychan.tower.watcher import TowerWatcher

    watcher = TowerWatcher(registry, contract, account, args.poll_interval, page_blocks=args.log_page_blocks)
    try:
        runner, url = await serve(registry, watcher, args.host, args.port)
    except OSError as exc:
        watcher.stop()
        if exc.errno == errno.EADDRINUSE:
            raise PaychanError(
                f"port {args.port} on {args.host} is already in use; choose another with --port (0: any free port)"
            ) from None
        raise PaychanError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    task = asyncio.get_running_loop().create_task(watcher.run())
    info = info_file(args.db)
    info.write_text(json.dumps({"url": url, "pid": os.getpid(), "account": account.address}))
    print(f"paychan tower {account.address}: listening at {url}", flush=True)
    try:
        await until_stopped()
    finally:
        task.cancel()
        watcher.stop()
        await runner.cleanup()
        info.unlink(missing_ok=True)


def run_status(args: argparse.Namespace) -> int:
    from paychan.tower.store import TowerStore

    if not Path(args.db).exists():
        raise PaychanError(f"no tower store at {args.db}")
    store = TowerStore(args.db)
    try:
        channels: list[dict[str, Any]] = [
            {
                "channelId": "0x" + w.push.channel_id.hex(),
                "client": w.push.client,
                "nonce": w.push.nonce,
                "revokedBelow": w.push.revoked_below,
                "secrets": len(w.push.secrets),
                "settle": w.push.settle,
                "phase": w.phase,
            }
            for w in store.all_watched()
        ]
        cursor = store.get_meta("nextBlock")
        result: dict[str, Any] = {
            "chainId": int(store.get_meta("chainId") or 0),
            "contract": store.get_meta("contract"),
            "scannedTo": -1 if cursor is None else int(cursor) - 1,
            "channels": channels,
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    running = info_file(args.db)
    where = json.loads(running.read_text())["url"] if running.exists() else "not running"
    print(f"tower {args.db}: {where}; contract {result['contract']}, blocks processed to {result['scannedTo']}")
    if not channels:
        print("watching no channels")
    for c in channels:
        print(
            f"  {c['channelId'][:18]}…  client {c['client']}  nonce {c['nonce']:>6}  "
            f"revoked below {c['revokedBelow']:>6}  secrets {c['secrets']}  {'settle' if c['settle'] else ''}"
            f"  {c['phase']}"
        )
    return 0
