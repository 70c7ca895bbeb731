"""``paychan compile``: rebuild the contract artifact shipped in the package."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("compile", help="compile contracts/ and write the packaged artifact")
    parser.add_argument("--check", action="store_true", help="only check the shipped artifact is current")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_compile)


def run_compile(args: argparse.Namespace) -> int:
    from paychan.compile import MAIN_CONTRACT, compile_contracts, load_artifact, write_artifact

    fresh = compile_contracts()[MAIN_CONTRACT]
    if args.check:
        if fresh != load_artifact():
            message = "the shipped artifact differs from a fresh compile; run `paychan compile`"
            print(f"paychan: error: {message}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps({"contract": MAIN_CONTRACT, "current": True, "sourceHash": fresh.source_hash}))
        else:
            print(f"{MAIN_CONTRACT}: shipped artifact is current (source hash {fresh.source_hash[:16]}…)")
        return 0
    path = write_artifact(fresh)
    runtime = (len(fresh.deployed_bytecode) - 2) // 2
    if args.json:
        print(json.dumps({"contract": MAIN_CONTRACT, "runtimeBytes": runtime, "artifact": str(path)}))
    else:
        print(f"{MAIN_CONTRACT}: {runtime} bytes of runtime code -> {path}")
    return 0
