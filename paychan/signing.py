"""EIP-712 hashing, signing and signer recovery of channel states, revocations and withdrawals.

The digest is computed here word by word (it is on the hot path of every payment) and signed and recovered
with coincurve (libsecp256k1) directly, with key objects, digests and address checksums cached.
``typed_data`` gives the same message in the form ``eth_account.Account.sign_typed_data`` takes, and with
``wallet_safe=True`` in the JSON form a wallet's ``eth_signTypedData_v4`` takes (integers as decimal strings,
bytes as hex); tests prove all of them, and the contract, agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import coincurve
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.exceptions import InvalidSignature, MalformedMessage, MalleableSignature
from paychan.state import ChannelState, Revocation, Signature, Withdrawal

if TYPE_CHECKING:
    from paychan.fees import FeeUpdate

DOMAIN_NAME = "paychan"
DOMAIN_VERSION = "1"
STATE_TYPE = (
    "State(bytes32 channelId,uint48 nonce,uint256 balanceA,uint256 balanceB,uint256 lockedA,uint256 lockedB,"
    "uint256 depositA,uint256 depositB,uint16 withdrawals,bytes32 locksRoot,bool isFinal)"
)
STATE_TYPEHASH = keccak(STATE_TYPE.encode())
REVOCATION_TYPE = "Revocation(bytes32 channelId,uint48 belowNonce)"
REVOCATION_TYPEHASH = keccak(REVOCATION_TYPE.encode())
WITHDRAWAL_TYPE = (
    "Withdrawal(bytes32 channelId,uint256 amountA,uint256 amountB,uint256 depositA,uint256 depositB,"
    "uint16 withdrawals,uint40 expiry)"
)
WITHDRAWAL_TYPEHASH = keccak(WITHDRAWAL_TYPE.encode())
DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain: one deployed contract on one chain."""

    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))
        object.__setattr__(self, "separator", _domain_separator(self.chain_id, self.verifying_contract))

    separator: bytes = field(init=False, repr=False, compare=False)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(DOMAIN_NAME.encode())
        + keccak(DOMAIN_VERSION.encode())
        + _word(chain_id)
        + bytes(12)
        + bytes.fromhex(verifying_contract[2:])
    )


@lru_cache(maxsize=4096)
def state_struct_hash(state: ChannelState) -> bytes:
    """``hashStruct(State)`` (cached: a node hashes each state to store it, sign it and check it)."""
    return keccak(
        STATE_TYPEHASH
        + state.channel_id
        + _word(state.nonce)
        + _word(state.balance_a)
        + _word(state.balance_b)
        + _word(state.locked_a)
        + _word(state.locked_b)
        + _word(state.deposit_a)
        + _word(state.deposit_b)
        + _word(state.withdrawals)
        + state.locks_root
        + _word(int(state.is_final))
    )


@lru_cache(maxsize=4096)
def state_digest(domain: Domain, state: ChannelState) -> bytes:
    """The 32-byte EIP-712 digest a participant signs for ``state`` (cached: a state is signed and checked)."""
    return keccak(b"\x19\x01" + domain.separator + state_struct_hash(state))


def revocation_digest(domain: Domain, revocation: Revocation) -> bytes:
    """The EIP-712 digest a participant signs to revoke every nonce below ``revocation.below_nonce``."""
    struct_hash = keccak(REVOCATION_TYPEHASH + revocation.channel_id + _word(revocation.below_nonce))
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


def withdrawal_digest(domain: Domain, withdrawal: Withdrawal) -> bytes:
    """The EIP-712 digest both participants sign for ``withdrawal``."""
    struct_hash = keccak(
        WITHDRAWAL_TYPEHASH + withdrawal.channel_id + b"".join(_word(v) for v in withdrawal.as_tuple())
    )
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


@runtime_checkable
class TypedStruct(Protocol):
    """Any other EIP-712 struct of static fields (``bytes32``, ``uintN``, ``address``, ``bool``) signed under
    the contract's domain, such as the watchtower's messages (``paychan.tower.protocol``): its type string
    (``Name(type field,...)``) and its field values by name."""

    @property
    def eip712_type(self) -> str: ...

    def eip712_values(self) -> dict[str, Any]: ...


def _static_word(kind: str, value: Any) -> bytes:
    """One field of a ``TypedStruct`` as its 32-byte EIP-712 encoding."""
    if kind == "bytes32":
        if not isinstance(value, bytes) or len(value) != 32:
            raise MalformedMessage("a bytes32 field is 32 bytes")
        return value
    if kind == "address":
        return bytes(12) + bytes.fromhex(_checksummed(value)[2:])
    if kind == "bool":
        return _word(int(bool(value)))
    if kind.startswith("uint") and isinstance(value, int) and 0 <= value < 2 ** int(kind[4:] or 256):
        return _word(value)
    raise MalformedMessage(f"{value!r} is not a {kind}")


def struct_digest(domain: Domain, message: TypedStruct) -> bytes:
    """The EIP-712 digest of a ``TypedStruct``."""
    values = message.eip712_values()
    fields = _cached_type_fields(message.eip712_type)
    encoded = b"".join(_static_word(f["type"], values[f["name"]]) for f in fields)
    struct_hash = keccak(_typehash(message.eip712_type) + encoded)
    return keccak(b"\x19\x01" + domain.separator + struct_hash)


@lru_cache(maxsize=64)
def _typehash(type_string: str) -> bytes:
    return keccak(type_string.encode())


def message_digest(domain: Domain, message: ChannelState | Revocation | Withdrawal | FeeUpdate | TypedStruct) -> bytes:
    """The EIP-712 digest of any of the typed messages (a state, revocation, withdrawal or fee update), or of
    another ``TypedStruct``."""
    if isinstance(message, ChannelState):
        return state_digest(domain, message)
    if isinstance(message, Revocation):
        return revocation_digest(domain, message)
    if isinstance(message, Withdrawal):
        return withdrawal_digest(domain, message)
    from paychan.fees import FeeUpdate, fee_update_digest  # fees imports this module

    if isinstance(message, FeeUpdate):
        return fee_update_digest(domain, message)
    if isinstance(message, TypedStruct):
        return struct_digest(domain, message)
    raise MalformedMessage(f"not a typed message: {type(message).__name__}")


@lru_cache(maxsize=64)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(private_key)


@lru_cache(maxsize=4096)
def _address_of(public_key: bytes) -> str:
    return to_checksum_address(keccak(public_key[1:])[12:])


@lru_cache(maxsize=4096)
def _checksummed(address: str) -> str:
    return to_checksum_address(address)


def sign_digest(digest: bytes, private_key: bytes) -> Signature:
    """Signs a 32-byte digest with ``private_key``; the signature is low-s and compact (EIP-2098).

    libsecp256k1 (through coincurve) signs deterministically (RFC 6979) and always low-s; the key object is
    cached, as deriving it costs more than the signature.
    """
    signature = _signing_key(bytes(private_key)).sign_recoverable(digest, hasher=None)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    return Signature.from_vrs(signature[64], r, s)


def sign_state(domain: Domain, state: ChannelState, private_key: bytes) -> Signature:
    """Signs ``state`` with ``private_key`` (see ``sign_digest``)."""
    return sign_digest(state_digest(domain, state), private_key)


def sign_message(domain: Domain, message: ChannelState | Revocation | Withdrawal, private_key: bytes) -> Signature:
    """Signs a state, revocation or withdrawal with ``private_key`` (see ``sign_digest``)."""
    return sign_digest(message_digest(domain, message), private_key)


def recover_signer(domain: Domain, state: ChannelState, signature: Signature) -> str:
    """The address that signed ``state``; the zero address for a signature that recovers no key.

    Raises ``MalleableSignature`` for a high-s signature, as the contract does, and ``MalformedMessage`` for
    anything but two 32-byte words.
    """
    return recover_digest_signer(state_digest(domain, state), signature)


def recover_digest_signer(digest: bytes, signature: Signature) -> str:
    """The address that signed ``digest`` (see ``recover_signer``)."""
    if not (
        isinstance(signature, Signature)
        and isinstance(signature.r, bytes)
        and isinstance(signature.vs, bytes)
        and len(signature.r) == 32
        and len(signature.vs) == 32
    ):
        raise MalformedMessage("a signature is two 32-byte words (r, vs)")
    if signature.s > HALF_N:
        raise MalleableSignature(s=signature.s.to_bytes(32, "big"))  # bytes32 s, as the contract reports it
    r = int.from_bytes(signature.r, "big")
    if not (0 < r < SECP256K1_N and 0 < signature.s):
        return ZERO_ADDRESS
    compact = signature.r + signature.s.to_bytes(32, "big") + bytes([signature.v - 27])
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except Exception:  # coincurve raises a plain Exception for a signature that recovers no key
        return ZERO_ADDRESS
    return _address_of(public_key.format(compressed=False))


def check_signer(domain: Domain, state: ChannelState, signature: Signature | None, expected: str) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is ``expected``'s signature of ``state``."""
    recovered = ZERO_ADDRESS if signature is None else recover_signer(domain, state, signature)
    if recovered != _checksummed(expected):
        raise InvalidSignature(expected=_checksummed(expected), recovered=recovered)


def check_message_signer(
    domain: Domain, message: ChannelState | Revocation | Withdrawal, signature: Signature | None, expected: str
) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is ``expected``'s signature of ``message``."""
    recovered = ZERO_ADDRESS if signature is None else recover_digest_signer(message_digest(domain, message), signature)
    if recovered != _checksummed(expected):
        raise InvalidSignature(expected=_checksummed(expected), recovered=recovered)


def typed_data(
    domain: Domain,
    state: ChannelState | Revocation | Withdrawal | FeeUpdate | TypedStruct,
    *,
    wallet_safe: bool = False,
) -> dict[str, Any]:
    """``state`` (or a revocation, withdrawal or fee update) as an EIP-712 ``full_message`` for
    ``eth_account.Account.sign_typed_data``.

    ``wallet_safe=True``: the same message as plain JSON for a wallet (``eth_signTypedData_v4``): every
    integer a decimal string and every ``bytes32`` a ``0x`` hex string. JavaScript reads JSON numbers as
    doubles, so a balance above 2**53 wei (0.009 ETH) would be refused or silently rounded, and the wallet
    would sign another state; decimal strings are what EIP-712 tooling (ethers, viem, eth_account) accepts.
    """
    from paychan.fees import FeeUpdate, fee_update_typed_data  # fees imports this module

    if isinstance(state, FeeUpdate):
        return fee_update_typed_data(domain, state, wallet_safe=wallet_safe)
    primary, fields, message = _typed_fields(state)
    chain_id: int | str = domain.chain_id
    if wallet_safe:
        message = {key: _wallet_value(value) for key, value in message.items()}
        chain_id = str(domain.chain_id)
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            primary: fields,
        },
        "primaryType": primary,
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": message,
    }


@lru_cache(maxsize=64)
def _cached_type_fields(type_string: str) -> tuple[dict[str, str], ...]:
    return tuple(_type_fields(type_string))


def _type_fields(type_string: str) -> list[dict[str, str]]:
    """``[{"name", "type"}, ...]`` of an EIP-712 type string such as ``STATE_TYPE``."""
    inner = type_string[type_string.index("(") + 1 : -1]
    return [{"name": name, "type": kind} for kind, name in (part.split(" ") for part in inner.split(","))]


def _typed_fields(
    message: ChannelState | Revocation | Withdrawal | TypedStruct,
) -> tuple[str, list[dict[str, str]], dict[str, Any]]:
    if isinstance(message, ChannelState):
        values: dict[str, Any] = {
            "channelId": message.channel_id,
            "nonce": message.nonce,
            "balanceA": message.balance_a,
            "balanceB": message.balance_b,
            "lockedA": message.locked_a,
            "lockedB": message.locked_b,
            "depositA": message.deposit_a,
            "depositB": message.deposit_b,
            "withdrawals": message.withdrawals,
            "locksRoot": message.locks_root,
            "isFinal": message.is_final,
        }
        return "State", _type_fields(STATE_TYPE), values
    if isinstance(message, Revocation):
        values = {"channelId": message.channel_id, "belowNonce": message.below_nonce}
        return "Revocation", _type_fields(REVOCATION_TYPE), values
    if isinstance(message, Withdrawal):
        values = {
            "channelId": message.channel_id,
            "amountA": message.amount_a,
            "amountB": message.amount_b,
            "depositA": message.deposit_a,
            "depositB": message.deposit_b,
            "withdrawals": message.withdrawals,
            "expiry": message.expiry,
        }
        return "Withdrawal", _type_fields(WITHDRAWAL_TYPE), values
    if isinstance(message, TypedStruct):
        type_string = message.eip712_type
        return type_string[: type_string.index("(")], _type_fields(type_string), dict(message.eip712_values())
    raise MalformedMessage(f"not a typed message: {type(message).__name__}")


def _wallet_value(value: Any) -> Any:
    """A message field as JSON a JavaScript wallet reads exactly: integers (not bools) as decimal strings,
    bytes as ``0x`` hex."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value
