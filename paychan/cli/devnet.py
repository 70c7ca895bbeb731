"""``paychan devnet``: run a local anvil until Ctrl-C; ``paychan deploy``: deploy and record the contract."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

from paychan.devnet import ANVIL_CHAIN_ID, DEFAULT_ACCOUNTS, DEFAULT_BALANCE_ETH, DEFAULT_PORT, HOST

DEFAULT_RPC_URL = f"http://{HOST}:{DEFAULT_PORT}"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from paychan.deployments import DEFAULT_DIRECTORY, DEPLOYMENTS_ENV

    devnet = subparsers.add_parser(
        "devnet",
        help="run a local anvil devnet on 127.0.0.1 until Ctrl-C",
        description="Starts anvil (from node_modules) on 127.0.0.1, prints its RPC URL and funded accounts, "
        "and runs until Ctrl-C or SIGTERM, then stops it.",
    )
    devnet.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)"
    )
    devnet.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="number of funded dev accounts")
    devnet.add_argument("--balance", type=int, default=DEFAULT_BALANCE_ETH, help="ETH in each dev account")
    devnet.add_argument("--chain-id", type=int, default=ANVIL_CHAIN_ID, help=f"chain id (default {ANVIL_CHAIN_ID})")
    devnet.add_argument(
        "--deploy", action="store_true", help="also deploy PaymentChannels and write its deployment record"
    )
    devnet.add_argument("--deployments", default=None, metavar="PATH", help="where --deploy writes the record")
    devnet.add_argument("--verbose", action="store_true", help="show anvil's own log (every request and block)")
    devnet.add_argument("--json", action="store_true", help="print the devnet's details as one JSON line")
    devnet.set_defaults(func=run_devnet)

    deploy = subparsers.add_parser(
        "deploy",
        help="deploy PaymentChannels and write deployments/<chain_id>.json",
        description="Deploys PaymentChannels from the first dev account and writes the deployment record "
        "(address, chain id, block, transaction hash, artifact hash) that the other commands read.",
    )
    deploy.add_argument(
        "--rpc-url",
        default=DEFAULT_RPC_URL,
        help=f"JSON-RPC URL of the node (default {DEFAULT_RPC_URL}, `paychan devnet`)",
    )
    deploy.add_argument(
        "--deployments",
        default=None,
        metavar="PATH",
        help=f"directory for <chain_id>.json, or a .json file (default: ${DEPLOYMENTS_ENV} or ./{DEFAULT_DIRECTORY})",
    )
    deploy.add_argument("--json", action="store_true", help="print the deployment record as JSON")
    deploy.set_defaults(func=run_deploy)


class _Stop(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_devnet(args: argparse.Namespace) -> int:
    from paychan.deployments import deploy_and_record
    from paychan.devnet import start_devnet

    # SIGINT too: a shell that starts a command in the background makes it ignore SIGINT, and
    # `kill -INT <pid>` must stop it as Ctrl-C does.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    devnet = None
    try:
        devnet = start_devnet(
            port=args.port or None,
            accounts=args.accounts,
            balance_eth=args.balance,
            chain_id=args.chain_id,
            output=None if args.verbose else subprocess.DEVNULL,
            silent=not args.verbose,
        )
        details: dict[str, Any] = {
            "rpc_url": devnet.url,
            "chain_id": devnet.chain_id,
            "pid": devnet.pid,
            "accounts": [{"address": a.address, "private_key": "0x" + bytes(a.key).hex()} for a in devnet.accounts],
        }
        if args.deploy:
            _, deployment, path = deploy_and_record(devnet.chain(), args.deployments)
            details["contract"] = deployment.address
            details["deployment_file"] = str(path)
        _print_devnet(details, args.json)
        devnet.process.wait()
        return _fail_exited(devnet.process.returncode)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        if devnet is not None:
            code = devnet.stop()
            if not args.json:
                print(f"anvil (pid {devnet.pid}) stopped (exit code {code})", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_devnet(details: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(details), flush=True)
        return
    lines = [
        f"anvil devnet listening on {details['rpc_url']} (chain id {details['chain_id']}, pid {details['pid']})",
        "",
        "funded dev accounts (public test keys: never use them on a real network):",
    ]
    for i, account in enumerate(details["accounts"]):
        lines.append(f"  ({i}) {account['address']}  {account['private_key']}")
    if "contract" in details:
        lines += ["", f"PaymentChannels deployed at {details['contract']} (recorded in {details['deployment_file']})"]
    lines += ["", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


def _fail_exited(code: int) -> int:
    print(f"paychan: error: anvil exited unexpectedly (exit code {code})", file=sys.stderr)
    return 1


def run_deploy(args: argparse.Namespace) -> int:
    from paychan.chain import rpc_chain
    from paychan.deployments import deploy_and_record

    chain = rpc_chain(args.rpc_url)
    _, deployment, path = deploy_and_record(chain, args.deployments)
    if args.json:
        print(json.dumps({**deployment.to_json(), "deployment_file": str(path)}, indent=2))
        return 0
    print(f"PaymentChannels deployed at {deployment.address}")
    print(f"  chain id       {deployment.chain_id}")
    print(f"  block          {deployment.block_number}")
    print(f"  transaction    {deployment.transaction_hash}")
    print(f"  deployer       {deployment.deployer}")
    print(f"  artifact hash  {deployment.artifact_hash}")
    print(f"recorded in {path}")
    return 0
