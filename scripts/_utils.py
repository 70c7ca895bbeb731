"""What the scripts share: their command line, and the chain to run on.

Each script runs two ways, from the same file:

- ``python scripts/<name>.py [--rpc-url URL] ...``: the node at ``URL``, else at ``$PAYCHAN_RPC_URL`` or
  ``$ETH_RPC_URL``, else the embedded chain (``--rpc-url embedded`` forces it);
- ``ape run <name> [--network ...]``: Ape connects first and calls ``main()``; the script then runs on
  Ape's connected provider (its local test chain, or anvil with ``--network ethereum:local:foundry``);
  Ape's ``--network`` decides there, not the environment.

No logic lives here or in the scripts: they call ``paychan.demo`` and ``paychan.deployments``. Ape skips
this module when listing scripts (its name starts with ``_``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/x.py` from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from paychan.chain import EMBEDDED, Chain, connect, default_rpc_url  # noqa: E402
from paychan.contract import PaychanContract  # noqa: E402
from paychan.exceptions import PaychanError  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    from paychan.deployments import add_deployment_arguments

    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--rpc-url",
        default=None,
        help="JSON-RPC URL of a node (default: $PAYCHAN_RPC_URL, else $ETH_RPC_URL, else the embedded chain; "
        f"`{EMBEDDED}`: the embedded chain)",
    )
    add_deployment_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def ape_provider() -> Any | None:
    """Ape's connected provider when this script runs under ``ape run``, else None."""
    ape = sys.modules.get("ape")
    if ape is None:
        return None
    return ape.networks.active_provider


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Our arguments; under ``ape run`` the command line is Ape's, so the defaults are used."""
    under_ape = ape_provider() is not None
    if argv is None and under_ape:
        argv = []
    args = p.parse_args(argv)
    if args.rpc_url is None and not under_ape:
        args.rpc_url = default_rpc_url()
    if args.rpc_url == EMBEDDED:
        args.rpc_url = None
    return args


def chain_from_ape(provider: Any) -> Chain:
    """A ``Chain`` on Ape's provider, holding the keys of Ape's test accounts."""
    from ape import accounts
    from eth_account import Account

    from paychan.chain import rpc_chain

    keys = [str(a.private_key) for a in accounts.test_accounts]
    uri = getattr(provider, "http_uri", None)
    tester = getattr(provider, "tester", None)
    if tester is not None and hasattr(tester, "ethereum_tester"):  # Ape's local eth-tester network
        return Chain(
            w3=provider.web3,
            kind="ape-local",
            accounts=[Account.from_key(k) for k in keys],
            tester=tester.ethereum_tester,
        )
    if uri is None:
        raise PaychanError(f"the Ape provider {provider.name!r} has no HTTP endpoint to connect to")
    chain = rpc_chain(uri, keys)
    chain.kind = f"ape-{provider.name}"
    return chain


def open_chain(args: argparse.Namespace) -> Chain:
    provider = ape_provider()
    if provider is not None and args.rpc_url is None:
        return chain_from_ape(provider)
    return connect(args.rpc_url)


def started_for_this_run(chain: Chain, args: argparse.Namespace) -> bool:
    """True for a chain that lives only as long as this script: the embedded one, Ape's local network, or
    an anvil Ape started for ``--network ethereum:local:foundry`` (no earlier deployment can be on it)."""
    if chain.tester is not None:
        return True
    provider = ape_provider()
    return provider is not None and args.rpc_url is None and getattr(provider, "process", None) is not None


def recorded_contract(chain: Chain, args: argparse.Namespace) -> PaychanContract | None:
    """The contract named by ``--contract`` or recorded for this chain by ``paychan deploy``; None on a
    chain started for this run, or when nothing is recorded (the lifecycle then deploys its own)."""
    from paychan.deployments import DeploymentNotFound, load_contract, recorded_deployment

    if args.contract is not None:
        return load_contract(chain, args.contract, args.deployments)
    if started_for_this_run(chain, args) or recorded_deployment(chain, args.deployments) is None:
        return None
    try:
        return load_contract(chain, None, args.deployments)
    except DeploymentNotFound as exc:
        raise PaychanError(f"{exc}") from None


def run(main: Any, argv: Sequence[str] | None) -> None:
    """Runs ``main(argv)``; paychan errors print as one line and exit 1 (a traceback under Ape)."""
    if ape_provider() is not None:
        main(argv)
        return
    try:
        main(argv)
    except PaychanError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
