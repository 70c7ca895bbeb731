"""EIP-712 hashing, signing and signer recovery of channel states.

The digest is computed here word by word (it is on the hot path of every payment) and signed with
eth-keys, which uses coincurve when it is installed. ``typed_data`` gives the same message in the form
``eth_account.Account.sign_typed_data`` takes; tests prove both, and the contract, agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_hash.auto import keccak
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import to_checksum_address

from paychan.exceptions import InvalidSignature, MalleableSignature
from paychan.state import ChannelState, Signature

DOMAIN_NAME = "paychan"
DOMAIN_VERSION = "1"
STATE_TYPE = (
    "State(bytes32 channelId,uint48 nonce,uint256 balanceA,uint256 balanceB,bytes32 locksRoot,bool isFinal)"
)
STATE_TYPEHASH = keccak(STATE_TYPE.encode())
DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
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


def state_struct_hash(state: ChannelState) -> bytes:
    """``hashStruct(State)``."""
    return keccak(
        STATE_TYPEHASH
        + state.channel_id
        + _word(state.nonce)
        + _word(state.balance_a)
        + _word(state.balance_b)
        + state.locks_root
        + _word(int(state.is_final))
    )


def state_digest(domain: Domain, state: ChannelState) -> bytes:
    """The 32-byte EIP-712 digest a participant signs for ``state``."""
    return keccak(b"\x19\x01" + domain.separator + state_struct_hash(state))


def sign_state(domain: Domain, state: ChannelState, private_key: bytes) -> Signature:
    """Signs ``state`` with ``private_key``; the signature is low-s and compact (EIP-2098)."""
    signature = keys.PrivateKey(private_key).sign_msg_hash(state_digest(domain, state))
    return Signature.from_vrs(signature.v, signature.r, signature.s)


def recover_signer(domain: Domain, state: ChannelState, signature: Signature) -> str:
    """The address that signed ``state``; the zero address for a signature that recovers no key.

    Raises ``MalleableSignature`` for a high-s signature, as the contract does.
    """
    if signature.s > HALF_N:
        raise MalleableSignature(s=signature.s.to_bytes(32, "big"))  # bytes32 s, as the contract reports it
    r = int.from_bytes(signature.r, "big")
    try:
        public_key = keys.Signature(vrs=(signature.v - 27, r, signature.s)).recover_public_key_from_msg_hash(
            state_digest(domain, state)
        )
    except (BadSignature, ValidationError, ValueError):
        return ZERO_ADDRESS
    return public_key.to_checksum_address()


def check_signer(domain: Domain, state: ChannelState, signature: Signature | None, expected: str) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is ``expected``'s signature of ``state``."""
    recovered = ZERO_ADDRESS if signature is None else recover_signer(domain, state, signature)
    if recovered != to_checksum_address(expected):
        raise InvalidSignature(expected=to_checksum_address(expected), recovered=recovered)


def typed_data(domain: Domain, state: ChannelState) -> dict[str, Any]:
    """``state`` as an EIP-712 ``full_message`` for ``eth_account.Account.sign_typed_data``."""
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
                {"name": "locksRoot", "type": "bytes32"},
                {"name": "isFinal", "type": "bool"},
            ],
        },
        "primaryType": "State",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        "message": {
            "channelId": state.channel_id,
            "nonce": state.nonce,
            "balanceA": state.balance_a,
            "balanceB": state.balance_b,
            "locksRoot": state.locks_root,
            "isFinal": state.is_final,
        },
    }
