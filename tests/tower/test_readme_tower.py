"""The README's "Running a watchtower" block runs as a reader runs it: the node block up to alice's node (the
devnet, the keystores, alice's node), then the tower block in order (the tower's keystore, the tower, bob's node
pointed at it, open, payments, ``paychan tower status``), on a fresh anvil devnet, servers on free ports and
stopped by their PID; ``paychan tower status`` lists the channel with the nonce bob's node pushed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from paychan.devnet import free_port
from tests.test_docs import (
    README,
    ShellLine,
    on_free_ports,
    payments_in,
    python_argv,
    readme_block,
    shell_lines,
    wait_for,
)

TOWER_HEADING = "### Running a watchtower"
SERVERS = ("paychan devnet", "paychan node", "paychan tower --")
PUSH_TIMEOUT = 20.0


def tower_block_lines() -> list[ShellLine]:
    """The lines of the ```bash block of the README's watchtower section."""
    text = README.read_text()
    assert f"\n{TOWER_HEADING}\n" in text, f"README.md has no '{TOWER_HEADING}' section"
    section = re.split(r"\n#{2,3} ", text.split(f"\n{TOWER_HEADING}\n", 1)[1], maxsplit=1)[0]
    return shell_lines(section, fence="bash")


def option(command: str, name: str) -> str:
    words = shlex.split(command)
    assert name in words, f"`{command}` has no {name}"
    return words[words.index(name) + 1]


def walk_through() -> list[ShellLine]:
    """The node block's lines before the node the tower block starts in their place (bob's), then the tower
    block's: what a reader runs."""
    node_lines, tower_lines = shell_lines(readme_block("node")), tower_block_lines()
    (node,) = [line for line in tower_lines if line.command.startswith("paychan node")]
    db = option(node.command, "--db")
    assert "--tower" in node.command, "the tower block must start a node with --tower"
    starts = [
        i
        for i, line in enumerate(node_lines)
        if line.command.startswith("paychan node") and f"--db {db}" in line.command
    ]
    assert starts, f"the README's node block starts no node with --db {db}, which the tower block restarts"
    return [*node_lines[: starts[0]], *tower_lines]


def held(output: str, channel: str, client: str) -> int | None:
    """The nonce ``paychan tower status`` says it holds for ``client`` in ``channel`` (``None``: not listed)."""
    match = re.search(
        rf"{re.escape(channel[:18])}…\s+client {re.escape(client)}\s+nonce\s+(\d+)\b.*\bopen$", output, re.M
    )
    return None if match is None else int(match.group(1))


@pytest.mark.anvil
def test_the_readmes_tower_block_runs_after_the_node_block_and_the_tower_holds_the_nonce_bobs_node_pushed(
    tmp_path: Path,
) -> None:
    lines = walk_through()
    ports = {"8545": free_port(), "9735": free_port(), "9736": free_port(), "9737": free_port()}
    deployments = tmp_path / "deployments"
    env = {**os.environ, "PAYCHAN_DEPLOYMENTS": str(deployments), "PAYCHAN_PASSWORD": "docs"}
    servers: list[subprocess.Popen[str]] = []
    addresses: dict[str, str] = {}  # keystore file -> its address, as `paychan keystore` printed it
    paid, channel, statuses = 0, "", 0
    try:
        for line in lines:
            if not line.command:
                env.update(line.env)
                continue
            command = on_free_ports(line.command, ports)
            argv, run_env = python_argv(command), {**env, **dict(line.env)}
            if line.command.startswith(SERVERS):
                server = subprocess.Popen(
                    argv, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                servers.append(server)
                if line.command.startswith("paychan devnet"):
                    wait_for(lambda: any(deployments.glob("31337*.json")), server, command)
                else:
                    kind = "control" if line.command.startswith("paychan node") else "tower"
                    ready = tmp_path / f"{option(command, '--db')}.{kind}.json"
                    wait_for(ready.exists, server, command)
                continue
            if line.command.startswith("paychan tower status"):
                node = next(line for line in lines if "--tower" in line.command)
                client = addresses[option(node.command, "--keystore")]
                deadline, output = time.monotonic() + PUSH_TIMEOUT, ""
                while held(output, channel, client) != paid and time.monotonic() < deadline:
                    result = subprocess.run(argv, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60)
                    assert result.returncode == 0, f"{command!r} failed: {result.stdout}{result.stderr}"
                    output = result.stdout
                    time.sleep(0.2)
                assert held(output, channel, client) == paid, (
                    f"after {paid} payments the tower does not hold nonce {paid} of {channel} for {client} "
                    f"within {PUSH_TIMEOUT}s; `{command}` shows:\n{output}"
                )
                statuses += 1
                continue
            result = subprocess.run(
                argv, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
            )
            assert result.returncode == 0, f"{line.command!r} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"
            name = line.command.split()[1]
            if name == "keystore":
                addresses[option(command, "--out")] = result.stdout.split()[0]
            elif name == "open":
                (channel,) = re.findall(r"opened channel (0x[0-9a-f]{64})", result.stdout)
            elif name == "pay":
                paid += payments_in(command)
    finally:
        for server in reversed(servers):
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    assert paid > 0 and statuses == 1, "the tower block must pay and then show `paychan tower status`"
