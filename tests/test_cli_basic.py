"""The ``paychan`` command line: help, ``compile --check``, and errors as one line with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paychan import cli
from paychan.exceptions import UnknownChannel

PAYCHAN = [str(Path(sys.executable).with_name("paychan"))]  # the installed console script


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PAYCHAN, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("paychan: error:")]


def test_help_lists_the_subcommands_and_exits_zero():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: paychan")
    assert "compile" in result.stdout
    assert result.stderr == ""


def test_compile_check_confirms_the_shipped_artifact_is_current():
    result = _run("compile", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PaymentChannels: shipped artifact is current" in result.stdout
    assert "Traceback" not in result.stderr


def test_an_unknown_command_is_one_error_line_and_a_non_zero_exit():
    result = _run("frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (error,) = _error_lines(result.stderr)
    assert "invalid choice: 'frobnicate'" in error


@pytest.mark.parametrize(
    ("argv", "message"),
    [([], "required: COMMAND"), (["compile", "--frobnicate"], "--frobnicate"), (["frobnicate"], "invalid choice")],
    ids=["no-command", "unknown-option", "unknown-command"],
)
def test_bad_usage_in_process_is_one_error_line_and_exit_two(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (error,) = _error_lines(captured.err)
    assert message in error


def test_compiling_outside_a_source_checkout_is_one_error_line(tmp_path):
    result = _run("compile", "--check", env={"PAYCHAN_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    (error,) = _error_lines(result.stderr)
    assert "no Solidity sources" in error
    assert "Traceback" not in result.stderr


def test_a_paychan_error_in_a_command_prints_one_line_and_exits_one(monkeypatch, capsys):
    def failing(args):
        raise UnknownChannel("no channel 0x1234 on 0xabcd")

    monkeypatch.setattr("paychan.cli.build.run_compile", failing)
    assert cli.main(["compile"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "paychan: error: no channel 0x1234 on 0xabcd\n"


def test_a_value_error_in_a_command_is_one_line_naming_its_type(monkeypatch, capsys):
    def failing(args):
        raise ValueError("bad amount")

    monkeypatch.setattr("paychan.cli.build.run_compile", failing)
    assert cli.main(["compile"]) == 1
    assert capsys.readouterr().err == "paychan: error: ValueError: bad amount\n"


def test_main_returns_the_commands_exit_code(monkeypatch):
    monkeypatch.setattr("paychan.cli.build.run_compile", lambda args: 3)
    assert cli.main(["compile"]) == 3


@pytest.mark.parametrize(("argv", "expected"), [(["--help"], "compile"), (["compile", "--help"], "--check")])
def test_help_in_process_exits_zero(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: paychan")
    assert expected in out
