"""``paychan tower`` refuses what it cannot run with one sentence; ``paychan tower status`` shows what is held."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import pytest

from paychan.cli import build_parser
from paychan.tower.registry import Registry
from paychan.tower.store import TowerStore
from tests.node.conftest import one_error, paychan
from tests.test_docs import ROOT
from tests.tower.conftest import CID, DOMAIN, KEY_B, PARAMS, push_by


def test_a_tower_without_a_key_or_a_store_or_a_chain_is_refused_in_one_sentence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "--keystore" in one_error(*paychan(capsys, "tower", "--db", str(tmp_path / "t.db")))
    monkeypatch.delenv("PAYCHAN_RPC_URL", raising=False)
    monkeypatch.delenv("ETH_RPC_URL", raising=False)
    db, keystore = str(tmp_path / "t.db"), str(tmp_path / "k.json")
    assert "needs a chain" in one_error(*paychan(capsys, "tower", "--db", db, "--keystore", keystore))
    assert not (tmp_path / "t.db").exists()
    assert one_error(*paychan(capsys, "tower", "status", "--db", str(tmp_path / "none.db"))) == (
        f"no tower store at {tmp_path / 'none.db'}"
    )


def test_tower_status_lists_each_watched_channel_with_its_client_and_nonce(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = TowerStore(tmp_path / "tower.db")
    store.add_opened([(CID, PARAMS)])
    store.bind(DOMAIN.chain_id, DOMAIN.verifying_contract)
    (result,) = asyncio.run(Registry(store, DOMAIN).submit([push_by(KEY_B, 7, 7 * 10**16, revoked_below=7).to_json()]))
    assert result["accepted"]
    store.close()
    code, out, _ = paychan(capsys, "tower", "status", "--db", str(tmp_path / "tower.db"), "--json")
    assert code == 0
    (channel,) = json.loads(out)["channels"]
    assert channel == {
        "channelId": "0x" + CID.hex(), "client": PARAMS.participant_b, "nonce": 7, "revokedBelow": 7, "secrets": 0,
        "settle": False, "phase": "open",
    }  # fmt: skip
    code, out, _ = paychan(capsys, "tower", "status", "--db", str(tmp_path / "tower.db"))
    assert code == 0 and "not running" in out and PARAMS.participant_b in out


def bash_commands(text: str) -> list[str]:
    """The ``.venv/bin/paychan ...`` lines of a page's ```bash blocks (environment assignments and ``&`` cut)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line.split(" #", 1)[0].removesuffix("&").strip())
            while words and "=" in words[0]:
                words.pop(0)
            if words and words[0] == ".venv/bin/paychan":
                commands.append(" ".join(words[1:]))
    return commands


@pytest.mark.parametrize("page", ["README.md", "docs/tower.md"])
def test_the_tower_commands_the_docs_show_parse(page: str) -> None:
    text = (ROOT / page).read_text()
    if page == "README.md":
        text = text.split("### Running a watchtower", 1)[1].split("\n### ", 1)[0]
    commands = bash_commands(text)
    assert any(c.startswith("tower --keystore") for c in commands) and any("--tower" in c for c in commands)
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"{page} shows `paychan {command}`, which paychan no longer accepts")
