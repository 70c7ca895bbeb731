"""Channel parameters, balance states and signatures: the values both parties and the contract agree on.

A ``ChannelParams`` is what the contract's ``Channel`` struct holds (never stored on chain: every call
passes it). A ``ChannelState`` is the EIP-712 ``State`` both participants sign; a ``SignedState`` carries
the signatures collected so far. A ``Lock`` is a pending conditional payment, committed to by the state's
``locks_root`` (``locks_root`` of the packed list); ``hashlock`` is how its secret is committed to. A
``Revocation`` is a participant's promise never to close below a nonce; a ``Withdrawal`` takes funds out of
an open channel.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
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
MAX_UINT40 = 2**40 - 1
MAX_WITHDRAWALS = 2**16 - 1
LOCK_SIZE = 70  # bytes per packed lock: direction (1), expiry (5), amount (32), hashlock (32)
DIRECTION_A_PAYS_B, DIRECTION_B_PAYS_A = 0, 1
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@lru_cache(maxsize=8192)
def checksum_address(address: str) -> str:
    """``to_checksum_address``, cached: a tower or node builds the parameters, routes and offers of the same few
    participants again and again, and the checksum (a keccak of the address) costs more than the rest."""
    return str(to_checksum_address(address))


def hashlock(secret: bytes) -> bytes:
    """The hashlock of a 32-byte ``secret``: ``sha256(secret)``, as the contract's secret registry keys it
    (SHA-256, so a Lightning HTLC preimage unlocks the same hashlock)."""
    if len(secret) != 32:
        raise ValueError(f"a secret is 32 bytes, got {len(secret)}")
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class Lock:
    """A pending conditional payment: ``amount`` from ``sender`` (``"A"`` or ``"B"``) to the other side,
    paid if the secret of ``hashlock`` is revealed on chain at or before ``expiry`` (a timestamp)."""

    sender: str
    amount: int
    expiry: int
    hashlock: bytes

    def __post_init__(self) -> None:
        if self.sender not in ("A", "B"):
            raise ValueError(f"a lock's sender is 'A' or 'B', not {self.sender!r}")
        if not 0 <= self.amount <= MAX_UINT256 or not 0 <= self.expiry <= MAX_UINT40:
            raise ValueError("a lock's amount is a uint256 and its expiry a uint40")
        if not isinstance(self.hashlock, bytes) or len(self.hashlock) != 32:
            raise ValueError("a hashlock is 32 bytes")

    @property
    def receiver(self) -> str:
        return "B" if self.sender == "A" else "A"

    @property
    def direction(self) -> int:
        return DIRECTION_A_PAYS_B if self.sender == "A" else DIRECTION_B_PAYS_A

    def packed(self) -> bytes:
        """The lock's ``LOCK_SIZE`` bytes in ``settle``'s list."""
        return (
            bytes([self.direction]) + self.expiry.to_bytes(5, "big") + self.amount.to_bytes(32, "big") + self.hashlock
        )

    def to_json(self) -> dict[str, object]:
        return {
            "sender": self.sender,
            "amount": str(self.amount),
            "expiry": self.expiry,
            "hashlock": "0x" + self.hashlock.hex(),
        }

    @classmethod
    def from_json(cls, data: object) -> Lock:
        """Parses ``to_json``'s output; anything else raises ``MalformedMessage``."""
        if not isinstance(data, dict) or {"sender", "amount", "expiry", "hashlock"} - data.keys():
            raise MalformedMessage("a lock is an object with sender, amount, expiry and hashlock")
        sender, hashlock_hex = data["sender"], data["hashlock"]
        if sender not in ("A", "B"):
            raise MalformedMessage("a lock's sender is 'A' or 'B'")
        return cls(
            str(sender),
            _json_uint(data["amount"], "amount", 256),
            _json_uint(data["expiry"], "expiry", 40),
            _json_bytes32(hashlock_hex, "hashlock"),
        )


def pack_locks(locks: tuple[Lock, ...] | list[Lock]) -> bytes:
    """The packed lock list ``settle`` takes (in the order the locks were added)."""
    return b"".join(lock.packed() for lock in locks)


def locks_root(locks: tuple[Lock, ...] | list[Lock]) -> bytes:
    """``keccak256`` of the packed list; zero for no locks (the contract's rule)."""
    return keccak(pack_locks(locks)) if locks else ZERO_ROOT


def locked_totals(locks: tuple[Lock, ...] | list[Lock]) -> tuple[int, int]:
    """What A and B have locked towards each other in ``locks``."""
    return (
        sum(lock.amount for lock in locks if lock.sender == "A"),
        sum(lock.amount for lock in locks if lock.sender == "B"),
    )


def _json_bytes32(value: object, name: str) -> bytes:
    if not (isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{64}", value)):
        raise MalformedMessage(f"{name} must be 0x and 64 hex digits")
    return bytes.fromhex(value[2:])


@dataclass(frozen=True)
class ChannelParams:
    """The fixed parameters of a channel (the contract's ``Channel`` struct)."""

    participant_a: str
    participant_b: str
    asset: str
    challenge_period: int
    number: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "participant_a", checksum_address(self.participant_a))
        object.__setattr__(self, "participant_b", checksum_address(self.participant_b))
        object.__setattr__(self, "asset", checksum_address(self.asset))

    def as_tuple(self) -> tuple[str, str, str, int, int]:
        return (self.participant_a, self.participant_b, self.asset, self.challenge_period, self.number)

    def role_of(self, address: str) -> str:
        """``"A"`` or ``"B"`` for a participant; raises ``ValueError`` for anyone else."""
        address = checksum_address(address)
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
    state splits: its balances and locked totals sum to them. Deposits made after it was signed are not in
    it; the contract gives them back to their side on top of its balance, so a later deposit never
    invalidates it. ``locked_a``/``locked_b`` are what each side has locked in pending conditional payments
    (committed to by ``locks_root``); ``withdrawals`` is the channel's withdrawal counter the state was
    signed under (a state from before a withdrawal is refused on chain).
    """

    channel_id: ChannelId
    nonce: Nonce
    balance_a: Wei
    balance_b: Wei
    locks_root: bytes = ZERO_ROOT
    is_final: bool = False
    deposit_a: Wei = field(kw_only=True)
    deposit_b: Wei = field(kw_only=True)
    locked_a: Wei = field(default=Wei(0), kw_only=True)
    locked_b: Wei = field(default=Wei(0), kw_only=True)
    withdrawals: int = field(default=0, kw_only=True)

    @property
    def total(self) -> int:
        """Balances plus locked amounts: what the state splits (its deposits, when conserved)."""
        return self.balance_a + self.balance_b + self.locked_a + self.locked_b

    @property
    def locked_total(self) -> int:
        return self.locked_a + self.locked_b

    def balance_of(self, role: str) -> int:
        return self.balance_a if role == "A" else self.balance_b

    @property
    def deposit_total(self) -> int:
        return self.deposit_a + self.deposit_b

    def payouts(self, deposit_a: int, deposit_b: int) -> tuple[int, int]:
        """What the contract records for (A, B) for this state when the channel holds ``deposit_a``/
        ``deposit_b``, before its locks are resolved: each balance plus that side's deposits the state does
        not know of."""
        return self.balance_a + deposit_a - self.deposit_a, self.balance_b + deposit_b - self.deposit_b

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int, int, bytes, bool]:
        """The contract's ``State`` calldata tuple (the channel id comes from ``Channel``)."""
        return (
            self.nonce,
            self.balance_a,
            self.balance_b,
            self.locked_a,
            self.locked_b,
            self.deposit_a,
            self.deposit_b,
            self.withdrawals,
            self.locks_root,
            self.is_final,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "nonce": self.nonce,
            "balanceA": str(self.balance_a),
            "balanceB": str(self.balance_b),
            "lockedA": str(self.locked_a),
            "lockedB": str(self.locked_b),
            "depositA": str(self.deposit_a),
            "depositB": str(self.deposit_b),
            "withdrawals": self.withdrawals,
            "locksRoot": "0x" + self.locks_root.hex(),
            "isFinal": self.is_final,
        }


@dataclass(frozen=True)
class Revocation:
    """``signer_role``'s promise never to close channel ``channel_id`` with a nonce below ``below_nonce``
    (the EIP-712 ``Revocation``); signed only once a newer doubly-signed state is held durably."""

    channel_id: ChannelId
    below_nonce: int

    def to_json(self) -> dict[str, object]:
        return {"channelId": "0x" + self.channel_id.hex(), "belowNonce": self.below_nonce}


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal while open (the EIP-712 ``Withdrawal``): ``amount_a`` to A and ``amount_b`` to B, taken
    out of ``deposit_a``/``deposit_b`` (the deposits of the state it is signed with), once: ``withdrawals``
    is the channel's counter before it; valid until ``expiry`` (a timestamp, inclusive)."""

    channel_id: ChannelId
    amount_a: int
    amount_b: int
    deposit_a: int
    deposit_b: int
    withdrawals: int
    expiry: int

    def deposits_after(self) -> tuple[int, int]:
        """The deposits (A, B) the named ones become: each amount from its own side first, the rest from
        the other side (the contract's rule). Raises ``ValueError`` if it takes more than they hold."""
        left_a, left_b = self.deposit_a, self.deposit_b
        if self.amount_a + self.amount_b > left_a + left_b:
            raise ValueError("the withdrawal takes more than the deposits it names")
        if self.amount_a > left_a:
            left_a, left_b = 0, left_b - (self.amount_a - left_a)
        else:
            left_a -= self.amount_a
        if self.amount_b > left_b:
            left_a, left_b = left_a - (self.amount_b - left_b), 0
        else:
            left_b -= self.amount_b
        return left_a, left_b

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """The contract's ``Withdrawal`` calldata tuple."""
        return (self.amount_a, self.amount_b, self.deposit_a, self.deposit_b, self.withdrawals, self.expiry)

    def to_json(self) -> dict[str, object]:
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "amountA": str(self.amount_a),
            "amountB": str(self.amount_b),
            "depositA": str(self.deposit_a),
            "depositB": str(self.deposit_b),
            "withdrawals": self.withdrawals,
            "expiry": self.expiry,
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
