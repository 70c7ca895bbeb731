"""EIP-712 hashing, signing and signer recovery of channel states.

The digest is computed here word by word (it is on the hot path of every payment) and signed and recovered
with coincurve (libsecp256k1) directly, with key objects, digests and address checksums cached.
``typed_data`` gives the same message in the form ``eth_account.Account.sign_typed_data`` takes, and with
``wallet_safe=True`` in the JSON form a wallet's ``eth_signTypedData_v4`` takes (integers as decimal strings,
bytes as hex); tests prove all of them, and the contract, agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import coincurve
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.exceptions import InvalidSignature, MalformedMessage, MalleableSignature
from paychan.state import ChannelState, Signature

DOMAIN_NAME = "paychan"
DOMAIN_VERSION = "1"
STATE_TYPE = (
    "State(bytes32 channelId,uint48 nonce,uint256 balanceA,uint256 balanceB,uint256 depositA,uint256 depositB,"
    "bytes32 locksRoot,bool isFinal)"
)
STATE_TYPEHASH = keccak(STATE_TYPE.encode())
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
        + _word(state.deposit_a)
        + _word(state.deposit_b)
        + state.locks_root
        + _word(int(state.is_final))
    )


@lru_cache(maxsize=4096)
def state_digest(domain: Domain, state: ChannelState) -> bytes:
    """The 32-byte EIP-712 digest a participant signs for ``state`` (cached: a state is signed and checked)."""
    return keccak(b"\x19\x01" + domain.separator + state_struct_hash(state))


@lru_cache(maxsize=64)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(private_key)


@lru_cache(maxsize=4096)
def _address_of(public_key: bytes) -> str:
    return to_checksum_address(keccak(public_key[1:])[12:])


@lru_cache(maxsize=4096)
def _checksummed(address: str) -> str:
    return to_checksum_address(address)


def sign_state(domain: Domain, state: ChannelState, private_key: bytes) -> Signature:
    """Signs ``state`` with ``private_key``; the signature is low-s and compact (EIP-2098).

    libsecp256k1 (through coincurve) signs deterministically (RFC 6979) and always low-s; the key object is
    cached, as deriving it costs more than the signature.
    """
    signature = _signing_key(bytes(private_key)).sign_recoverable(state_digest(domain, state), hasher=None)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    return Signature.from_vrs(signature[64], r, s)


def recover_signer(domain: Domain, state: ChannelState, signature: Signature) -> str:
    """The address that signed ``state``; the zero address for a signature that recovers no key.

    Raises ``MalleableSignature`` for a high-s signature, as the contract does, and ``MalformedMessage`` for
    anything but two 32-byte words.
    """
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
        public_key = coincurve.PublicKey.from_signature_and_message(compact, state_digest(domain, state), hasher=None)
    except Exception:  # coincurve raises a plain Exception for a signature that recovers no key
        return ZERO_ADDRESS
    return _address_of(public_key.format(compressed=False))


def check_signer(domain: Domain, state: ChannelState, signature: Signature | None, expected: str) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is ``expected``'s signature of ``state``."""
    recovered = ZERO_ADDRESS if signature is None else recover_signer(domain, state, signature)
    if recovered != _checksummed(expected):
        raise InvalidSignature(expected=_checksummed(expected), recovered=recovered)


def typed_data(domain: Domain, state: ChannelState, *, wallet_safe: bool = False) -> dict[str, Any]:
    """``state`` as an EIP-712 ``full_message`` for ``eth_account.Account.sign_typed_data``.

    ``wallet_safe=True``: the same message as plain JSON for a wallet (``eth_signTypedData_v4``): every
    integer a decimal string and every ``bytes32`` a ``0x`` hex string. JavaScript reads JSON numbers as
    doubles, so a balance above 2**53 wei (0.009 ETH) would be refused or silently rounded, and the wallet
    would sign another state; decimal strings are what EIP-712 tooling (ethers, viem, eth_account) accepts.
    """
    message: dict[str, Any] = {
        "channelId": state.channel_id,
        "nonce": state.nonce,
        "balanceA": state.balance_a,
        "balanceB": state.balance_b,
        "depositA": state.deposit_a,
        "depositB": state.deposit_b,
        "locksRoot": state.locks_root,
        "isFinal": state.is_final,
    }
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
            "State": [
                {"name": "channelId", "type": "bytes32"},
                {"name": "nonce", "type": "uint48"},
                {"name": "balanceA", "type": "uint256"},
                {"name": "balanceB", "type": "uint256"},
                {"name": "depositA", "type": "uint256"},
                {"name": "depositB", "type": "uint256"},
                {"name": "locksRoot", "type": "bytes32"},
                {"name": "isFinal", "type": "bool"},
            ],
        },
        "primaryType": "State",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": message,
    }


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
