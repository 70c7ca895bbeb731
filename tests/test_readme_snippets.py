"""The README's signer snippets cannot rot: the ```python block of its "A channel driven by an ERC-1271
wallet" section (``<!-- wallet1271:start -->`` ... ``<!-- wallet1271:end -->``) and of its "States signed
by an Ape account" section (``ape-signer``) each run as a script, in a scratch directory, with this
checkout's ``paychan`` (and Ape's data folder there too), and must print exactly the ```text block quoted
after them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_docs import README, ROOT, VENV_PYTHON, readme_block

SNIPPETS = {
    "wallet1271": "### A channel driven by an ERC-1271 wallet",
    "ape-signer": "### States signed by an Ape account",
}


def snippet(name: str) -> tuple[str, list[str]]:
    """The code of the README block ``name`` and the lines it quotes as printed."""
    block = readme_block(name)
    assert block.lstrip().startswith(SNIPPETS[name]), f"README.md's {name} block should open with {SNIPPETS[name]!r}"
    code = re.search(r"^```python\n(.*?)^```\n", block, flags=re.S | re.M)
    assert code, f"README.md's {name} block has no ```python block"
    printed = re.search(r"^```text\n(.*?)^```", block[code.end() :], flags=re.S | re.M)
    assert printed, f"README.md's {name} block quotes no output (a ```text block after the code)"
    return code.group(1), printed.group(1).splitlines()


def test_each_signer_section_of_the_readme_is_short_and_under_the_python_heading() -> None:
    text = README.read_text()
    python_section = text.split("\n## Use it from Python\n", 1)[1].split("\n## ", 1)[0]
    for name in SNIPPETS:
        block = readme_block(name)
        assert block in python_section, f"the {name} block belongs under 'Use it from Python'"
        code, printed = snippet(name)
        assert 10 <= len(code.splitlines()) <= 20, f"README.md's {name} snippet should stay 10-20 lines"
        assert printed, name


@pytest.mark.parametrize("name", list(SNIPPETS))
def test_the_readmes_signer_snippet_runs_and_prints_the_lines_it_quotes(name: str, tmp_path: Path) -> None:
    code, printed = snippet(name)
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "APE_DATA_FOLDER": str(tmp_path / "ape-data"),
    }
    result = subprocess.run(
        [str(python), str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"README.md's {name} snippet exited {result.returncode}:\n{result.stderr[-4000:]}"
    assert result.stdout.splitlines() == printed, f"README.md quotes {printed}, the snippet printed:\n{result.stdout}"
