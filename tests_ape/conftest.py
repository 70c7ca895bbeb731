"""Ape-native fixtures: roles from Ape's test accounts, the contract deployed from Ape's compiled project,
and a factory opening a channel whose two off-chain sides are ``paychan.channel.Channel`` objects.

Ape reverts the chain around every test (its own snapshot isolation), on the default local network and
on ``ethereum:local:foundry`` (anvil) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from paychan.channel import Channel, agree_final, pay
from paychan.signing import Domain
from paychan.state import ETH, ChannelParams, SignedState

ETHER = 10**18
PERIOD = 3600


def key_of(account: Any) -> bytes:
    """The private key of one of Ape's test accounts."""
    return bytes.fromhex(str(account.private_key).removeprefix("0x"))


@pytest.fixture(scope="module")
def deployer(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="module")
def alice(accounts: Any) -> Any:
    return accounts[1]


@pytest.fixture(scope="module")
def bob(accounts: Any) -> Any:
    return accounts[2]


@pytest.fixture(scope="module")
def carol(accounts: Any) -> Any:
    """A third party, participant of no channel."""
    return accounts[3]


@pytest.fixture(scope="module")
def paychan(project: Any, deployer: Any) -> Any:
    """``PaymentChannels`` compiled by ``ape compile`` and deployed with Ape."""
    return deployer.deploy(project.PaymentChannels)


@pytest.fixture(scope="module")
def domain(chain: Any, paychan: Any) -> Domain:
    return Domain(chain.chain_id, paychan.address)


@dataclass
class Opened:
    """A channel alice→bob: its parameters, both off-chain sides and the opening receipt."""

    params: ChannelParams
    a: Channel
    b: Channel
    receipt: Any

    def pay(self, payer: str, amount: int) -> SignedState:
        sender, receiver = (self.a, self.b) if payer == "A" else (self.b, self.a)
        return pay(sender, receiver, amount)

    def finalize(self) -> SignedState:
        return agree_final(self.a, self.b)


@pytest.fixture
def open_channel(paychan: Any, domain: Domain, alice: Any, bob: Any) -> Callable[..., Opened]:
    def _open(deposit_a: int = 5 * ETHER, deposit_b: int = 0) -> Opened:
        receipt = paychan.open(bob, ETH, PERIOD, deposit_a, sender=alice, value=deposit_a)
        (event,) = receipt.decode_logs(paychan.ChannelOpened)
        params = ChannelParams(event.participantA, event.participantB, event.asset, event.challengePeriod, event.number)
        if deposit_b:
            paychan.deposit(params.as_tuple(), bob, deposit_b, sender=bob, value=deposit_b)
        deposits = (deposit_a, deposit_b)
        return Opened(
            params,
            Channel(params, domain, key_of(alice), deposits=deposits),
            Channel(params, domain, key_of(bob), deposits=deposits),
            receipt,
        )

    return _open


def signatures(signed: SignedState) -> tuple[Any, Any]:
    assert signed.sig_a is not None and signed.sig_b is not None
    return signed.sig_a.as_tuple(), signed.sig_b.as_tuple()
