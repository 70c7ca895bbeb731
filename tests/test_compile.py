"""The artifact shipped in the package is exactly what compiling contracts/ gives, and stops being so when
the source changes."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from paychan import cli
from paychan.compile import (
    ARTIFACT_DIR,
    EVM_VERSION,
    MAIN_CONTRACT,
    OPTIMIZER_RUNS,
    SOLC_VERSION,
    compile_contracts,
    hash_sources,
    load_artifact,
    project_root,
    source_files,
)

ROOT = project_root()
CHANGE = ("PAYOUT_GAS = 100_000;", "PAYOUT_GAS = 100_001;")


def _copy_checkout(destination: Path) -> Path:
    """A minimal checkout to compile from: contracts/ copied, the compiler and node_modules linked."""
    shutil.copytree(ROOT / "contracts", destination / "contracts")
    (destination / "bin").symlink_to(ROOT / "bin")
    (destination / "node_modules").symlink_to(ROOT / "node_modules")
    return destination


@pytest.fixture(scope="module")
def modified_artifact(tmp_path_factory):
    """A fresh compile of a copy of contracts/ where one constant of the main contract changed."""
    root = _copy_checkout(tmp_path_factory.mktemp("modified"))
    source = root / "contracts" / f"{MAIN_CONTRACT}.sol"
    text = source.read_text()
    assert CHANGE[0] in text
    source.write_text(text.replace(CHANGE[0], CHANGE[1]))
    return compile_contracts(root)[MAIN_CONTRACT]


def test_the_shipped_artifact_equals_a_fresh_compile(artifacts):
    shipped, fresh = load_artifact(), artifacts[MAIN_CONTRACT]
    assert shipped.contract_name == fresh.contract_name == MAIN_CONTRACT
    assert shipped.abi == fresh.abi
    assert shipped.bytecode == fresh.bytecode, "run `paychan compile` and commit the artifact"
    assert shipped.deployed_bytecode == fresh.deployed_bytecode
    assert shipped.compiler == fresh.compiler
    assert shipped.source_hash == fresh.source_hash
    assert shipped == fresh


def test_the_shipped_artifact_records_the_pinned_compiler_settings():
    compiler = load_artifact().compiler
    assert compiler["solc"] == SOLC_VERSION == "0.8.30"
    settings = compiler["settings"]
    assert settings["evmVersion"] == EVM_VERSION == "prague"
    assert settings["optimizer"] == {"enabled": True, "runs": OPTIMIZER_RUNS}
    assert settings["remappings"] == ["solady/=node_modules/solady/src/"]


def test_every_contract_pins_the_compiler_version_the_build_uses():
    for path in source_files(ROOT, include_test=True):
        pragma = re.search(r"pragma solidity ([^;]+);", path.read_text())
        assert pragma is not None and pragma.group(1) == SOLC_VERSION, path.name


def test_the_shipped_source_hash_is_the_hash_of_contracts_today():
    assert load_artifact().source_hash == hash_sources(ROOT, source_files(ROOT))


def test_the_shipped_artifact_holds_no_test_contract(artifacts):
    assert sorted(p.name for p in ARTIFACT_DIR.glob("*.json")) == [f"{MAIN_CONTRACT}.json"]
    assert {"TestToken", "RejectingReceiver"} <= set(artifacts)  # compiled for the tests only
    assert not any(p.is_relative_to(ROOT / "contracts" / "test") for p in source_files(ROOT))


def test_the_source_hash_changes_with_any_source_byte_or_file_name(tmp_path):
    root = _copy_checkout(tmp_path)
    files = source_files(root)
    assert hash_sources(root, files) == hash_sources(ROOT, source_files(ROOT))
    main = root / "contracts" / f"{MAIN_CONTRACT}.sol"
    main.write_text(main.read_text() + " ")
    assert hash_sources(root, files) != load_artifact().source_hash
    renamed = root / "contracts" / "Renamed.sol"
    main.write_text((ROOT / "contracts" / f"{MAIN_CONTRACT}.sol").read_text())
    main.rename(renamed)
    assert hash_sources(root, source_files(root)) != load_artifact().source_hash


def test_a_changed_source_compiles_to_an_artifact_that_differs_from_the_shipped_one(modified_artifact):
    shipped = load_artifact()
    assert modified_artifact != shipped
    assert modified_artifact.bytecode != shipped.bytecode
    assert modified_artifact.deployed_bytecode != shipped.deployed_bytecode
    assert modified_artifact.source_hash != shipped.source_hash
    assert modified_artifact.abi == shipped.abi  # only a constant's value changed
    assert modified_artifact.compiler == shipped.compiler


def test_compile_check_fails_when_the_source_changed(modified_artifact, monkeypatch, capsys):
    monkeypatch.setattr("paychan.compile.compile_contracts", lambda *a, **k: {MAIN_CONTRACT: modified_artifact})
    assert cli.main(["compile", "--check"]) == 1
    out = capsys.readouterr()
    assert "differs from a fresh compile" in out.out + out.err


def test_compile_check_fails_when_only_the_source_hash_differs(artifacts, monkeypatch, capsys):
    stale = replace(artifacts[MAIN_CONTRACT], source_hash="0" * 64)
    monkeypatch.setattr("paychan.compile.compile_contracts", lambda *a, **k: {MAIN_CONTRACT: stale})
    assert cli.main(["compile", "--check"]) == 1


def test_compile_check_passes_for_the_fresh_compile(artifacts, monkeypatch, capsys):
    monkeypatch.setattr("paychan.compile.compile_contracts", lambda *a, **k: {MAIN_CONTRACT: artifacts[MAIN_CONTRACT]})
    assert cli.main(["compile", "--check"]) == 0
    assert "shipped artifact is current" in capsys.readouterr().out
