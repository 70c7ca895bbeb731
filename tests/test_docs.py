"""The docs cannot drift from the code: every command the guide and the README show is run, and its output
must still contain every line they quote.

Convention (docs/guide.md, and the README's guide, demo and troubleshooting blocks): a fenced ```console
block holds commands as ``$ paychan ...`` (or ``$ python scripts/NAME.py ...``) lines, each followed by the
lines of its output the docs quote. A quoted line must appear in the command's output (stdout + stderr), in
the order quoted, with runs of spaces compared as one space. ``...`` alone on a line marks omitted output.
A token in angle brackets (``<address>``, ``<hash>``, ``<gas>``, ``<wei>``, ``<eth>``, ``<timestamp>``)
stands for one word that changes from run to run or from one contract build to the next, so the docs never
quote those values. A command whose quoted output is a ``paychan: error:`` line must exit non-zero; every
other command must exit 0. Commands that need a running devnet or node are shown in ```sh blocks instead:
their subcommands and options must parse, and (on anvil) they are run in order, the devnet and nodes in the
background on free ports, each other command exiting 0 and the payments arriving.

Commands run on the embedded chain (no network servers), in a scratch directory (so ``--plot
docs/balances.png`` does not touch the repository), all at once and each once however often it is quoted.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from paychan.chain import embedded_chain
from paychan.cli import main
from paychan.demo import run_cooperative, run_dispute
from paychan.devnet import free_port
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


def python_argv(command: str) -> list[str]:
    """How to run a shown command with this interpreter: ``paychan ...`` or ``python scripts/NAME.py ...``."""
    argv = shlex.split(command)
    if argv[0] == "paychan":
        return [sys.executable, "-c", RUNNER, *argv[1:]]
    if argv[0] == "python" and len(argv) > 1 and argv[1].startswith("scripts/"):
        return [sys.executable, str(ROOT / argv[1]), *argv[2:]]
    raise AssertionError(f"the docs may only show `paychan ...` or `python scripts/...` commands, not {command!r}")


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
        processes[command] = subprocess.Popen(
            python_argv(command),
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


# --- the docs against the code ------------------------------------------------------------------------

QUESTIONS = (
    "How is a channel opened?",
    "Whose signatures does it need?",
    "Who locks up funds?",
    'How is the deposit "spent"?',
    "Do both sides pay fees?",
    "What does each off-chain payment cost?",
    "How can the channel be closed, and by whom?",
    "What is left of the deposit at the end, and who earned the part that is gone?",
    "Is a payment channel a smart contract?",
)

# Each flow's diagram must show the calls that make it.
FLOWS = {
    "open and fund": ("open(", "deposit(", "ChannelOpened", "Deposited"),
    "off-chain payment": ("propose_payment", "receive_proposal", "receive_countersignature"),
    "cooperative close": ("propose_final", "cooperativeClose(", "ChannelSettled(cooperative true)"),
    "unilateral close with a challenge": ("close(", "ChannelClosed", "challenge(", "ChallengeAccepted"),
    "settle": ("settle(", "ChannelSettled(cooperative false)", "claim("),
}

DEFINITION = {
    ".sol": r"\b(?:function|event|error|struct|modifier)\s+{name}\b",
    ".py": r"(?:\b(?:def|class)\s+{name}\b|^{name}\s*[:=])",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def guide_sections() -> dict[str, str]:
    """The guide's level-2 sections by heading."""
    parts = re.split(r"^## (.+)$", GUIDE.read_text(), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def code_references(text: str) -> list[tuple[str, str]]:
    """Markdown links whose text is a code name in backticks: (name, link target)."""
    links = re.findall(r"\[`([A-Za-z_][\w.]*)`\]\(([^)#]+)\)", text)
    return [(name, target) for name, target in links if name != Path(target).name]  # not a link to a file


def quoted_ids() -> list[str]:
    return [f"{q.source} `{q.command}` #{i}" for i, q in enumerate(all_quoted())]


@pytest.mark.parametrize("index", range(len(all_quoted())), ids=quoted_ids())
def test_every_command_the_docs_show_still_prints_the_lines_they_quote(index, command_runs):
    quoted = all_quoted()[index]
    run = command_runs[quoted.command]
    if quoted.expects_error:
        assert run.returncode != 0, f"`{quoted.command}` was shown failing but exited 0:\n{run.output}"
    else:
        assert run.returncode == 0, f"`{quoted.command}` exited {run.returncode}:\n{run.output[-3000:]}"
    missing = missing_lines(run.output, quoted.lines)
    assert not missing, (
        f"{quoted.source}: the output of `{quoted.command}` no longer contains (in this order):\n  "
        + "\n  ".join(missing)
        + f"\n--- its output ---\n{run.output[-6000:]}"
    )


def test_the_guide_answers_every_newcomer_question_with_a_command_its_output_and_the_code():
    sections = guide_sections()
    for question in QUESTIONS:
        assert question in sections, f"docs/guide.md has no section '## {question}'"
        body = sections[question]
        quoted = quoted_commands(body, question)
        assert quoted and all(q.lines for q in quoted), f"'{question}' shows no command with quoted output"
        assert code_references(body), f"'{question}' names no contract or Python function"


def test_every_function_the_guide_names_exists_where_it_points():
    references = code_references(GUIDE.read_text())
    assert len(references) > 30
    for name, target in references:
        path = (GUIDE.parent / target).resolve()
        assert path.is_file(), f"docs/guide.md links `{name}` to {target}, which does not exist"
        pattern = DEFINITION[path.suffix].format(name=re.escape(name.split(".")[-1]))
        assert re.search(pattern, path.read_text(), flags=re.M), f"`{name}` is not defined in {target}"


def test_the_guide_has_a_mermaid_sequence_diagram_for_each_of_the_five_flows():
    diagrams = re.findall(r"^```mermaid\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)
    assert all(d.startswith("sequenceDiagram\n") for d in diagrams)
    for flow, calls in FLOWS.items():
        assert any(all(call in d for call in calls) for d in diagrams), f"no diagram shows {flow}: {calls}"
    for diagram in diagrams:
        for line in diagram.splitlines():
            assert ";" not in line and "#" not in line, f"Mermaid treats ; and # specially: {line!r}"


def test_the_guide_anchors_it_links_to_exist():
    text = GUIDE.read_text()
    anchors = {slug(h) for h in re.findall(r"^#{1,4} (.+)$", text, flags=re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"docs/guide.md links #{anchor}, which no heading makes"


def test_the_readme_links_each_question_of_the_guide_and_embeds_the_balance_picture():
    anchors = {slug(h) for h in re.findall(r"^#{1,4} (.+)$", GUIDE.read_text(), flags=re.M)}
    guide_block = readme_block("guide")
    linked = re.findall(r"\]\(docs/guide\.md#([^)]+)\)", guide_block)
    assert {slug(q) for q in QUESTIONS} <= set(linked), "the README's guide block must link every question"
    assert set(linked) <= anchors, f"README links anchors the guide lacks: {set(linked) - anchors}"
    readme = README.read_text()
    assert readme.index("<!-- guide:start -->") < readme.index("<!-- gas:start -->"), "guide link on the first screen"
    assert re.search(rf"!\[[^\]]+\]\({re.escape(PICTURE)}\)", readme_block("demo")), "README must embed the chart"
    png_size((ROOT / PICTURE).read_bytes())


def test_the_committed_balance_picture_is_what_paychan_demo_plot_draws_today(command_runs):
    from matplotlib import image

    command = f"paychan demo --plot {PICTURE}"
    assert command in command_runs, f"the guide must show `{command}`"
    fresh = Path(command_runs["__workdir__"].output) / PICTURE
    committed, drawn = image.imread(ROOT / PICTURE), image.imread(fresh)
    assert committed.shape == drawn.shape, f"regenerate {PICTURE} with `{command}`"
    assert abs(committed - drawn).mean() < 0.002, f"{PICTURE} is out of date: regenerate it with `{command}`"


def shell_commands(text: str) -> list[str]:
    """``paychan``/``python scripts/`` lines of the guide's ```sh blocks: shown, but needing a running node."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    return commands


def test_the_commands_the_guide_shows_for_a_running_node_exist_with_those_options():
    """They need a node (run by the test above, on anvil); here, with no server: they must parse, their
    scripts exist."""
    from paychan.cli import build_parser

    commands = shell_commands(GUIDE.read_text())
    assert any(c.startswith("paychan devnet") for c in commands)
    parser = build_parser()
    for command in commands:
        argv = python_argv(command)
        if argv[1] == "-c":
            try:
                parser.parse_args(argv[3:])
            except SystemExit:
                pytest.fail(f"docs/guide.md shows {command!r}, which `paychan` no longer accepts")
        else:
            assert Path(argv[1]).is_file(), f"docs/guide.md shows {command!r}, but there is no {argv[1]}"


def readme_keystore_commands() -> list[tuple[dict[str, str], str]]:
    """The README node block's ``K1=0x... paychan keystore ...`` lines: (environment, command)."""
    found = []
    for line in readme_block("node").splitlines():
        match = re.match(r"^(K\d)=(0x[0-9a-fA-F]{64}) \.venv/bin/(paychan keystore .*)$", line.split("  #")[0].strip())
        if match:
            found.append(({match.group(1): match.group(2)}, match.group(3)))
    return found


def on_free_ports(command: str, ports: dict[str, int]) -> str:
    """``command`` with the guide's fixed ports (8545 anvil, 9735/9736 the nodes) replaced by free ones."""
    for fixed, free in ports.items():
        command = re.sub(rf"\b{fixed}\b", str(free), command)
    if command.startswith("paychan devnet") and "--port" not in command:
        command += f" --port {ports['8545']}"
    return command


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited early: {process.stdout.read() if process.stdout else ''}")
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not come up in {timeout}s")


@pytest.mark.anvil
def test_the_commands_the_guide_shows_for_a_running_node_run_in_order_and_pay(tmp_path: Path) -> None:
    """The guide's ```sh blocks, as a reader runs them: a devnet, the demo and a script on it, then two
    nodes (keystores made as the README shows) driven by open, pay, status and close. Servers run in the
    background on free ports and are stopped by their PID; every other command must exit 0."""
    ports = {"8545": free_port(), "9735": free_port(), "9736": free_port()}
    env = {**os.environ, "PAYCHAN_DEPLOYMENTS": str(tmp_path / "deployments"), "PAYCHAN_PASSWORD": "guide"}
    servers: list[subprocess.Popen[str]] = []
    outputs: dict[str, str] = {}
    keystores = readme_keystore_commands()
    assert len(keystores) == 2, "the README's node block must show how to make alice's and bob's keystores"
    for extra, keystore in keystores:
        made = subprocess.run(
            python_argv(keystore), cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True,
            timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    try:
        for shown in shell_commands(GUIDE.read_text()):
            command = on_free_ports(shown, ports)
            argv = python_argv(command)
            if shown.startswith(("paychan devnet", "paychan node")):
                server = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                servers.append(server)
                if shown.startswith("paychan devnet"):
                    record = tmp_path / "deployments" / "31337.json"
                    wait_for(record.exists, server, command)
                else:
                    words = shlex.split(command)
                    db = words[words.index("--db") + 1]
                    wait_for((tmp_path / f"{db}.control.json").exists, server, command)
                continue
            result = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
            )
            assert result.returncode == 0, f"{shown!r} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"
            outputs[shown] = result.stdout + result.stderr
    finally:
        for server in reversed(servers):
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    status = next(output for shown, output in outputs.items() if shown.startswith("paychan status"))
    assert "nonce 10" in status, status
    closed = next(output for shown, output in outputs.items() if shown.startswith("paychan close"))
    assert "nonce 11" in closed, closed


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
