"""Forwarding fees: a node's fee policy per channel, its signed announcement, and the amount of each hop.

An intermediary that forwards a payment over one of its channels charges for it, per channel, a base fee in
wei plus a proportional fee in parts per million of what it forwards (Lightning's
``fee_base_msat + amount_to_forward * fee_proportional_millionths / 1_000_000``)::

    fee = base_fee + amount * ppm // 1_000_000

where ``amount`` is what the node forwards over that channel (its outgoing lock), never what it receives.
The proportional part rounds **down** (integer floor, as Lightning's BOLT 7 does): every node computes the
fee in integers, without floats, and gets the same wei; the payer never pays more than the advertised rate
(1 ppm of 999,999 wei is 0, not 1), and the intermediary's check (``check_forward``) applies the very same
formula to the outgoing amount, so a payer that computed the route with ``hop_amounts`` always pays exactly
what the intermediary requires, never a wei less.

The policy is announced in an EIP-712 ``FeeUpdate`` (``FEE_UPDATE_TYPE``), in the same domain as the
channel's states (``paychan.signing.Domain``: chain id and contract), signed by the channel's participant
that charges it (``node``: the fee applies to what ``node`` forwards over ``channelId`` to its counterparty).
So an announcement relayed by anyone else cannot be forged or moved to another channel, another direction
or another deployment (``verify_fee_announcement`` checks the signer is ``node`` and ``node`` a participant).
``timestamp`` (seconds, uint64) orders the announcements of one node for one channel: the newest wins and an
older or equal one is refused (``paychan.routing.ChannelGraph.apply_fee_announcement``), so a relay cannot
replay an old, cheaper policy. A node announces with its clock time (``next_timestamp``: at least one more
than its previous announcement), so a node that lost its record of what it announced still moves forward.

The payer computes what each hop forwards backwards from the payee (``hop_amounts``): the last hop carries
exactly the payment amount, and each hop before carries what the next carries plus the fee the intermediary
between them charges on it. So the payee receives exactly the amount and every intermediary earns exactly
its advertised fee on what it forwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.exceptions import InvalidSignature, MalformedMessage, NotParticipant, StateRejected
from paychan.signing import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    Domain,
    recover_digest_signer,
    sign_digest,
)
from paychan.state import MAX_UINT256, ChannelId, ChannelParams, Signature

PPM = 1_000_000
MAX_PPM = 2**32 - 1
MAX_TIMESTAMP = 2**64 - 1
FEE_UPDATE_TYPE = "FeeUpdate(bytes32 channelId,address node,uint64 timestamp,uint256 baseFee,uint32 ppm)"
FEE_UPDATE_TYPEHASH = keccak(FEE_UPDATE_TYPE.encode())
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")


class FeeTooLow(StateRejected):
    """Raised when a forward pays the intermediary less than its advertised fee: it receives ``incoming`` to
    forward ``outgoing``, and its policy on the outgoing channel asks ``fee`` on ``outgoing``."""

    def __init__(self, incoming: int, outgoing: int, fee: int) -> None:
        self.incoming, self.outgoing, self.fee = incoming, outgoing, fee
        super().__init__(f"FeeTooLow(incoming={incoming}, outgoing={outgoing}, fee={fee})")


@dataclass(frozen=True)
class FeePolicy:
    """What a node charges to forward over one of its channels: ``base_fee`` wei plus ``ppm`` parts per
    million of the forwarded amount (rounded down)."""

    base_fee: int = 0
    ppm: int = 0

    def __post_init__(self) -> None:
        if not _is_uint(self.base_fee, MAX_UINT256):
            raise MalformedMessage(f"a base fee is a uint256, not {self.base_fee!r}")
        if not _is_uint(self.ppm, MAX_PPM):
            raise MalformedMessage(f"a proportional fee is a uint32 in parts per million, not {self.ppm!r}")

    def fee(self, amount: int) -> int:
        """The fee for forwarding ``amount`` wei: ``base_fee + amount * ppm // 1_000_000`` (floor)."""
        if amount < 0:
            raise ValueError(f"a forwarded amount is not negative: {amount}")
        return self.base_fee + amount * self.ppm // PPM


def hop_amounts(route_fees: Sequence[FeePolicy], amount: int) -> list[int]:
    """What each hop of a route forwards so that the payee receives exactly ``amount``.

    ``route_fees`` are the policies of the intermediaries in route order (each one's policy on the channel
    it forwards over). The result has one entry per hop (``len(route_fees) + 1``), first hop first: the
    first is what the payer locks, the last is ``amount``. Computed backwards from the payee, as Lightning
    does: intermediary ``i`` receives ``amounts[i]`` and forwards ``amounts[i + 1]``, and
    ``amounts[i] - amounts[i + 1] == route_fees[i].fee(amounts[i + 1])`` exactly. The payer's total fee is
    ``amounts[0] - amount``.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"a payment amount is a positive integer, not {amount!r}")
    amounts = [amount]
    for policy in reversed(route_fees):
        amounts.append(amounts[-1] + policy.fee(amounts[-1]))
    amounts.reverse()
    return amounts


def check_forward(incoming: int, outgoing: int, policy: FeePolicy) -> int:
    """The fee an intermediary earns by forwarding ``outgoing`` for an incoming lock of ``incoming``.

    Raises ``FeeTooLow`` unless ``incoming - outgoing`` is at least ``policy.fee(outgoing)`` (its policy on
    the outgoing channel); a larger margin is accepted (the payer's gift) and returned whole.
    """
    if outgoing <= 0:
        raise ValueError(f"a forwarded amount is positive, not {outgoing}")
    fee = policy.fee(outgoing)
    if incoming - outgoing < fee:
        raise FeeTooLow(incoming, outgoing, fee)
    return incoming - outgoing


@dataclass(frozen=True)
class FeeUpdate:
    """The EIP-712 ``FeeUpdate``: ``node`` charges ``base_fee`` + ``ppm`` to forward over ``channel_id``,
    as of ``timestamp`` (the newest timestamp of a node for a channel wins)."""

    channel_id: ChannelId
    node: str
    timestamp: int
    base_fee: int
    ppm: int

    def __post_init__(self) -> None:
        if not isinstance(self.channel_id, bytes) or len(self.channel_id) != 32:
            raise MalformedMessage("a channel id is 32 bytes")
        if not (isinstance(self.node, str) and _ADDRESS.fullmatch(self.node)):
            raise MalformedMessage(f"a node is a 0x-prefixed address, not {self.node!r}")
        object.__setattr__(self, "node", to_checksum_address(self.node))
        if not _is_uint(self.timestamp, MAX_TIMESTAMP):
            raise MalformedMessage(f"a timestamp is a uint64, not {self.timestamp!r}")
        FeePolicy(self.base_fee, self.ppm)  # checks both ranges

    @property
    def policy(self) -> FeePolicy:
        return FeePolicy(self.base_fee, self.ppm)

    def to_json(self) -> dict[str, object]:
        """Wallet-safe JSON (every integer a decimal string, bytes as ``0x`` hex)."""
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "node": self.node,
            "timestamp": str(self.timestamp),
            "baseFee": str(self.base_fee),
            "ppm": str(self.ppm),
        }

    @classmethod
    def from_json(cls, data: object) -> FeeUpdate:
        """Parses ``to_json``'s output (integers as decimal strings or JSON integers); anything else raises
        ``MalformedMessage``."""
        if not isinstance(data, dict) or {"channelId", "node", "timestamp", "baseFee", "ppm"} - data.keys():
            raise MalformedMessage("a fee update is an object with channelId, node, timestamp, baseFee and ppm")
        cid = data["channelId"]
        if not (isinstance(cid, str) and _BYTES32.fullmatch(cid)):
            raise MalformedMessage("channelId must be 0x and 64 hex digits")
        return cls(
            ChannelId(bytes.fromhex(cid[2:])),
            data["node"],
            _uint(data["timestamp"], "timestamp"),
            _uint(data["baseFee"], "baseFee"),
            _uint(data["ppm"], "ppm"),
        )


def _is_uint(value: object, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def _uint(value: object, name: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MalformedMessage(f"{name} must be an unsigned integer (a decimal string or a JSON integer)")


@dataclass(frozen=True)
class FeeAnnouncement:
    """A ``FeeUpdate`` with its node's signature: what nodes relay to each other."""

    update: FeeUpdate
    signature: Signature

    def to_json(self) -> dict[str, object]:
        return {"update": self.update.to_json(), "signature": "0x" + self.signature.to_bytes().hex()}

    @classmethod
    def from_json(cls, data: object) -> FeeAnnouncement:
        """Parses ``to_json``'s output; anything else raises ``MalformedMessage``."""
        if not isinstance(data, dict) or {"update", "signature"} - data.keys():
            raise MalformedMessage("a fee announcement is an object with update and signature")
        signature = data["signature"]
        if not (isinstance(signature, str) and re.fullmatch(r"0x[0-9a-fA-F]{128,130}", signature)):
            raise MalformedMessage("a signature is 0x and 128 (or 130) hex digits")
        return cls(FeeUpdate.from_json(data["update"]), Signature.from_bytes(bytes.fromhex(signature[2:])))


def fee_update_digest(domain: Domain, update: FeeUpdate) -> bytes:
    """The EIP-712 digest ``update.node`` signs (the domain of the channel's states)."""
    struct_hash = keccak(
        FEE_UPDATE_TYPEHASH
        + update.channel_id
        + bytes(12)
        + bytes.fromhex(update.node[2:])
        + update.timestamp.to_bytes(32, "big")
        + update.base_fee.to_bytes(32, "big")
        + update.ppm.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


def fee_update_typed_data(domain: Domain, update: FeeUpdate, *, wallet_safe: bool = False) -> dict[str, Any]:
    """``update`` as an EIP-712 ``full_message`` for ``eth_account.Account.sign_typed_data``;
    ``wallet_safe=True``: for a wallet's ``eth_signTypedData_v4`` (integers as decimal strings, bytes as hex),
    as ``paychan.signing.typed_data`` gives a state."""
    message: dict[str, Any] = {
        "channelId": update.channel_id,
        "node": update.node,
        "timestamp": update.timestamp,
        "baseFee": update.base_fee,
        "ppm": update.ppm,
    }
    chain_id: int | str = domain.chain_id
    if wallet_safe:
        message = update.to_json()
        chain_id = str(domain.chain_id)
    inner = FEE_UPDATE_TYPE[FEE_UPDATE_TYPE.index("(") + 1 : -1]
    fields = [{"name": name, "type": kind} for kind, name in (part.split(" ") for part in inner.split(","))]
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "FeeUpdate": fields,
        },
        "primaryType": "FeeUpdate",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": message,
    }


def next_timestamp(now: int, previous: int | None) -> int:
    """The timestamp of a node's next announcement for a channel: its clock (``now``), or one more than its
    previous announcement's if the clock has not moved past it (two updates within a second)."""
    return now if previous is None or now > previous else previous + 1


def sign_fee_update(domain: Domain, update: FeeUpdate, private_key: bytes) -> FeeAnnouncement:
    """``update`` signed with ``private_key`` (which must be ``update.node``'s for anyone to accept it)."""
    return FeeAnnouncement(update, sign_digest(fee_update_digest(domain, update), private_key))


def verify_fee_announcement(domain: Domain, announcement: FeeAnnouncement, params: ChannelParams) -> None:
    """Checks that ``announcement`` is signed by its ``node`` and that the node is a participant of the
    channel ``params`` (whose id the caller matched to ``announcement.update.channel_id``).

    Raises ``NotParticipant(channelId, account)`` for a node that is not one of the channel's two
    participants, ``InvalidSignature(expected, recovered)`` for a signature by anyone else than the node
    (``MalleableSignature`` for a high-s one, ``MalformedMessage`` for one that is not two 32-byte words).
    """
    update = announcement.update
    if update.node not in (params.participant_a, params.participant_b):
        raise NotParticipant(update.channel_id, update.node)
    recovered = recover_digest_signer(fee_update_digest(domain, update), announcement.signature)
    if recovered != update.node:
        raise InvalidSignature(expected=update.node, recovered=recovered)


__all__ = [
    "FEE_UPDATE_TYPE",
    "FEE_UPDATE_TYPEHASH",
    "PPM",
    "FeeAnnouncement",
    "FeePolicy",
    "FeeTooLow",
    "FeeUpdate",
    "check_forward",
    "fee_update_digest",
    "fee_update_typed_data",
    "hop_amounts",
    "next_timestamp",
    "sign_fee_update",
    "verify_fee_announcement",
]
