"""Channel parameters, balance states and signatures: the values both parties and the contract agree on.

A ``ChannelParams`` is what the contract's ``Channel`` struct holds (never stored on chain: every call
passes it). A ``ChannelState`` is the EIP-712 ``State`` both participants sign; a ``SignedState`` carries
the signatures collected so far. ``hashlock`` is how a conditional payment's secret is committed to.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import NewType

from eth_abi.abi import encode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.exceptions import MalformedMessage

ChannelId = NewType("ChannelId", bytes)
Wei = NewType("Wei", int)
Nonce = NewType("Nonce", int)

ETH = "0x0000000000000000000000000000000000000000"
ZERO_ROOT = b"\x00" * 32
MAX_NONCE = 2**48 - 1
MAX_UINT256 = 2**256 - 1
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def hashlock(secret: bytes) -> bytes:
    """The hashlock of a 32-byte ``secret``: ``sha256(secret)``, as the contract's secret registry keys it
    (SHA-256, so a Lightning HTLC preimage unlocks the same hashlock)."""
    if len(secret) != 32:
        raise ValueError(f"a secret is 32 bytes, got {len(secret)}")
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class ChannelParams:
    """The fixed parameters of a channel (the contract's ``Channel`` struct)."""

    participant_a: str
    participant_b: str
    asset: str
    challenge_period: int
    number: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "participant_a", to_checksum_address(self.participant_a))
        object.__setattr__(self, "participant_b", to_checksum_address(self.participant_b))
        object.__setattr__(self, "asset", to_checksum_address(self.asset))

    def as_tuple(self) -> tuple[str, str, str, int, int]:
        return (self.participant_a, self.participant_b, self.asset, self.challenge_period, self.number)

    def role_of(self, address: str) -> str:
        """``"A"`` or ``"B"`` for a participant; raises ``ValueError`` for anyone else."""
        address = to_checksum_address(address)
        if address == self.participant_a:
            return "A"
        if address == self.participant_b:
            return "B"
        raise ValueError(f"{address} is not a participant of this channel")

    def to_json(self) -> dict[str, object]:
        return {
            "participantA": self.participant_a,
            "participantB": self.participant_b,
            "asset": self.asset,
            "challengePeriod": self.challenge_period,
            "number": self.number,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ChannelParams:
        """Parses ``to_json``'s output; anything else raises ``MalformedMessage``."""
        if not isinstance(data, dict):
            raise MalformedMessage(f"channel parameters must be an object, not {type(data).__name__}")
        missing = {"participantA", "participantB", "asset", "challengePeriod", "number"} - data.keys()
        if missing:
            raise MalformedMessage(f"channel parameters lack {', '.join(sorted(missing))}")
        a, b, asset = data["participantA"], data["participantB"], data["asset"]
        if not all(isinstance(x, str) and _ADDRESS.fullmatch(x) for x in (a, b, asset)):
            raise MalformedMessage("participantA, participantB and asset must be 0x-prefixed addresses")
        return cls(
            str(a),
            str(b),
            str(asset),
            _json_uint(data["challengePeriod"], "challengePeriod", 32),
            _json_uint(data["number"], "number", 64),
        )


def _json_uint(value: object, name: str, bits: int) -> int:
    """An unsigned integer of ``bits`` bits, given as a JSON integer or a decimal string."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise MalformedMessage(f"{name} must be an integer in [0, 2**{bits})")
    return value


def channel_id(params: ChannelParams, chain_id: int, contract: str) -> ChannelId:
    """``keccak256(abi.encode(chainid, contract, channel))``, as the contract computes it."""
    encoded = encode(
        ["uint256", "address", "address", "address", "address", "uint32", "uint64"],
        [chain_id, contract, *params.as_tuple()],
    )
    return ChannelId(keccak(encoded))


@dataclass(frozen=True)
class ChannelState:
    """A balance state of channel ``channel_id`` (the EIP-712 ``State``).

    ``deposit_a``/``deposit_b`` (keyword-only, always explicit) are the on-chain deposits per side the
    state splits: its balances sum to them. Deposits made after it was signed are not in it; the contract
    gives them back to their side on top of its balance, so a later deposit never invalidates it.
    """

    channel_id: ChannelId
    nonce: Nonce
    balance_a: Wei
    balance_b: Wei
    locks_root: bytes = ZERO_ROOT
    is_final: bool = False
    deposit_a: Wei = field(kw_only=True)
    deposit_b: Wei = field(kw_only=True)

    @property
    def total(self) -> int:
        return self.balance_a + self.balance_b

    def balance_of(self, role: str) -> int:
        return self.balance_a if role == "A" else self.balance_b

    @property
    def deposit_total(self) -> int:
        return self.deposit_a + self.deposit_b

    def payouts(self, deposit_a: int, deposit_b: int) -> tuple[int, int]:
        """What the contract pays (A, B) for this state when the channel holds ``deposit_a``/``deposit_b``:
        each balance plus that side's deposits the state does not know of."""
        return self.balance_a + deposit_a - self.deposit_a, self.balance_b + deposit_b - self.deposit_b

    def as_tuple(self) -> tuple[int, int, int, int, int, bytes, bool]:
        """The contract's ``State`` calldata tuple (the channel id comes from ``Channel``)."""
        return (
            self.nonce,
            self.balance_a,
            self.balance_b,
            self.deposit_a,
            self.deposit_b,
            self.locks_root,
            self.is_final,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "nonce": self.nonce,
            "balanceA": str(self.balance_a),
            "balanceB": str(self.balance_b),
            "depositA": str(self.deposit_a),
            "depositB": str(self.deposit_b),
            "locksRoot": "0x" + self.locks_root.hex(),
            "isFinal": self.is_final,
        }


@dataclass(frozen=True)
class Signature:
    """An EIP-2098 compact signature (``r``, ``vs``): 64 bytes, ``v - 27`` in the top bit of ``vs``."""

    r: bytes
    vs: bytes

    @classmethod
    def from_vrs(cls, v: int, r: int, s: int) -> Signature:
        if v >= 27:
            v -= 27
        vs = (v << 255) | s
        return cls(r.to_bytes(32, "big"), vs.to_bytes(32, "big"))

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        """From 64 compact bytes, or a 65-byte ``r || s || v`` signature; else ``MalformedMessage``."""
        if not isinstance(data, (bytes, bytearray)):
            raise MalformedMessage(f"a signature is bytes, not {type(data).__name__}")
        if len(data) == 65:
            return cls.from_vrs(data[64], int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big"))
        if len(data) != 64:
            raise MalformedMessage(f"a signature is 64 or 65 bytes, not {len(data)}")
        return cls(bytes(data[:32]), bytes(data[32:]))

    def to_bytes(self) -> bytes:
        return self.r + self.vs

    @property
    def v(self) -> int:
        return (self.vs[0] >> 7) + 27

    @property
    def s(self) -> int:
        return int.from_bytes(self.vs, "big") & ((1 << 255) - 1)

    def as_tuple(self) -> tuple[bytes, bytes]:
        return (self.r, self.vs)


EMPTY_SIGNATURE = Signature(b"\x00" * 32, b"\x00" * 32)


@dataclass(frozen=True)
class SignedState:
    """A state with the signatures of participant A and B collected so far."""

    state: ChannelState
    sig_a: Signature | None = None
    sig_b: Signature | None = None

    @property
    def is_complete(self) -> bool:
        return self.sig_a is not None and self.sig_b is not None

    def signature_of(self, role: str) -> Signature | None:
        return self.sig_a if role == "A" else self.sig_b

    def with_signature(self, role: str, signature: Signature) -> SignedState:
        return replace(self, sig_a=signature) if role == "A" else replace(self, sig_b=signature)

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.to_json(),
            "sigA": "0x" + self.sig_a.to_bytes().hex() if self.sig_a else None,
            "sigB": "0x" + self.sig_b.to_bytes().hex() if self.sig_b else None,
        }
