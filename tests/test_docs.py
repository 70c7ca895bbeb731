"""The docs cannot drift from the code: every command the README and the pages under docs/ show is run, and
its output must still contain every line they quote; the README's Python example is run; the gas and
throughput figures they quote are the benchmarks' results; every link between them resolves.

Convention (README.md and every docs/*.md page): a fenced ```console block holds commands as
``$ paychan ...`` (or ``$ python scripts/NAME.py ...``) lines, each followed by the lines of its output the
docs quote. A quoted line must appear in the command's output (stdout + stderr), in
the order quoted, with runs of spaces compared as one space. ``...`` alone on a line marks omitted output.
A token in angle brackets (``<address>``, ``<hash>``, ``<gas>``, ``<wei>``, ``<eth>``, ``<timestamp>``)
stands for one word that changes from run to run or from one contract build to the next, so the docs never
quote those values. A command whose quoted output is a ``paychan: error:`` line must exit non-zero; every
other command must exit 0. Commands that need a running devnet or node are shown in ```sh blocks instead
(the guide's and the README's): their subcommands and options must parse, and (on anvil) each page's are run
in order, the devnet and nodes in the background on free ports, each other command exiting 0 and the
payments arriving. In a ```sh block a command may be written ``.venv/bin/paychan ...``, start with
``NAME=value`` assignments or end in `` &``; an ``export NAME=value`` line sets NAME for the lines after it.

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

from benchmarks.gas import RESULTS_PATH as GAS_RESULTS
from benchmarks.gas import readme_block as gas_page_block
from paychan.chain import embedded_chain
from paychan.cli import main
from paychan.demo import TITLES, run_cooperative, run_dispute
from paychan.devnet import free_port
from paychan.ledger import WEI_PER_ETH, Ledger
from paychan.plot import draw_balances
from paychan.state import Withdrawal

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide.md"
README = ROOT / "README.md"
GAS_PAGE = ROOT / "docs" / "gas.md"
NODE_PAGE = ROOT / "docs" / "node.md"
OFFCHAIN_RESULTS = ROOT / "benchmarks" / "results" / "offchain.json"
PICTURE = "docs/balances.png"
PYTHON_HEADING = "## Use it from Python"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
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


def marked_block(name: str, path: Path = README) -> str:
    """The text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in ``path``."""
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", path.read_text(), flags=re.S)
    assert match, f"{path.relative_to(ROOT)} has no <!-- {name}:start --> ... <!-- {name}:end --> block"
    return match.group(1)


def readme_block(name: str) -> str:
    return marked_block(name, README)


def doc_pages() -> list[Path]:
    """Every page whose commands are checked: the guide first, the README, then the other docs/ pages."""
    others = sorted(path for path in (ROOT / "docs").glob("*.md") if path != GUIDE)
    return [GUIDE, README, *others]


def all_quoted() -> list[Quoted]:
    quoted: list[Quoted] = []
    for page in doc_pages():
        quoted += quoted_commands(page.read_text(), str(page.relative_to(ROOT)))
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
    "How do I take money out without closing?",
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


# The answers about contract v2 (a penalty, the one contract, a withdrawal): their figures come from a real
# demo run, never from the test.
V2_ANSWERS = (
    "How do I take money out without closing?",
    "What is left of the deposit at the end, and who earned the part that is gone?",
    "Is a payment channel a smart contract?",
)
ETH_FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) ETH\b")


def prose(text: str) -> str:
    """``text`` without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("question", V2_ANSWERS)
def test_every_eth_figure_a_v2_answer_names_is_in_the_demo_output_it_quotes(question, command_runs):
    """Each ``N ETH`` the answer's text names is in the lines of ``paychan demo`` it quotes, and those lines
    are in today's run of it (in order): the text's figures are the demo's."""
    body = guide_sections()[question]
    quoted = [q for q in quoted_commands(body, question) if q.command == "paychan demo"]
    assert quoted, f"'{question}' quotes no `paychan demo` output"
    run = command_runs["paychan demo"]
    for q in quoted:
        assert not missing_lines(run.output, q.lines), f"'{question}' quotes lines `paychan demo` no longer prints"
    shown = " ".join(" ".join(line.split()) for q in quoted for line in q.lines)
    for figure in sorted(set(ETH_FIGURE.findall(prose(body)))):
        assert re.search(rf"(?<![\w.]){re.escape(figure)} ETH\b", shown), (
            f"'{question}' names {figure} ETH, which none of the demo output it quotes shows"
        )


WEI_FIGURE = re.compile(r"(?<![\w.])(\d+) wei\b")


def test_every_routing_fee_figure_the_cost_answer_names_is_in_the_network_demo_output_it_quotes(command_runs):
    """The answer's fees and amounts (``N wei``, ``N ETH``) are in the lines of ``paychan demo --network`` it
    quotes, and those lines are in today's run of it: the routing fees it explains are the demo's."""
    question = "What does each off-chain payment cost?"
    body = guide_sections()[question]
    quoted = [q for q in quoted_commands(body, question) if q.command == "paychan demo --network"]
    assert quoted, f"'{question}' quotes no `paychan demo --network` output"
    run = command_runs["paychan demo --network"]
    for q in quoted:
        assert not missing_lines(run.output, q.lines), f"'{question}' quotes lines the network demo no longer prints"
    shown = " ".join(" ".join(line.split()) for q in quoted for line in q.lines)
    text = prose(body)
    figures = [(f, "wei") for f in WEI_FIGURE.findall(text)] + [(f, "ETH") for f in ETH_FIGURE.findall(text)]
    assert len(figures) >= 4, f"'{question}' names no routing fee figures"
    for figure, unit in figures:
        assert re.search(rf"(?<![\w.]){re.escape(figure)} {unit}\b", shown), (
            f"'{question}' names {figure} {unit}, which none of the network demo output it quotes shows"
        )


@pytest.fixture(scope="module")
def demo_ledgers(command_runs: dict[str, Run]) -> dict[str, dict]:
    """The JSON ledgers of today's ``paychan demo --json`` run (the one the guide quotes), by scenario."""
    run = command_runs["paychan demo --json"]
    assert run.returncode == 0, run.output[-3000:]
    by_title = {ledger["title"]: ledger for ledger in json.loads(run.output)}
    return {key: by_title[title] for key, title in TITLES.items()}


def test_the_guides_one_contract_hosts_every_channel_of_the_demo(demo_ledgers):
    """ "One smart contract hosts every channel": every ledger names the same contract, each its own channel,
    as many as the channels the answer quotes being opened."""
    assert len({ledger["contract"] for ledger in demo_ledgers.values()}) == 1
    assert len({ledger["channel_id"] for ledger in demo_ledgers.values()}) == len(demo_ledgers)
    body = guide_sections()["Is a payment channel a smart contract?"]
    opened = re.findall(r"alice opened channel #(\d+)", body)
    assert sorted(map(int, opened)) == list(range(1, len(demo_ledgers) + 1))
    deployed = [tx for ledger in demo_ledgers.values() for tx in ledger["transactions"] if tx["sender"] == "deployer"]
    assert [tx["label"] for tx in deployed] == ["deploy PaymentChannels"]


def test_the_guides_penalty_answer_holds_in_the_demo_the_cheaters_deposit_went_to_the_honest_side(demo_ledgers):
    """Gas came out of each sender's wallet, the penalty out of the channel: the honest side was paid every wei
    the channel held, the cheater nothing, and each wallet moved by its channel result minus its own fees."""
    ledger = demo_ledgers["cheater"]
    (penalty,) = ledger["penalties"]
    cheater, honest = ledger["parties"][penalty["cheater"]], ledger["parties"][penalty["honest"]]
    payouts = {p["name"]: p["amount"] for p in ledger["payouts"]}
    conservation = ledger["conservation"]
    assert payouts == {penalty["cheater"]: 0, penalty["honest"]: conservation["deposited"]}
    assert cheater["channel_result"] == -cheater["deposited"] == -honest["channel_result"]
    assert conservation["deposited"] == conservation["paid_out"] and conservation["holds"]
    for party in (cheater, honest):
        assert party["fees"] > 0 and party["wallet_change"] == party["channel_result"] - party["fees"]
    newest = max(ledger["states"], key=lambda s: s["nonce"])
    assert penalty["newest_nonce"] == newest["nonce"] and penalty["closer_nonce"] < penalty["below_nonce"]
    assert penalty["forfeited"] == newest["balance_a" if cheater["role"] == "A" else "balance_b"]


def test_the_guides_withdrawal_answer_holds_in_the_demo_paid_at_once_and_the_channel_stayed_open(demo_ledgers):
    """The withdrawal both signed names the deposits it is taken from; the Withdrawn event left what
    ``Withdrawal.deposits_after`` says, the states after it split exactly that, and the channel went on."""
    ledger = demo_ledgers["withdraw"]
    (message,) = [m for m in ledger["messages"] if m["kind"] == "withdrawal"]
    m = message["message"]
    withdrawal = Withdrawal(
        bytes.fromhex(ledger["channel_id"][2:]),
        *(int(m[key]) for key in ("amountA", "amountB", "depositA", "depositB", "withdrawals", "expiry")),
    )
    (made,) = ledger["withdrawals"]
    assert (made["deposit_a"], made["deposit_b"]) == withdrawal.deposits_after()
    assert (made["deposit_a_before"], made["deposit_b_before"]) == (withdrawal.deposit_a, withdrawal.deposit_b)
    assert (made["amount_a"], made["amount_b"]) == (withdrawal.amount_a, withdrawal.amount_b)
    after = [s for s in ledger["states"] if s["withdrawals"] == withdrawal.withdrawals + 1]
    assert len(after) >= 2, "they paid again after the withdrawal"
    assert all((s["deposit_a"], s["deposit_b"]) == withdrawal.deposits_after() for s in after)
    assert ledger["states"][-1]["is_final"] and message["signed_by"] == ["alice", "bob"]
    c = ledger["conservation"]
    assert c["deposited"] == c["paid_out"] + c["withdrawn"] and c["withdrawn"] == sum(withdrawal.as_tuple()[:2])


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
    assert readme[: readme.index("<!-- guide:start -->")].count("\n") < 30, "the guide's links on the first screen"
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


@dataclass(frozen=True)
class ShellLine:
    """One line of a ```sh block: ``command`` (``paychan ...`` or ``python scripts/...``, without its
    ``.venv/bin/`` and ``&``) run with its ``NAME=value`` prefixes in ``env``; or, with no command, an
    ``export`` that sets ``env`` for the lines after it."""

    command: str
    env: tuple[tuple[str, str], ...] = ()


ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)=(\S*)\s+")


def shell_lines(text: str, fence: str = "sh") -> list[ShellLine]:
    """The lines of ``text``'s ```sh blocks (or ```FENCE ones): shown, but needing a running devnet or node."""
    found = []
    for block in re.findall(rf"^```{fence}\n(.*?)^```", text, flags=re.S | re.M):
        for raw in block.splitlines():
            line = raw.split("  #")[0].strip()
            if not line:
                continue
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                found.append(ShellLine("", ((name, value),)))
                continue
            env = []
            while match := ASSIGNMENT.match(line):
                env.append((match.group(1), match.group(2)))
                line = line[match.end() :]
            command = line.removesuffix("&").strip().removeprefix(".venv/bin/")
            found.append(ShellLine(command, tuple(env)))
    return found


def shell_commands(text: str) -> list[str]:
    return [line.command for line in shell_lines(text) if line.command]


def shell_pages() -> list[Path]:
    """The pages with ```sh blocks (the guide and the README), each run as one walk-through."""
    return [page for page in doc_pages() if shell_commands(page.read_text())]


def ways_out() -> list[str]:
    """The commands the README's node block lists (not run: they need a gone peer or a passed deadline)."""
    return re.findall(r"^- `\.venv/bin/(paychan [^`]+)`", readme_block("node"), flags=re.M)


def test_the_commands_the_guide_shows_for_a_running_node_exist_with_those_options():
    """They need a node (run by the test below, on anvil); here, with no server: they must parse, their
    scripts exist. The README's ways out without the peer (not run) must parse too."""
    from paychan.cli import build_parser

    assert [page.name for page in shell_pages()] == ["guide.md", "README.md"]
    assert any(c.startswith("paychan devnet") for c in shell_commands(GUIDE.read_text()))
    assert {c.split()[1] for c in ways_out()} == {"close", "settle"}, "the README must show close --unilateral, settle"
    parser = build_parser()
    for page in shell_pages():
        for command in shell_commands(page.read_text()) + (ways_out() if page == README else []):
            argv = python_argv(command)
            if argv[1] == "-c":
                try:
                    parser.parse_args(argv[3:])
                except SystemExit:
                    pytest.fail(f"{page.name} shows {command!r}, which `paychan` no longer accepts")
            else:
                assert Path(argv[1]).is_file(), f"{page.name} shows {command!r}, but there is no {argv[1]}"


def on_free_ports(command: str, ports: dict[str, int]) -> str:
    """``command`` with the docs' fixed ports (8545 anvil, 9735/9736 the nodes) replaced by free ones."""
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


def payments_in(command: str) -> int:
    """How many payments a shown ``paychan pay`` command makes (its ``--count``, else one)."""
    words = shlex.split(command)
    return int(words[words.index("--count") + 1]) if "--count" in words else 1


@pytest.mark.anvil
@pytest.mark.parametrize("page", shell_pages(), ids=lambda page: page.name)
def test_the_commands_the_guide_shows_for_a_running_node_run_in_order_and_pay(page: Path, tmp_path: Path) -> None:
    """A page's ```sh blocks, as a reader runs them: the guide's (a devnet, the demo and a script on it, then
    two nodes driven by open, pay, status and close, with keystores made as the README shows) and the
    README's (a devnet, keystores, two nodes, open, pay both ways, status, backup, close). Servers run in the
    background on free ports and are stopped by their PID; every other command must exit 0; status shows the
    nonce of the payments made, close the one after it."""
    lines = shell_lines(page.read_text())
    if not any(line.command.startswith("paychan keystore") for line in lines):
        made = [line for line in shell_lines(README.read_text()) if line.command.startswith("paychan keystore")]
        assert len(made) == 2, "the README's node block must show how to make alice's and bob's keystores"
        lines = [*made, *lines]
    ports = {"8545": free_port(), "9735": free_port(), "9736": free_port()}
    deployments = tmp_path / "deployments"
    env = {**os.environ, "PAYCHAN_DEPLOYMENTS": str(deployments), "PAYCHAN_PASSWORD": "docs"}
    servers: list[subprocess.Popen[str]] = []
    outputs: list[tuple[str, str]] = []
    try:
        for line in lines:
            if not line.command:
                env.update(line.env)
                continue
            command = on_free_ports(line.command, ports)
            argv, run_env = python_argv(command), {**env, **dict(line.env)}
            if line.command.startswith(("paychan devnet", "paychan node")):
                server = subprocess.Popen(
                    argv, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                servers.append(server)
                if line.command.startswith("paychan devnet"):
                    wait_for(lambda: any(deployments.glob("31337*.json")), server, command)
                else:
                    words = shlex.split(command)
                    db = words[words.index("--db") + 1]
                    wait_for((tmp_path / f"{db}.control.json").exists, server, command)
                continue
            result = subprocess.run(
                argv, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
            )
            assert result.returncode == 0, f"{line.command!r} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"
            outputs.append((line.command, result.stdout + result.stderr))
    finally:
        for server in reversed(servers):
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    paid, checked = 0, set()
    for command, output in outputs:
        name = command.split()[1] if command.startswith("paychan ") else command
        if name == "pay":
            paid += payments_in(command)
        elif name == "status":
            assert re.search(rf"\bnonce {paid}\b", output), f"after {paid} payments `{command}` shows:\n{output}"
        elif name == "close":
            assert re.search(rf"\bnonce {paid + 1}\b", output), f"after {paid} payments `{command}` shows:\n{output}"
        elif name == "backup":
            words = shlex.split(command)
            assert (tmp_path / words[words.index("--out") + 1]).is_file(), f"`{command}` wrote no backup"
        checked.add(name)
    assert {"pay", "status", "close"} <= checked, f"{page.name} must show pay, status and close: {checked}"


# --- the README's Python example ----------------------------------------------------------------------


def python_example() -> tuple[str, list[str]]:
    """The ```python block under the README's "Use it from Python" heading and the lines quoted after it
    (the ```text block that follows)."""
    text = README.read_text()
    assert f"\n{PYTHON_HEADING}\n" in text, f"README.md has no '{PYTHON_HEADING}' section"
    section = text.split(f"\n{PYTHON_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"^```python\n(.*?)^```\n", section, flags=re.S | re.M)
    assert code, f"README.md's '{PYTHON_HEADING}' section has no ```python block"
    printed = re.search(r"^```text\n(.*?)^```", section[code.end() :], flags=re.S | re.M)
    assert printed, f"README.md's '{PYTHON_HEADING}' section quotes no output (a ```text block after the code)"
    return code.group(1), printed.group(1).splitlines()


def test_the_readmes_python_example_runs_and_prints_the_lines_it_quotes(tmp_path: Path) -> None:
    code, printed = python_example()
    assert 20 <= len(code.splitlines()) <= 40, "the README's Python example should stay about 30 lines"
    script = tmp_path / "example.py"
    script.write_text(code)
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    result = subprocess.run(
        [str(python), str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"the README's Python example exited {result.returncode}:\n{result.stderr[-4000:]}"
    assert result.stdout.splitlines() == printed, f"the README quotes {printed}, the example printed:\n{result.stdout}"


# --- the figures the docs quote against the benchmarks' results ---------------------------------------

GAS_SUMMARY_OPERATIONS = (
    "deploy",
    "eth.open",
    "eth.deposit",
    "eth.top_up",
    "eth.cooperative_close",
    "eth.close",
    "eth.challenge",
    "eth.settle",
)


def _gas(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def gas_summary(data: dict) -> str:
    """The README's short gas table (headline, then the ETH operations), as ``benchmarks/results/gas.json``
    gives it: the README block must be exactly this."""
    ops = {e["key"]: e for e in data["operations"]}
    met = all(e["target_met"] for e in data["operations"] if "target" in e)
    worst = max(data["operations"], key=lambda e: e["ratio_to_floor"])
    runs = data["payments"]
    same = len({run["cooperative_close"]["execution_gas"] for run in runs}) == 1
    lines = [
        "Measured from transaction receipts on the embedded chain (Prague rules): "
        + ("every gas target of issue 3 is met" if met else "NOT every gas target of issue 3 is met")
        + ",",
        f"every operation is within {worst['ratio_to_floor']:.2f}x of the least the EVM allows for it "
        f"(the goal was 1.25x), and a channel",
        f"{'costs the same' if same else 'does NOT cost the same'} on chain after {runs[0]['payments']:,} "
        f"or {runs[-1]['payments']:,} off-chain payments.",
        "",
        "| operation | paychan | target | Raiden | Nitro | EVM floor | paychan / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in GAS_SUMMARY_OPERATIONS:
        e = ops[key]
        lines.append(
            f"| {e['operation']} | {_gas(e['gas'])} | {_gas(e.get('target'))} | "
            f"{_gas(e.get('raiden', {}).get('gas'))} | {_gas(e.get('nitro', {}).get('gas'))} | "
            f"{_gas(e['floor']['total'])} | {e['ratio_to_floor']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def throughput_summary(data: dict) -> str:
    """The README's short off-chain throughput table, as ``benchmarks/results/offchain.json`` gives it."""
    alone, one_way, both = data["latency_unloaded"], data["throughput_one_way"], data["throughput_both_ways"]
    return (
        "| one channel, two node processes; every payment its own state, signed and fsync'ed by both | payments/s |\n"
        "|---|---:|\n"
        f"| one payment at a time ({alone['ms_p50']:.1f} ms p50 per payment) | {round(alone['payments_per_s']):,} |\n"
        f"| many requests in flight (batched, still one state each) | **{round(one_way['payments_per_s']):,}** |\n"
        f"| both directions at once | {round(both['payments_per_s']):,} |\n"
        f"\nOn a {data['machine']['cpus']}-core VM, every peer request signed and checked: the target of 1,000 "
        "durable payments/s on one channel\n"
        f"is {'met' if one_way['payments_per_s'] >= 1000 else 'NOT met'}"
    )


def test_the_gas_page_is_what_benchmarks_gas_writes_from_its_results():
    data = json.loads(GAS_RESULTS.read_text())
    assert marked_block("gas", GAS_PAGE) == gas_page_block(data) + "\n", (
        "docs/gas.md differs from benchmarks/results/gas.json: run `.venv/bin/python -m benchmarks.gas --readme-only`"
    )


def test_the_readmes_gas_summary_is_the_headline_of_the_gas_results():
    expected = gas_summary(json.loads(GAS_RESULTS.read_text()))
    assert readme_block("gas-summary") == expected, (
        f"README.md's gas summary differs from benchmarks/results/gas.json; it should read:\n{expected}"
    )


def test_the_readmes_throughput_summary_is_the_headline_of_the_offchain_results():
    expected = throughput_summary(json.loads(OFFCHAIN_RESULTS.read_text()))
    block = readme_block("throughput")
    assert block.startswith(expected), (
        f"README.md's throughput summary differs from {OFFCHAIN_RESULTS.name}; it should start:\n{expected}"
    )


# --- links between the pages ------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")
HTML_ANCHOR = re.compile(r"<a (?:id|name)=\"([^\"]+)\"")


def anchors(path: Path) -> set[str]:
    """The anchors a markdown page has: its headings' slugs and its ``<a id="...">`` tags."""
    text = path.read_text()
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)} | set(HTML_ANCHOR.findall(text))


def test_every_link_of_the_readme_and_the_docs_pages_resolves():
    """Files and anchors: the README's links to the docs/ pages, theirs back, the guide's into the README."""
    for page in doc_pages():
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)} links {target}"
            assert path.exists(), f"{where}, which does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path), f"{where}, but no heading or <a id> there makes #{anchor}"


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
