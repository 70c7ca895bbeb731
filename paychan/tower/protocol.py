"""What a client sends a watchtower: a ``Push``, signed by the client's participant key.

A push carries, for one channel: the latest doubly-signed state (``signed``) and its lock list (``locks``,
whose root the state commits to), the counterparty's highest revocation (``revocation``, a
``SignedRevocation`` of every nonce below ``below_nonce``), the secrets of the client's incoming locks
(``secrets``) and whether the tower should settle after the deadline (``settle``). The client signs the
EIP-712 ``TowerPush`` struct (``PUSH_TYPE``) under the contract's own domain, which binds all of it: the
state by its struct hash, the secrets by the hash of their concatenation. So no one but a participant can
register a channel with a tower or overwrite what it holds, and a push cannot be moved to another channel,
chain or contract.

A push is checked (``verify_push``) against the channel's participants as the chain announced them
(``ChannelOpened``, which the tower follows: a push for a channel it has not seen is refused with no chain
call): the client is a participant and signed the push, both participants signed the state, the lock list
matches the root, the revocation is the counterparty's, each secret opens one of the client's incoming locks.
Then ``accept`` keeps only the newest: a push of an older nonce than the one held, or of the same nonce that
adds nothing (no new secret, no higher revocation), raises ``StalePush``.

In JSON (``to_json``/``parse_push``), every integer above 2**53 is a decimal string and every byte string
``0x`` hex, as wallets sign them (``typed_data(..., wallet_safe=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.channel import MAX_LOCKS
from paychan.exceptions import LocksMismatch, MalformedMessage, PaychanError
from paychan.node.messages import SignedRevocation, parse_revocation, parse_signed
from paychan.signers import Signer
from paychan.signing import Domain, check_message_signer, check_signer, recover_digest_signer, state_struct_hash
from paychan.signing import message_digest as _message_digest
from paychan.state import (
    ChannelId,
    ChannelParams,
    Lock,
    Revocation,
    Signature,
    SignedState,
    hashlock,
    locks_root,
)

PUSH_TYPE = (
    "TowerPush(bytes32 channelId,uint48 nonce,bytes32 stateHash,uint48 revokedBelow,bytes32 secretsHash,bool settle)"
)
MAX_SECRETS = MAX_LOCKS  # one per incoming lock at most
MAX_PUSHES_PER_REQUEST = 256  # a client batches its channels' pushes; more in one request is refused unread


class TowerError(PaychanError):
    """Base of what a tower refuses; ``http_status`` is the status its service answers with."""

    http_status = 400


class StalePush(TowerError):
    """Raised when a push is not newer than what the tower holds for the channel and client: a lower state
    nonce than ``held_nonce``, or the same nonce with no new secret and no higher revocation."""

    http_status = 409

    def __init__(self, channel_id: bytes, pushed_nonce: int, held_nonce: int) -> None:
        self.channel_id, self.pushed_nonce, self.held_nonce = channel_id, pushed_nonce, held_nonce
        super().__init__(
            f"StalePush(channel=0x{channel_id.hex()}, pushedNonce={pushed_nonce}, heldNonce={held_nonce}): "
            "the tower holds a state at least as new"
        )


class ForgedPush(TowerError):
    """Base of the refusals of a push that is not what a participant of the channel signed."""

    http_status = 403


class NotAParticipant(ForgedPush):
    """Raised when the push's ``client`` is not a participant of channel ``channel_id``."""

    def __init__(self, channel_id: bytes, client: str) -> None:
        self.channel_id, self.client = channel_id, client
        super().__init__(f"NotAParticipant(channel=0x{channel_id.hex()}, client={client})")


class WrongPushSigner(ForgedPush):
    """Raised when the push's signature recovers to ``recovered``, not to its ``client``."""

    def __init__(self, client: str, recovered: str) -> None:
        self.client, self.recovered = client, recovered
        super().__init__(f"WrongPushSigner(client={client}, recovered={recovered})")


class OtherChannel(ForgedPush):
    """Raised when the pushed state (or revocation) belongs to ``state_channel`` instead of ``channel_id``."""

    def __init__(self, channel_id: bytes, state_channel: bytes) -> None:
        self.channel_id, self.state_channel = channel_id, state_channel
        super().__init__(f"OtherChannel(channel=0x{channel_id.hex()}, stateChannel=0x{state_channel.hex()})")


class UselessSecret(TowerError):
    """Raised when a pushed secret opens none of the client's incoming locks of the pushed state."""

    def __init__(self, hashlock: bytes) -> None:
        self.hashlock = hashlock
        super().__init__(f"UselessSecret(hashlock=0x{hashlock.hex()}): no incoming lock of the state has it")


class UnknownTowerChannel(TowerError):
    """Raised for a push of a channel the tower has not seen opened on chain (up to block ``scanned_to``)."""

    http_status = 404

    def __init__(self, channel_id: bytes, scanned_to: int) -> None:
        self.channel_id, self.scanned_to = channel_id, scanned_to
        super().__init__(
            f"UnknownTowerChannel(channel=0x{channel_id.hex()}, scannedTo={scanned_to}): "
            "no ChannelOpened event of this channel up to that block"
        )


class ChannelNotWatchable(TowerError):
    """Raised for a push of a channel that is already settled on chain: nothing is left to defend."""

    http_status = 410

    def __init__(self, channel_id: bytes) -> None:
        self.channel_id = channel_id
        super().__init__(f"ChannelNotWatchable(channel=0x{channel_id.hex()}): the channel is settled")


class TowerFull(TowerError):
    """Raised when the tower already watches ``capacity`` channel-client pairs and is handed a new one."""

    http_status = 507

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(f"TowerFull(capacity={capacity}): the tower watches no more channels")


# --- the signed message ----------------------------------------------------------------------------


def secrets_hash(secrets: tuple[bytes, ...]) -> bytes:
    """``keccak256`` of the secrets' concatenation, in order (of none: ``keccak256("")``)."""
    return keccak(b"".join(secrets))


@dataclass(frozen=True)
class PushMessage:
    """The EIP-712 ``TowerPush`` struct a client signs (a ``paychan.signing.TypedStruct``)."""

    channel_id: bytes
    nonce: int
    state_hash: bytes
    revoked_below: int
    secrets_hash: bytes
    settle: bool

    @property
    def eip712_type(self) -> str:
        return PUSH_TYPE

    def eip712_values(self) -> dict[str, Any]:
        return {
            "channelId": self.channel_id,
            "nonce": self.nonce,
            "stateHash": self.state_hash,
            "revokedBelow": self.revoked_below,
            "secretsHash": self.secrets_hash,
            "settle": self.settle,
        }


@dataclass(frozen=True)
class Push:
    """One channel's data a client hands its tower (see the module docstring)."""

    channel_id: ChannelId
    client: str
    signed: SignedState
    locks: tuple[Lock, ...]
    revocation: SignedRevocation | None
    secrets: tuple[bytes, ...]
    settle: bool
    signature: Signature

    @property
    def nonce(self) -> int:
        return int(self.signed.state.nonce)

    @property
    def revoked_below(self) -> int:
        return 0 if self.revocation is None else self.revocation.below_nonce

    def message(self) -> PushMessage:
        return push_message(self.channel_id, self.signed, self.revocation, self.secrets, self.settle)

    def to_json(self) -> dict[str, Any]:
        return {
            "channelId": "0x" + self.channel_id.hex(),
            "client": self.client,
            "signed": self.signed.to_json(),
            "locks": [lock.to_json() for lock in self.locks],
            "revocation": None if self.revocation is None else self.revocation.to_json(),
            "secrets": ["0x" + secret.hex() for secret in self.secrets],
            "settle": self.settle,
            "signature": "0x" + self.signature.to_bytes().hex(),
        }


def push_message(
    channel_id: bytes,
    signed: SignedState,
    revocation: SignedRevocation | None,
    secrets: tuple[bytes, ...],
    settle: bool,
) -> PushMessage:
    return PushMessage(
        channel_id,
        int(signed.state.nonce),
        state_struct_hash(signed.state),
        0 if revocation is None else revocation.below_nonce,
        secrets_hash(secrets),
        settle,
    )


def sign_push(
    signer: Signer,
    domain: Domain,
    signed: SignedState,
    locks: tuple[Lock, ...] = (),
    revocation: SignedRevocation | None = None,
    secrets: tuple[bytes, ...] = (),
    settle: bool = False,
) -> Push:
    """The push of ``signed`` (and the rest) for ``signed``'s channel, signed by ``signer`` (a participant)."""
    cid = ChannelId(bytes(signed.state.channel_id))
    signature = signer.sign_typed(domain, push_message(cid, signed, revocation, secrets, settle))
    return Push(cid, signer.address, signed, tuple(locks), revocation, tuple(secrets), settle, signature)


# --- parsing ---------------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


_PUSH_FIELDS = {"channelId", "client", "signed", "locks", "revocation", "secrets", "settle", "signature"}


def _hex_bytes(value: Any, size: int, what: str) -> bytes:
    if not (isinstance(value, str) and value.startswith("0x") and len(value) == 2 + 2 * size):
        raise MalformedMessage(f"{what} must be 0x and {2 * size} hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedMessage(f"{what} must be 0x and {2 * size} hex digits") from None


def parse_push(obj: Any) -> Push:
    """A push from its JSON form (``Push.to_json``); anything else raises ``MalformedMessage``. Checks the
    form and the bounds only (``verify_push`` checks the signatures)."""
    if not isinstance(obj, dict):
        raise MalformedMessage("a push must be an object")
    if obj.keys() != _PUSH_FIELDS:
        raise MalformedMessage(f"a push has exactly the fields {', '.join(sorted(_PUSH_FIELDS))}")
    client = obj["client"]
    if not (isinstance(client, str) and len(client) == 42 and client.startswith("0x")):
        raise MalformedMessage("client must be a 0x-prefixed address")
    try:
        client = _checksum(client)
    except ValueError:
        raise MalformedMessage("client must be a 0x-prefixed address") from None
    locks, secrets = obj["locks"], obj["secrets"]
    if not isinstance(locks, list) or len(locks) > MAX_LOCKS:
        raise MalformedMessage(f"locks must be a list of at most {MAX_LOCKS} locks")
    if not isinstance(secrets, list) or len(secrets) > MAX_SECRETS:
        raise MalformedMessage(f"secrets must be a list of at most {MAX_SECRETS} secrets")
    parsed_secrets = tuple(_hex_bytes(s, 32, "a secret") for s in secrets)
    if len(set(parsed_secrets)) != len(parsed_secrets):
        raise MalformedMessage("a secret is pushed twice")
    if not isinstance(obj["settle"], bool):
        raise MalformedMessage("settle must be true or false")
    signed = parse_signed(obj["signed"])
    if signed.sig_a is None or signed.sig_b is None:
        raise MalformedMessage("the pushed state must carry both signatures")
    return Push(
        ChannelId(_hex_bytes(obj["channelId"], 32, "channelId")),
        client,
        signed,
        tuple(Lock.from_json(lock) for lock in locks),
        parse_revocation(obj["revocation"]),
        parsed_secrets,
        obj["settle"],
        Signature.from_bytes(_hex_bytes(obj["signature"], 64, "signature")),
    )


def parse_pushes(body: dict[str, Any]) -> list[Any]:
    """The raw pushes of a request body ``{"pushes": [...]}`` (each parsed on its own: one bad push does not
    refuse the others)."""
    if body.keys() != {"pushes"} or not isinstance(body["pushes"], list):
        raise MalformedMessage('a push request is {"pushes": [...]}')
    if not 1 <= len(body["pushes"]) <= MAX_PUSHES_PER_REQUEST:
        raise MalformedMessage(f"a push request carries 1 to {MAX_PUSHES_PER_REQUEST} pushes")
    return list(body["pushes"])


# --- checking --------------------------------------------------------------------------------------


def verify_push(push: Push, domain: Domain, params: ChannelParams) -> str:
    """Checks that ``push`` is what a participant of the channel of ``params`` (as the chain announced it)
    signed, about that channel; returns the client's role (``"A"`` or ``"B"``). Raises ``ForgedPush``
    (``NotAParticipant``, ``WrongPushSigner``, ``OtherChannel``), ``InvalidSignature`` (a state not signed by
    both, a revocation not the counterparty's), ``LocksMismatch`` or ``UselessSecret``."""
    state = push.signed.state
    if state.channel_id != push.channel_id:
        raise OtherChannel(push.channel_id, state.channel_id)
    try:
        role = params.role_of(push.client)
    except ValueError:
        raise NotAParticipant(push.channel_id, push.client) from None
    recovered = recover_digest_signer(_message_digest(domain, push.message()), push.signature)
    if recovered != push.client:
        raise WrongPushSigner(push.client, recovered)
    check_signer(domain, state, push.signed.sig_a, params.participant_a)
    check_signer(domain, state, push.signed.sig_b, params.participant_b)
    computed = locks_root(list(push.locks))
    if computed != state.locks_root:
        raise LocksMismatch(locksRoot=state.locks_root, computed=computed)
    if push.revocation is not None:
        counterparty = params.participant_b if role == "A" else params.participant_a
        revocation = Revocation(push.channel_id, push.revocation.below_nonce)
        check_message_signer(domain, revocation, push.revocation.signature, counterparty)
    incoming = {lock.hashlock for lock in push.locks if lock.receiver == role}
    for secret in push.secrets:
        if hashlock(secret) not in incoming:
            raise UselessSecret(hashlock(secret))
    return role


def accept(held: Push | None, pushed: Push) -> Push:
    """What the tower holds after the verified ``pushed`` arrives where it held ``held`` (same channel and
    client). A newer nonce replaces the held push, keeping the higher revocation and the held secrets of
    locks the new state still has; the same nonce is accepted only if it adds a secret or a higher
    revocation (merged); anything else raises ``StalePush`` and changes nothing."""
    if held is None:
        return pushed
    if pushed.nonce < held.nonce:
        raise StalePush(pushed.channel_id, pushed.nonce, held.nonce)
    if (
        pushed.nonce == held.nonce
        and set(pushed.secrets) <= set(held.secrets)
        and (pushed.revoked_below <= held.revoked_below)
    ):
        raise StalePush(pushed.channel_id, pushed.nonce, held.nonce)
    revocation = pushed.revocation
    if held.revoked_below > pushed.revoked_below:
        revocation = held.revocation
    still_locked = {lock.hashlock for lock in pushed.locks}
    kept = tuple(s for s in held.secrets if hashlock(s) in still_locked and s not in pushed.secrets)
    return Push(
        pushed.channel_id,
        pushed.client,
        pushed.signed,
        pushed.locks,
        revocation,
        pushed.secrets + kept,
        pushed.settle,
        pushed.signature,
    )


# --- fetching what is held (a client restored from a backup) ---------------------------------------

FETCH_TYPE = "TowerFetch(bytes32 channelId,uint64 issuedAt)"
FETCH_WINDOW = 300  # seconds a signed fetch is valid around the tower's clock (a replay shows the client its own data)


class StaleFetch(TowerError):
    """Raised for a fetch signed at ``issued_at``, more than ``FETCH_WINDOW`` seconds from the tower's ``now``."""

    def __init__(self, issued_at: int, now: int) -> None:
        self.issued_at, self.now = issued_at, now
        super().__init__(f"StaleFetch(issuedAt={issued_at}, now={now}): sign the fetch again")


@dataclass(frozen=True)
class FetchMessage:
    """The EIP-712 ``TowerFetch`` a client signs to read back what the tower holds of one channel for it."""

    channel_id: bytes
    issued_at: int

    @property
    def eip712_type(self) -> str:
        return FETCH_TYPE

    def eip712_values(self) -> dict[str, Any]:
        return {"channelId": self.channel_id, "issuedAt": self.issued_at}


def sign_fetch(signer: Signer, domain: Domain, channel_id: bytes, issued_at: int) -> dict[str, Any]:
    """The JSON of a fetch request signed by ``signer``."""
    signature = signer.sign_typed(domain, FetchMessage(channel_id, issued_at))
    return {
        "channelId": "0x" + channel_id.hex(),
        "client": signer.address,
        "issuedAt": issued_at,
        "signature": "0x" + signature.to_bytes().hex(),
    }


def verify_fetch(obj: Any, domain: Domain, now: int) -> tuple[ChannelId, str]:
    """The channel and client of a signed fetch request; ``MalformedMessage``, ``StaleFetch`` or
    ``WrongPushSigner`` if it is not one, not fresh, or not signed by its client."""
    if not isinstance(obj, dict) or obj.keys() != {"channelId", "client", "issuedAt", "signature"}:
        raise MalformedMessage("a fetch has exactly the fields channelId, client, issuedAt, signature")
    cid = ChannelId(_hex_bytes(obj["channelId"], 32, "channelId"))
    client = _hex_bytes(obj["client"], 20, "client")
    issued_at = obj["issuedAt"]
    if isinstance(issued_at, bool) or not isinstance(issued_at, int) or not 0 <= issued_at < 2**64:
        raise MalformedMessage("issuedAt must be a unix time")
    if abs(issued_at - now) > FETCH_WINDOW:
        raise StaleFetch(issued_at, now)
    signature = Signature.from_bytes(_hex_bytes(obj["signature"], 64, "signature"))
    address = _checksum("0x" + client.hex())
    recovered = recover_digest_signer(_message_digest(domain, FetchMessage(cid, issued_at)), signature)
    if recovered != address:
        raise WrongPushSigner(address, recovered)
    return cid, address
