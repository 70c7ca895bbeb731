"""The docs cannot drift from the code: every command the guide and the README show is run, and its output
must still contain every line they quote.

Convention (docs/guide.md, and the README's guide, demo and troubleshooting blocks): a fenced ```console
block holds commands as ``$ paychan ...`` lines, each followed by the lines of its output the docs quote.
A quoted line must appear in the command's output (stdout + stderr), in the order quoted, with runs of
spaces compared as one space. ``...`` alone on a line marks omitted output. A token in angle brackets
(``<address>``, ``<hash>``, ``<gas>``, ``<wei>``, ``<eth>``, ``<timestamp>``) stands for one word that changes
from run to run or from one contract build to the next, so the docs never quote those values. A command
whose quoted output is a ``paychan: error:`` line must exit non-zero; every other command must exit 0.

Commands run on the embedded chain (no network servers), in a scratch directory (so ``--plot
docs/balances.png`` does not touch the repository), all at once and each once however often it is quoted.
"""

from __future__ import annotations

import json
import re
import shlex
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from paychan.chain import embedded_chain
from paychan.cli import main
from paychan.demo import run_cooperative, run_dispute
from paychan.ledger import WEI_PER_ETH, Ledger
from paychan.plot import draw_balances

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
README = ROOT / "README.md"
PICTURE = "docs/balances.png"
README_BLOCKS = ("guide", "demo", "troubleshooting")  # the README blocks these docs own
PLACEHOLDER = re.compile(r"<[a-z][a-z0-9_-]*>")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- extracting the commands the docs show ----------------------------------------------------------


@dataclass(frozen=True)
class Quoted:
    """One ``$ paychan ...`` command shown in the docs and the output lines quoted under it."""

    source: str
    command: str
    lines: tuple[str, ...]

    @property
    def expects_error(self) -> bool:
        return any(line.startswith("paychan: error:") for line in self.lines)


def console_blocks(text: str) -> list[str]:
    return re.findall(r"^```console\n(.*?)^```", text, flags=re.S | re.M)


def quoted_commands(text: str, source: str) -> list[Quoted]:
    found: list[Quoted] = []
    for block in console_blocks(text):
        command: str | None = None
        lines: list[str] = []
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("$ "):
                if command is not None:
                    found.append(Quoted(source, command, tuple(lines)))
                command, lines = line[2:].strip(), []
            elif line and line != "...":
                if command is None:
                    raise AssertionError(f"{source}: output line before any `$ paychan` command: {raw!r}")
                lines.append(line)
        if command is not None:
            found.append(Quoted(source, command, tuple(lines)))
    return found


def readme_block(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", text, flags=re.S)
    assert match, f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return match.group(1)


def all_quoted() -> list[Quoted]:
    quoted = quoted_commands(GUIDE.read_text(), "docs/guide.md")
    for name in README_BLOCKS:
        quoted += quoted_commands(readme_block(name), f"README.md ({name} block)")
    return quoted


def line_pattern(line: str) -> re.Pattern[str]:
    """A quoted line as a regex: placeholders match one word, runs of spaces any run of spaces."""
    words = []
    for word in line.split():
        pieces = PLACEHOLDER.split(word)
        words.append(r"\S+".join(re.escape(piece) for piece in pieces))
    return re.compile(r"[ \t]+".join(words))


def missing_lines(output: str, lines: tuple[str, ...]) -> list[str]:
    """The quoted lines not found in ``output`` (each searched after the previous one's match)."""
    missing, position = [], 0
    for line in lines:
        match = line_pattern(line).search(output, position)
        if match is None:
            missing.append(line)
        else:
            position = match.end()
    return missing


# --- running them ---------------------------------------------------------------------------------


RUNNER = "import sys; from paychan.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


@pytest.fixture(scope="module")
def command_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Runs every distinct command the docs show, concurrently, in a scratch directory."""
    workdir = tmp_path_factory.mktemp("docs-commands")
    commands = sorted({q.command for q in all_quoted()})
    processes = {}
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "paychan", f"the docs may only show paychan commands, not {command!r}"
        processes[command] = subprocess.Popen(
            [sys.executable, "-c", RUNNER, *argv[1:]],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    runs = {}
    for command, process in processes.items():
        output, _ = process.communicate(timeout=240)
        runs[command] = Run(process.returncode, output)
    runs["__workdir__"] = Run(0, str(workdir))
    return runs


# --- the convention itself --------------------------------------------------------------------------


def test_a_quoted_line_matches_despite_padding_and_placeholders_but_not_other_text():
    output = "  deploy PaymentChannels      sent by deployer   gas 1,454,928  fee 2,727,990 wei (block 1)\n"
    assert missing_lines(output, ("deploy PaymentChannels sent by deployer gas <gas> fee <wei> wei (block 1)",)) == []
    assert missing_lines(output, ("deploy PaymentChannels sent by alice gas <gas>",)) != []
    assert missing_lines(output, ("gas <gas> fee <wei> wei (block 2)",)) != []
    assert missing_lines("b\na\n", ("a", "b")) == ["b"], "quoted lines must appear in the order quoted"


def test_console_blocks_split_into_commands_and_their_quoted_lines():
    text = 'x\n```console\n$ paychan demo\n  a  b\n...\nc\n$ paychan demo --json\n"d": 1\n```\n'
    assert quoted_commands(text, "t") == [
        Quoted("t", "paychan demo", ("a  b", "c")),
        Quoted("t", "paychan demo --json", ('"d": 1',)),
    ]


# --- the balance chart --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledgers() -> list[Ledger]:
    chain = embedded_chain(accounts=3)
    cooperative = run_cooperative(chain, payments=4)
    from paychan.contract import PaychanContract

    return [cooperative, run_dispute(chain, PaychanContract(chain, cooperative.contract))]


def test_the_chart_draws_each_partys_channel_balance_at_every_step_of_both_lifecycles(ledgers):
    fig = draw_balances(ledgers)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [ledger.title for ledger in ledgers]
    for ax, ledger in zip(axes, ledgers, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        for name, party in ledger.parties.items():
            line = lines[f"{name} ({party.role})"]
            expected = [(p.balance_a if party.role == "A" else p.balance_b) / WEI_PER_ETH for p in ledger.timeline]
            assert list(line.get_ydata()) == expected
        labels = [tick.get_text() for tick in ax.get_xticklabels()]
        assert labels == [p.step for p in ledger.timeline]
    dispute_steps = [p.step for p in ledgers[1].timeline]
    assert dispute_steps[-3:] == ["close (nonce 1)", "challenge (nonce 4)", "settled"]
    assert dispute_steps[:2] == ["alice deposits", "bob deposits"]


def test_paychan_demo_plot_writes_a_valid_png_and_keeps_json_output_clean(tmp_path, capsys):
    target = tmp_path / "new-dir" / "balances.png"
    assert main(["demo", "--json", "--payments", "2", "--plot", str(target)]) == 0
    captured = capsys.readouterr()
    assert [ledger["title"] for ledger in json.loads(captured.out)][1] == "Dispute: a stale close beaten by a challenge"
    assert f"wrote the balance chart to {target}" in captured.err
    width, height = png_size(target.read_bytes())
    assert width > 800 and height > 600


def png_size(data: bytes) -> tuple[int, int]:
    """Checks the PNG structure (signature, chunk CRCs, IHDR first, IEND last); returns its size."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    assert any(kind == b"IDAT" for kind, _ in chunks)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return width, height
