"""``paychan --version`` and ``paychan.__version__``, and the command line's last line of defence: whatever
goes wrong prints one line, never a traceback."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import paychan
from paychan import cli
from paychan.exceptions import PaychanError

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_version_is_the_installed_distributions() -> None:
    assert paychan.__version__ == importlib.metadata.version("paychan") == PYPROJECT_VERSION


def test_the_package_version_falls_back_to_pyproject_when_paychan_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert paychan._version() == PYPROJECT_VERSION


def test_version_prints_paychan_and_its_version_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"paychan {PYPROJECT_VERSION}\n"


def test_the_installed_console_script_prints_its_version() -> None:
    script = Path(sys.executable).with_name("paychan")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"paychan {PYPROJECT_VERSION}\n", "")


def parser_running(func: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paychan")
    parser.set_defaults(func=func)
    return parser


def test_an_unexpected_exception_is_one_error_line_naming_it_with_exit_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("channels")

    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(broken))
    assert cli.main([]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "paychan: error: unexpected KeyError: 'channels' (a bug in paychan; PAYCHAN_TRACEBACK=1 shows where)\n"
    )


def test_an_unexpected_exception_is_raised_when_a_traceback_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(broken))
    with pytest.raises(RuntimeError, match="boom"):
        cli.main([])


def test_a_failing_subcommand_import_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unbuildable() -> argparse.ArgumentParser:
        raise ImportError("cannot import name 'DEFAULT_DIRECTORY' from 'paychan.deployments'")

    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    monkeypatch.setattr(cli, "build_parser", unbuildable)
    assert cli.main([]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("paychan: error: unexpected ImportError: cannot import name 'DEFAULT_DIRECTORY'")


def test_an_error_message_of_several_lines_prints_as_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(args: argparse.Namespace) -> int:
        raise PaychanError("the node refused:\n  channel unknown\n")

    monkeypatch.setattr(cli, "build_parser", lambda: parser_running(failing))
    assert cli.main([]) == 1
    assert capsys.readouterr().err == "paychan: error: the node refused: channel unknown\n"
