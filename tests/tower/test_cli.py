"""``paychan tower`` refuses what it cannot run with one sentence; ``paychan tower status`` shows what is held."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from paychan.tower.registry import Registry
from paychan.tower.store import TowerStore
from tests.node.conftest import one_error, paychan
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
