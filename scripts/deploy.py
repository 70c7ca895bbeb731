"""Deploy ``PaymentChannels`` and write its deployment record (``deployments/<chain_id>.json``).

python scripts/deploy.py --rpc-url http://127.0.0.1:8545   # e.g. the node of `paychan devnet`
ape run deploy --network ethereum:local:foundry
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _utils  # noqa: E402

from paychan.deployments import deploy_and_record  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    args = _utils.parse(_utils.parser(__doc__.splitlines()[0]), argv)
    chain = _utils.open_chain(args)
    _, deployment, path = deploy_and_record(chain, args.deployments)
    where = f"recorded in {path}" if path else "not recorded: the in-process chain ends with this script"
    if args.json:
        print(json.dumps({**deployment.to_json(), "deployment_file": path and str(path)}, indent=2))
    else:
        print(
            f"PaymentChannels deployed at {deployment.address} on chain {deployment.chain_id} "
            f"(block {deployment.block_number}, {chain.kind}); {where}"
        )


if __name__ == "__main__":
    _utils.run(main, None)
