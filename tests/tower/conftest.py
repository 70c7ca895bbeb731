"""Helpers of the tower tests: the node tests' keys and channel, pushes built and signed by its clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from paychan.node.messages import SignedRevocation
from paychan.signers import LocalKeySigner
from paychan.signing import Domain, sign_message, sign_state
from paychan.state import ChannelState, Lock, Nonce, Revocation, SignedState, Wei, locked_totals, locks_root
from paychan.tower.process import TowerProcess
from paychan.tower.protocol import Push, sign_push
from tests.node.conftest import (  # noqa: F401 - fixtures
    ADDRESS_A,
    ADDRESS_B,
    ADDRESS_C,
    CID,
    DEPOSIT_A,
    DOMAIN,
    KEY_A,
    KEY_B,
    KEY_C,
    PARAMS,
    PASSWORD,
    devnet,
    devnet_contract,
    free_port,
)

__all__ = ["ADDRESS_A", "ADDRESS_B", "ADDRESS_C", "CID", "DOMAIN", "KEY_A", "KEY_B", "KEY_C", "PARAMS"]


def state_of(
    nonce: int,
    paid_to_b: int,
    locks: tuple[Lock, ...] = (),
    cid: bytes = CID,
    deposit_a: int = DEPOSIT_A,
    deposit_b: int = 0,
) -> ChannelState:
    """A state of a channel funded by A where A has paid B ``paid_to_b`` and has ``locks`` pending."""
    locked_a, locked_b = locked_totals(list(locks))
    return ChannelState(
        cid,  # type: ignore[arg-type]
        Nonce(nonce),
        Wei(deposit_a - paid_to_b - locked_a),
        Wei(deposit_b + paid_to_b - locked_b),
        locks_root(list(locks)),
        deposit_a=Wei(deposit_a),
        deposit_b=Wei(deposit_b),
        locked_a=Wei(locked_a),
        locked_b=Wei(locked_b),
    )


def both_signed(
    state: ChannelState, domain: Domain = DOMAIN, key_a: bytes = KEY_A, key_b: bytes = KEY_B
) -> SignedState:
    return SignedState(state, sign_state(domain, state, key_a), sign_state(domain, state, key_b))


def revocation_by(key: bytes, below: int, cid: bytes = CID, domain: Domain = DOMAIN) -> SignedRevocation:
    return SignedRevocation(below, sign_message(domain, Revocation(cid, below), key))  # type: ignore[arg-type]


def push_by(
    key: bytes,
    nonce: int,
    paid_to_b: int,
    *,
    locks: tuple[Lock, ...] = (),
    revoked_below: int = 0,
    secrets: tuple[bytes, ...] = (),
    settle: bool = False,
    domain: Domain = DOMAIN,
    cid: bytes = CID,
    counterparty_key: bytes | None = None,
) -> Push:
    """``key``'s push of the channel's state ``nonce``, with the counterparty's revocation below
    ``revoked_below`` (none for 0)."""
    signed = both_signed(state_of(nonce, paid_to_b, locks, cid=cid), domain)
    other = counterparty_key or (KEY_B if key == KEY_A else KEY_A)
    revocation = revocation_by(other, revoked_below, cid=cid, domain=domain) if revoked_below else None
    return sign_push(LocalKeySigner(key), domain, signed, locks, revocation, secrets, settle)


# --- a tower process on the node tests' anvil devnet -------------------------------------------------------

KEY_TOWER = KEY_C  # anvil's dev account 3 pays the tower's gas


@pytest.fixture
def tower_process(tmp_path: Path, devnet: Any, devnet_contract: Any) -> Iterator[Callable[..., TowerProcess]]:  # noqa: F811
    """Factory of tower processes on the devnet's fresh contract; each is stopped by PID after the test."""
    started: list[TowerProcess] = []

    def make(name: str = "tower", port: int | None = None) -> TowerProcess:
        process = TowerProcess(
            tmp_path, name, KEY_TOWER, devnet.url, devnet_contract.address, free_port() if port is None else port,
            PASSWORD, ("--poll-interval", "0.2", "--log-level", "WARNING"),
        )  # fmt: skip
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
