"""The JSON wire format between nodes: EIP-712 signed states plus metadata, parsed strictly.

Every peer message is one JSON object with a ``type`` and a protocol ``version``. A signed state travels as
``{"state": {channelId, nonce, balanceA, balanceB, lockedA, lockedB, depositA, depositB, withdrawals, locksRoot,
isFinal}, "sigA": "0x…" | null, "sigB": …}``: byte strings as ``0x`` hex of exact length, the nonce and the
withdrawal counter as JSON integers, balances, locked totals and deposits as decimal strings (they are uint256).
Every field is required (all our nodes speak contract v2). A revocation travels as ``{"belowNonce": n,
"signature": "0x…"}``. A proposal that adds, settles or expires a lock says so in ``ops``, a list beside
``states`` (same length; ``null`` for a plain payment): ``{"lock": {sender, amount, expiry, hashlock}}``,
``{"settle": "0x<secret>"}`` or ``{"expire": "0x<hashlock>"}``; a message without locks omits ``ops``.
Parsing refuses anything else — unknown or duplicate keys, floats, NaN, wrong lengths, too many states — with
``MalformedMessage``; the HTTP layer limits the body size before anything is parsed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from paychan.exceptions import ContractCustomError, MalformedMessage, PaychanError
from paychan.node.auth import recover_digest_signer, sign_digest
from paychan.signing import Domain
from paychan.state import (
    MAX_NONCE,
    MAX_UINT40,
    MAX_UINT256,
    ChannelId,
    ChannelParams,
    ChannelState,
    Lock,
    Nonce,
    Signature,
    SignedState,
    Wei,
)

PROTOCOL_VERSION = 1
MAX_BODY_BYTES = 1 << 20  # 1 MiB: ~2,500 signed states; anything bigger is refused unread
MAX_STATES_PER_MESSAGE = 1024

_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}\Z")
_HEX64 = re.compile(r"0x[0-9a-fA-F]{128}\Z")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,77})\Z")


# --- decoding -------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedMessage(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise MalformedMessage(f"{name} is not a number")


def _no_float(text: str) -> Any:
    raise MalformedMessage(f"non-integer number {text[:20]}")


def decode_json(body: bytes) -> dict[str, Any]:
    """Parses a message body: UTF-8 JSON, one object, no duplicate keys, integers only."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedMessage(f"message of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_no_float)
    except MalformedMessage:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(value).__name__}")
    return value


def _fields(obj: Any, what: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{what} must be an object")
    missing = required - obj.keys()
    if missing:
        raise MalformedMessage(f"{what} lacks {', '.join(sorted(missing))}")
    unknown = obj.keys() - required - optional
    if unknown:
        raise MalformedMessage(f"{what} has unknown field(s) {', '.join(sorted(unknown))}")
    return obj


def _hex(value: Any, pattern: re.Pattern[str], what: str) -> bytes:
    if not isinstance(value, str) or not pattern.match(value):
        raise MalformedMessage(f"{what} must be 0x-prefixed hex of the right length")
    return bytes.fromhex(value[2:])


def _integer(value: Any, what: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MalformedMessage(f"{what} must be an integer in [0, {maximum}]")
    return value


def _uint256(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise MalformedMessage(f"{what} must be a decimal string")
    number = int(value)
    if number > MAX_UINT256:
        raise MalformedMessage(f"{what} exceeds 2**256 - 1")
    return number


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedMessage(f"{what} must be true or false")
    return value


def _signature(value: Any, what: str) -> Signature | None:
    if value is None:
        return None
    return Signature.from_bytes(_hex(value, _HEX64, what))


def parse_state(obj: Any) -> ChannelState:
    data = _fields(
        obj,
        "state",
        {
            "channelId",
            "nonce",
            "balanceA",
            "balanceB",
            "lockedA",
            "lockedB",
            "depositA",
            "depositB",
            "withdrawals",
            "locksRoot",
            "isFinal",
        },
    )
    return ChannelState(
        ChannelId(_hex(data["channelId"], _HEX32, "channelId")),
        Nonce(_integer(data["nonce"], "nonce", MAX_NONCE)),
        Wei(_uint256(data["balanceA"], "balanceA")),
        Wei(_uint256(data["balanceB"], "balanceB")),
        _hex(data["locksRoot"], _HEX32, "locksRoot"),
        _boolean(data["isFinal"], "isFinal"),
        deposit_a=Wei(_uint256(data["depositA"], "depositA")),
        deposit_b=Wei(_uint256(data["depositB"], "depositB")),
        locked_a=Wei(_uint256(data["lockedA"], "lockedA")),
        locked_b=Wei(_uint256(data["lockedB"], "lockedB")),
        withdrawals=_integer(data["withdrawals"], "withdrawals", 0xFFFF),
    )


def parse_signed(obj: Any) -> SignedState:
    data = _fields(obj, "signed state", {"state", "sigA", "sigB"})
    return SignedState(parse_state(data["state"]), _signature(data["sigA"], "sigA"), _signature(data["sigB"], "sigB"))


def parse_channel_id(value: Any) -> ChannelId:
    return ChannelId(_hex(value, _HEX32, "channelId"))


def encode_signed(signed: SignedState) -> dict[str, Any]:
    return signed.to_json()


# --- messages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRevocation:
    """The sender's signed revocation of every nonce of the channel below ``below_nonce``."""

    below_nonce: int
    signature: Signature

    def to_json(self) -> dict[str, Any]:
        return {"belowNonce": self.below_nonce, "signature": "0x" + self.signature.to_bytes().hex()}


def parse_revocation(obj: Any) -> SignedRevocation | None:
    if obj is None:
        return None
    data = _fields(obj, "revocation", {"belowNonce", "signature"})
    signature = _signature(data["signature"], "signature")
    if signature is None:
        raise MalformedMessage("a revocation must be signed")
    return SignedRevocation(_integer(data["belowNonce"], "belowNonce", MAX_NONCE), signature)


@dataclass(frozen=True)
class AddLock:
    """The proposal adds ``lock`` (from the proposer's balance; ``Channel.receive_proposal(lock=...)``)."""

    lock: Lock

    def to_json(self) -> dict[str, Any]:
        return {"lock": self.lock.to_json()}


@dataclass(frozen=True)
class SettleLock:
    """The proposal moves the lock of ``hashlock(secret)`` to its receiver (``receive_proposal(settle=...)``)."""

    secret: bytes

    def to_json(self) -> dict[str, Any]:
        return {"settle": "0x" + self.secret.hex()}


@dataclass(frozen=True)
class ExpireLock:
    """The proposal gives the proposer's expired lock of ``hashlock`` back (``receive_proposal(expire=...)``)."""

    hashlock: bytes

    def to_json(self) -> dict[str, Any]:
        return {"expire": "0x" + self.hashlock.hex()}


LockOp = AddLock | SettleLock | ExpireLock


def parse_op(obj: Any) -> LockOp | None:
    """One entry of a proposal's ``ops``: null, or exactly one of lock, settle, expire."""
    if obj is None:
        return None
    if not isinstance(obj, dict) or len(obj) != 1:
        raise MalformedMessage("an op is null or an object with one of lock, settle, expire")
    if "lock" in obj:
        data = _fields(obj["lock"], "lock", {"sender", "amount", "expiry", "hashlock"})
        if data["sender"] not in ("A", "B"):
            raise MalformedMessage("a lock's sender is 'A' or 'B'")
        return AddLock(
            Lock(
                str(data["sender"]),
                _uint256(data["amount"], "amount"),
                _integer(data["expiry"], "expiry", MAX_UINT40),
                _hex(data["hashlock"], _HEX32, "hashlock"),
            )
        )
    if "settle" in obj:
        return SettleLock(_hex(obj["settle"], _HEX32, "secret"))
    if "expire" in obj:
        return ExpireLock(_hex(obj["expire"], _HEX32, "hashlock"))
    raise MalformedMessage(f"unknown op {next(iter(obj))!r}")


@dataclass(frozen=True)
class Propose:
    """States the sender signed, in nonce order, for the receiver to countersign (``POST /peer/propose``),
    with the sender's revocation below the last nonce it completed (if it has a new one), and what each
    state does to the locks (``ops``, beside ``states``; empty: plain payments only)."""

    channel_id: ChannelId
    epoch: int
    states: list[SignedState]
    revocation: SignedRevocation | None = None
    ops: tuple[LockOp | None, ...] = ()
    handover: bool = False  # the sender gave up the turn with these states: the receiver takes it (epoch)

    def op(self, index: int) -> LockOp | None:
        """What the ``index``-th state does to the locks (None: a plain payment)."""
        return self.ops[index] if self.ops else None

    def to_json(self) -> dict[str, Any]:
        body = {
            "type": "propose",
            "version": PROTOCOL_VERSION,
            "channelId": "0x" + self.channel_id.hex(),
            "epoch": self.epoch,
            "states": [encode_signed(s) for s in self.states],
        }
        if self.revocation is not None:
            body["revocation"] = self.revocation.to_json()
        if any(op is not None for op in self.ops):
            if len(self.ops) != len(self.states):
                raise ValueError("one op (or None) per state")
            body["ops"] = [None if op is None else op.to_json() for op in self.ops]
        if self.handover:
            body["handover"] = True
        return body


TURN_PREFIX = b"\x19paychan turn\x00"  # 0x19 then not 0x01: never the prefix of an EIP-712 digest


def turn_digest(domain: Domain, channel_id: bytes, epoch: int) -> bytes:
    """What a node signs to ask for, or hand over, the turn at ``epoch`` of a channel."""
    return keccak(TURN_PREFIX + domain.separator + channel_id + epoch.to_bytes(32, "big"))


@dataclass(frozen=True)
class TurnMessage:
    """``POST /peer/turn`` and its answer: the sender's turn epoch, signed by the sender.

    The request carries the requester's epoch; the answer the holder's epoch after handing the turn over.
    Both are signed, so no third party can move a node's epoch (which would let both sides propose).
    """

    channel_id: ChannelId
    epoch: int
    signature: Signature

    @classmethod
    def create(cls, domain: Domain, channel_id: ChannelId, epoch: int, private_key: bytes) -> TurnMessage:
        return cls(channel_id, epoch, sign_digest(private_key, turn_digest(domain, channel_id, epoch)))

    def signer(self, domain: Domain) -> str:
        """The address that signed this message; the zero address if the signature recovers none."""
        return recover_digest_signer(turn_digest(domain, self.channel_id, self.epoch), self.signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "turn",
            "version": PROTOCOL_VERSION,
            "channelId": "0x" + self.channel_id.hex(),
            "epoch": self.epoch,
            "signature": "0x" + self.signature.to_bytes().hex(),
        }


@dataclass(frozen=True)
class Announce:
    """Tells the counterparty where the sender's node listens for a channel both are in (``POST /peer/channels``).

    Signed like every peer request; the receiver takes the URL only from the channel's other participant,
    and only if the announce is newer than the one that set the URL it has (by the signed timestamp)."""

    params: ChannelParams
    peer_url: str
    chain_id: int
    contract: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "announce",
            "version": PROTOCOL_VERSION,
            "params": self.params.to_json(),
            "peerUrl": self.peer_url,
            "chainId": self.chain_id,
            "contract": self.contract,
        }


def _check_header(data: dict[str, Any], kind: str) -> None:
    if data.get("type") != kind:
        raise MalformedMessage(f"expected a {kind!r} message")
    if data.get("version") != PROTOCOL_VERSION:
        raise MalformedMessage(f"unsupported protocol version {data.get('version')!r}")


def parse_propose(body: bytes) -> Propose:
    data = _fields(
        decode_json(body),
        "propose",
        {"type", "version", "channelId", "epoch", "states"},
        {"revocation", "ops", "handover"},
    )
    _check_header(data, "propose")
    states = data["states"]
    if not isinstance(states, list) or not 1 <= len(states) <= MAX_STATES_PER_MESSAGE:
        raise MalformedMessage(f"states must be a list of 1 to {MAX_STATES_PER_MESSAGE} signed states")
    ops = data.get("ops", [])
    if "ops" in data and (not isinstance(ops, list) or len(ops) != len(states)):
        raise MalformedMessage("ops must be a list with one entry (null or an op) per state")
    handover = data.get("handover", False)
    if not isinstance(handover, bool):
        raise MalformedMessage("handover is true or false")
    return Propose(
        parse_channel_id(data["channelId"]),
        _integer(data["epoch"], "epoch", 2**62),
        [parse_signed(s) for s in states],
        parse_revocation(data.get("revocation")),
        tuple(parse_op(op) for op in ops),
        handover,
    )


def parse_turn(body: bytes | dict[str, Any]) -> TurnMessage:
    data = _fields(
        body if isinstance(body, dict) else decode_json(body),
        "turn",
        {"type", "version", "channelId", "epoch", "signature"},
    )
    _check_header(data, "turn")
    signature = _signature(data["signature"], "signature")
    if signature is None:
        raise MalformedMessage("a turn message must be signed")
    return TurnMessage(parse_channel_id(data["channelId"]), _integer(data["epoch"], "epoch", 2**62), signature)


def parse_announce(body: bytes) -> Announce:
    data = _fields(decode_json(body), "announce", {"type", "version", "params", "peerUrl", "chainId", "contract"})
    _check_header(data, "announce")
    params = _fields(data["params"], "params", {"participantA", "participantB", "asset", "challengePeriod", "number"})
    for key in ("participantA", "participantB", "asset"):
        _hex(params[key], _ADDRESS, key)
    peer_url = data["peerUrl"]
    if not isinstance(peer_url, str) or not re.match(r"https?://[^\s]{1,200}\Z", peer_url):
        raise MalformedMessage("peerUrl must be an http(s) URL")
    _hex(data["contract"], _ADDRESS, "contract")
    return Announce(
        ChannelParams(
            params["participantA"],
            params["participantB"],
            params["asset"],
            _integer(params["challengePeriod"], "challengePeriod", 2**32 - 1),
            _integer(params["number"], "number", 2**64 - 1),
        ),
        peer_url,
        _integer(data["chainId"], "chainId", 2**64),
        data["contract"],
    )


# --- errors ---------------------------------------------------------------------------------------


def error_body(exc: BaseException) -> dict[str, Any]:
    """An error response: the exception's class name, its message and, when it has them, its fields."""
    fields: dict[str, Any] = {}
    if isinstance(exc, ContractCustomError):
        fields = dict(exc.values)
    elif isinstance(exc, PaychanError):
        fields = {k: v for k, v in vars(exc).items() if not k.startswith("_") and isinstance(v, (int, str, bytes))}
    encoded = {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in fields.items()}
    encoded = {
        k: (str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 else v)
        for k, v in encoded.items()
    }
    return {"error": {"type": type(exc).__name__, "message": str(exc), "fields": encoded}}
