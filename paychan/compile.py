"""Compiling the contracts and loading the compiled artifact.

The contracts are compiled with py-solc-x through ``bin/solc-v<version>``, a Node wrapper that makes the
npm ``solc`` package (solcjs) speak native solc's command line, so nothing is downloaded. The artifact of
the deployable contract ships inside the package (``paychan/artifacts``), so users need no compiler.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOLC_VERSION = "0.8.30"
EVM_VERSION = "prague"
# 150 runs: the most that keeps the deployment under its 2,200,000 gas target (issue 13); 200 made
# closes ~40 gas cheaper and the deployment 20,000 dearer.
OPTIMIZER_RUNS = 150
# The IR pipeline: 15% smaller runtime code than the legacy one (what brings deployment under 1.5M gas)
# and cheaper calls (benchmarks/gas.py). ape-config.yaml sets the same (`via_ir: true`).
VIA_IR = True
REMAPPINGS = ("solady/=node_modules/solady/src/",)
MAIN_CONTRACT = "PaymentChannels"

PACKAGE_DIR = Path(__file__).resolve().parent
ARTIFACT_DIR = PACKAGE_DIR / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: what deploying and calling it needs, and how it was built."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, Any]
    source_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "contractName": self.contract_name,
            "abi": self.abi,
            "bytecode": self.bytecode,
            "deployedBytecode": self.deployed_bytecode,
            "compiler": self.compiler,
            "sourceHash": self.source_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            contract_name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            compiler=data["compiler"],
            source_hash=data["sourceHash"],
        )


def project_root() -> Path:
    """The source checkout holding ``contracts/`` (compiling needs one; using the artifact does not)."""
    return Path(os.environ.get("PAYCHAN_ROOT", PACKAGE_DIR.parent)).resolve()


def solc_binary(root: Path | None = None) -> Path:
    """The solc wrapper for the pinned compiler version."""
    return (root or project_root()) / "bin" / f"solc-v{SOLC_VERSION}"


def compiler_settings() -> dict[str, Any]:
    """The Standard JSON settings every compile uses (the same as ape-config.yaml)."""
    return {
        "remappings": list(REMAPPINGS),
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        "viaIR": VIA_IR,
        "evmVersion": EVM_VERSION,
        "outputSelection": {
            "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]},
        },
    }


def source_files(root: Path, include_test: bool = False) -> list[Path]:
    """The Solidity sources under ``contracts/`` (``contracts/test`` only when asked)."""
    files = sorted((root / "contracts").glob("*.sol"))
    if include_test:
        files += sorted((root / "contracts" / "test").glob("*.sol"))
    return files


def hash_sources(root: Path, files: list[Path]) -> str:
    """sha256 over the relative paths and contents of ``files``."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def compile_contracts(
    root: Path | None = None, include_test: bool = False, only: Sequence[str] = ()
) -> dict[str, Artifact]:
    """Compiles ``contracts/`` and returns an artifact per contract name; ``only``: just these sources
    (paths relative to the root, e.g. ``contracts/test/OwnedWallet1271.sol``), with what they import."""
    import solcx

    root = root or project_root()
    files = [root / name for name in only] if only else source_files(root, include_test)
    if not files:
        raise FileNotFoundError(f"no Solidity sources in {root / 'contracts'} (compiling needs a source checkout)")
    if not solc_binary(root).exists():
        raise FileNotFoundError(f"no compiler at {solc_binary(root)}: run ./setup.sh in the source checkout")
    sources = {f.relative_to(root).as_posix(): {"content": f.read_text()} for f in files}
    settings = compiler_settings()
    output = solcx.compile_standard(
        {"language": "Solidity", "sources": sources, "settings": settings},
        solc_binary=solc_binary(root),
        base_path=str(root),
        allow_paths=[str(root)],
    )
    source_hash = hash_sources(root, source_files(root))
    artifacts: dict[str, Artifact] = {}
    for path, contracts in output["contracts"].items():
        if path not in sources:
            continue  # library files (solady) are compiled in, not deployed
        for name, data in contracts.items():
            artifacts[name] = Artifact(
                contract_name=name,
                abi=data["abi"],
                bytecode="0x" + data["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + data["evm"]["deployedBytecode"]["object"],
                compiler={
                    "solc": SOLC_VERSION,
                    "settings": {k: v for k, v in settings.items() if k != "outputSelection"},
                },
                source_hash=source_hash,
            )
    return artifacts


def artifact_path(name: str = MAIN_CONTRACT) -> Path:
    return ARTIFACT_DIR / f"{name}.json"


def write_artifact(artifact: Artifact) -> Path:
    """Writes ``artifact`` into the package (what ``paychan compile`` ships)."""
    path = artifact_path(artifact.contract_name)
    path.write_text(json.dumps(artifact.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def load_artifact(name: str = MAIN_CONTRACT) -> Artifact:
    """The shipped artifact of contract ``name``."""
    return Artifact.from_json(json.loads(artifact_path(name).read_text()))
