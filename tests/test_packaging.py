"""The package as users get it: a wheel with its types (PEP 561) and its contract artifact.

A wheel is built from the checkout and installed (not editable) into an empty interpreter environment; mypy,
pointed at that environment, must find paychan's own types: it accepts correct code and reports a type error
in wrong code, which it could not do without ``py.typed``.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
from paychan import format_amount, parse_amount, ChannelParams
wei: int = parse_amount("1ether")
text: str = format_amount(wei)
"""
BAD = """
from paychan import parse_amount
text: str = parse_amount("1ether")
"""


def test_mypy_finds_paychans_types_from_an_installed_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("paychan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "paychan/py.typed" in names and "paychan/artifacts/PaymentChannels.json" in names
    assert not any(name.startswith(("tests/", "contracts/test/")) for name in names)

    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    site = next((env / "lib").glob("python3*/site-packages"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert not list(site.glob("__editable__*")) and (site / "paychan" / "py.typed").exists()

    def mypy(code: str) -> subprocess.CompletedProcess[str]:
        source = tmp_path / "user.py"
        source.write_text(code)
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--python-executable", str(env / "bin" / "python"), "--no-incremental",
             "--follow-imports=silent", "--ignore-missing-imports", str(source)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip

    good = mypy(GOOD)
    assert good.returncode == 0, good.stdout
    bad = mypy(BAD)
    assert bad.returncode == 1
    assert 'Incompatible types in assignment (expression has type "int", variable has type "str")' in bad.stdout
