"""Run a cooperative channel lifecycle (open, deposits, off-chain payments, cooperative close) and print
its ledger. Uses the contract recorded for the chain (or --contract), else deploys one.

    python scripts/cooperative.py [--rpc-url URL] [--payments N] [--json]
    ape run cooperative [--network ethereum:local:foundry]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _utils  # noqa: E402

from paychan.demo import run_cooperative  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    p = _utils.parser(__doc__.splitlines()[0])
    p.add_argument("--payments", type=int, default=20, help="off-chain payments before closing (default 20)")
    args = _utils.parse(p, argv)
    chain = _utils.open_chain(args)
    ledger = run_cooperative(chain, _utils.recorded_contract(chain, args), payments=args.payments)
    print(json.dumps(ledger.to_json(), indent=2) if args.json else ledger.to_text())


if __name__ == "__main__":
    _utils.run(main, None)
