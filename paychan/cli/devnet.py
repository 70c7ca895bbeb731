"""``paychan devnet``: run a local anvil until Ctrl-C; ``paychan deploy``: deploy and record the contract."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from types import FrameType
from typing import Any

from paychan.cli import port_number
from paychan.devnet import ANVIL_CHAIN_ID, DEFAULT_ACCOUNTS, DEFAULT_BALANCE_ETH, DEFAULT_PORT, HOST

DEFAULT_RPC_URL = f"http://{HOST}:{DEFAULT_PORT}"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from paychan.chain import default_rpc_url
    from paychan.deployments import DEFAULT_DIRECTORY_HELP, DEPLOYMENTS_ENV

    records = (
        f"a directory of <chain_id>-<genesis>.json records, or one .json file "
        f"(default: ${DEPLOYMENTS_ENV}, else {DEFAULT_DIRECTORY_HELP})"
    )
    devnet = subparsers.add_parser(
        "devnet",
        help="run a local anvil devnet on 127.0.0.1 until Ctrl-C",
        description="Starts anvil (from node_modules) on 127.0.0.1, prints its RPC URL and funded accounts, "
        "and runs until Ctrl-C or SIGTERM, then stops it.",
    )
    devnet.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    devnet.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="number of funded dev accounts")
    devnet.add_argument("--balance", type=int, default=DEFAULT_BALANCE_ETH, help="ETH in each dev account")
    devnet.add_argument("--chain-id", type=int, default=ANVIL_CHAIN_ID, help=f"chain id (default {ANVIL_CHAIN_ID})")
    devnet.add_argument(
        "--deploy", action="store_true", help="also deploy PaymentChannels and write its deployment record"
    )
    devnet.add_argument(
        "--deployments", default=None, metavar="PATH", help=f"where --deploy writes the record: {records}"
    )
    devnet.add_argument("--verbose", action="store_true", help="show anvil's own log (every request and block)")
    devnet.add_argument("--json", action="store_true", help="print the devnet's details as one JSON line")
    devnet.set_defaults(func=run_devnet)

    deploy = subparsers.add_parser(
        "deploy",
        help="deploy PaymentChannels to a node and write its deployment record",
        description="Deploys PaymentChannels from the first account (a dev account, or the first key in "
        "$PAYCHAN_PRIVATE_KEYS) and writes the deployment record (address, chain id, genesis hash, block, "
        "transaction hash, artifact hash) that the other commands read. It needs a node: --rpc-url, else "
        "$PAYCHAN_RPC_URL or $ETH_RPC_URL (the embedded chain would vanish with the command). It says so when "
        "it replaces the chain's earlier record.",
    )
    rpc_default = default_rpc_url()
    deploy.add_argument(
        "--rpc-url",
        default=rpc_default,
        help="JSON-RPC URL of the node to deploy to; required unless $PAYCHAN_RPC_URL or $ETH_RPC_URL is set "
        f"(now: {rpc_default or 'neither is set'}; `paychan devnet` serves {DEFAULT_RPC_URL})",
    )
    deploy.add_argument("--deployments", default=None, metavar="PATH", help=f"where to write the record: {records}")
    deploy.add_argument("--json", action="store_true", help="print the deployment record as JSON")
    deploy.set_defaults(func=run_deploy)


class _Stop(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_devnet(args: argparse.Namespace) -> int:
    from paychan.deployments import deploy_and_record, recorded_deployment
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
            chain = devnet.chain()
            replaced = recorded_deployment(chain, args.deployments)
            _, deployment, path = deploy_and_record(chain, args.deployments)
            details["contract"] = deployment.address
            details["deployment_file"] = str(path)
            if replaced is not None:
                details["replaced"] = {"address": replaced[0].address, "deployment_file": str(replaced[1])}
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
        if "replaced" in details:
            from paychan.deployments import replacement_line

            lines.append(
                replacement_line(
                    details["replaced"]["deployment_file"],
                    details["replaced"]["address"],
                    details["contract"],
                    details["deployment_file"],
                )
            )
    lines += ["", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


def _fail_exited(code: int) -> int:
    print(f"paychan: error: anvil exited unexpectedly (exit code {code})", file=sys.stderr)
    return 1


def run_deploy(args: argparse.Namespace) -> int:
    from paychan.chain import rpc_chain
    from paychan.deployments import deploy_and_record, recorded_deployment, replacement_line

    if not args.rpc_url:
        print(
            "paychan: error: deploy needs a node: pass --rpc-url URL or set ETH_RPC_URL "
            f"(`paychan devnet` serves {DEFAULT_RPC_URL})",
            file=sys.stderr,
        )
        return 2
    chain = rpc_chain(args.rpc_url)
    replaced = recorded_deployment(chain, args.deployments)
    _, deployment, path = deploy_and_record(chain, args.deployments)
    if args.json:
        printed: dict[str, Any] = {**deployment.to_json(), "deployment_file": str(path)}
        if replaced is not None:
            printed["replaced"] = {**replaced[0].to_json(), "deployment_file": str(replaced[1])}
        print(json.dumps(printed, indent=2))
        return 0
    print(f"PaymentChannels deployed at {deployment.address}")
    print(f"  chain id       {deployment.chain_id}")
    print(f"  genesis        {deployment.genesis_hash}")
    print(f"  block          {deployment.block_number}")
    print(f"  transaction    {deployment.transaction_hash}")
    print(f"  deployer       {deployment.deployer}")
    print(f"  artifact hash  {deployment.artifact_hash}")
    print(f"recorded in {path}")
    if replaced is not None:
        print(replacement_line(str(replaced[1]), replaced[0].address, deployment.address, str(path)))
    return 0
