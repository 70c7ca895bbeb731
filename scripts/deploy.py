"""Deploy ``PaymentChannels`` and write its deployment record (see ``paychan.deployments`` for where).

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

from paychan.deployments import deploy_and_record, recorded_deployment, replacement_line  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    args = _utils.parse(_utils.parser(__doc__.splitlines()[0]), argv)
    chain = _utils.open_chain(args)
    replaced = recorded_deployment(chain, args.deployments)
    _, deployment, path = deploy_and_record(chain, args.deployments)
    where = f"recorded in {path}" if path else "not recorded: the in-process chain ends with this script"
    if args.json:
        printed = {**deployment.to_json(), "deployment_file": path and str(path)}
        if replaced is not None:
            printed["replaced"] = {**replaced[0].to_json(), "deployment_file": str(replaced[1])}
        print(json.dumps(printed, indent=2))
        return
    print(
        f"PaymentChannels deployed at {deployment.address} on chain {deployment.chain_id} "
        f"(block {deployment.block_number}, {chain.kind}); {where}"
    )
    if replaced is not None:
        print(replacement_line(str(replaced[1]), replaced[0].address, deployment.address, str(path)))


if __name__ == "__main__":
    _utils.run(main, None)
