"""Run a disputed channel lifecycle (a stale unilateral close beaten by a challenge, then settle after the
challenge period) and print its ledger. Uses the contract recorded for the chain (or --contract), else
deploys one.

    python scripts/dispute.py [--rpc-url URL] [--json]
    ape run dispute [--network ethereum:local:foundry]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _utils  # noqa: E402

from paychan.demo import run_dispute  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    args = _utils.parse(_utils.parser(__doc__.splitlines()[0]), argv)
    chain = _utils.open_chain(args)
    ledger = run_dispute(chain, _utils.recorded_contract(chain, args))
    print(json.dumps(ledger.to_json(), indent=2) if args.json else ledger.to_text())


if __name__ == "__main__":
    _utils.run(main, None)
