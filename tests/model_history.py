"""Prints the history digest of the model's first derandomized examples, in a fresh interpreter.

``python -m tests.model_history ARTIFACTS_DIR EXAMPLES [--import-paychan]``: ``ARTIFACTS_DIR`` holds
``PaymentChannels.json`` and ``TestToken.json`` (``Artifact.to_json``, written by the test that starts this,
so no compile here); with ``--import-paychan`` every module of ``paychan`` is imported and the CLI's parser
built before the model's own modules, as when other tests ran first. The digest is the last line printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from pathlib import Path

import paychan
from paychan.compile import Artifact


def import_every_paychan_module() -> list[str]:
    """Imports every module of the ``paychan`` package and builds the CLI's parser; returns the names."""
    names = [m.name for m in pkgutil.walk_packages(paychan.__path__, "paychan.")]
    for name in names:
        importlib.import_module(name)
    from paychan.cli import build_parser

    build_parser()
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("examples", type=int)
    parser.add_argument("--import-paychan", action="store_true")
    args = parser.parse_args()
    if args.import_paychan:
        print(f"imported {len(import_every_paychan_module())} paychan modules first")
    from tests.test_model import make_world, run_the_model

    artifacts = {
        name: Artifact.from_json(json.loads((args.artifacts / f"{name}.json").read_text()))
        for name in ("PaymentChannels", "TestToken")
    }
    print(run_the_model(make_world(artifacts), args.examples, derandomize=True))


if __name__ == "__main__":
    main()
