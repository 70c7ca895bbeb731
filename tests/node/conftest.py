"""Fixtures of the node tests: two parties' keys, a channel between them, stores in a temporary folder.

The chain-backed tests (integration, watcher) start their own anvil on a free port (an embedded chain cannot
be shared between processes) and stop it by PID, also when the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from paychan.node.store import ChannelRecord, Store
from paychan.signing import Domain, sign_state
from paychan.state import ChannelParams, ChannelState, Nonce, SignedState, Wei, channel_id

# anvil's first dev accounts (well-known test keys, never used for real funds)
KEY_A = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
KEY_B = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
KEY_C = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
ADDRESS_A = Account.from_key(KEY_A).address
ADDRESS_B = Account.from_key(KEY_B).address
ADDRESS_C = Account.from_key(KEY_C).address
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
PARAMS = ChannelParams(ADDRESS_A, ADDRESS_B, "0x0000000000000000000000000000000000000000", 3600, 1)
CID = channel_id(PARAMS, DOMAIN.chain_id, DOMAIN.verifying_contract)
DEPOSIT_A = 10**18


def make_state(nonce: int, balance_a: int, balance_b: int, is_final: bool = False, cid: bytes = CID) -> ChannelState:
    return ChannelState(cid, Nonce(nonce), Wei(balance_a), Wei(balance_b), b"\x00" * 32, is_final)  # type: ignore[arg-type]


def sign_both(state: ChannelState, key_a: bytes = KEY_A, key_b: bytes = KEY_B) -> SignedState:
    return SignedState(state, sign_state(DOMAIN, state, key_a), sign_state(DOMAIN, state, key_b))


def channel_record(
    role: str = "B", peer_url: str = "http://127.0.0.1:1", deposit_a: int = DEPOSIT_A, deposit_b: int = 0
) -> ChannelRecord:
    return ChannelRecord(CID, PARAMS, role, peer_url, deposit_a, deposit_b)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "node.db")
    db.add_channel(channel_record())
    yield db
    db.close()
