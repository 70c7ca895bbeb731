"""paychan: Ethereum payment channels — the contract's client, state signing and off-chain channels."""

import os as _os
from importlib.util import find_spec as _find_spec

# eth-hash picks its keccak backend at the first hash, pycryptodome's (through ctypes, about 15 µs a hash)
# unless told otherwise; safe-pysha3's (a C extension, about 4 µs), which eth-tester[py-evm] installs, when it
# is there. A node hashes every state it stores, signs and checks, and every request. Before anything hashes.
if "ETH_HASH_BACKEND" not in _os.environ and _find_spec("sha3") is not None:
    _os.environ["ETH_HASH_BACKEND"] = "pysha3"

from paychan.chain import Chain, connect, embedded_chain, rpc_chain
from paychan.channel import Channel, agree_final, pay
from paychan.contract import OnchainChannel, PaychanContract, RecordedState
from paychan.exceptions import ContractCustomError, PaychanError, StateRejected
from paychan.signing import Domain, recover_signer, sign_state, state_digest
from paychan.state import (
    ETH,
    ChannelId,
    ChannelParams,
    ChannelState,
    Nonce,
    Signature,
    SignedState,
    Wei,
    channel_id,
    hashlock,
)
from paychan.units import format_amount, parse_amount


def _version() -> str:
    """The installed distribution's version, else the one ``pyproject.toml`` beside the package names."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paychan")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
            return str(pyproject["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _version()

__all__ = [
    "ETH",
    "Chain",
    "Channel",
    "ChannelId",
    "ChannelParams",
    "ChannelState",
    "ContractCustomError",
    "Domain",
    "Nonce",
    "OnchainChannel",
    "PaychanContract",
    "PaychanError",
    "RecordedState",
    "Signature",
    "SignedState",
    "StateRejected",
    "Wei",
    "agree_final",
    "channel_id",
    "__version__",
    "connect",
    "embedded_chain",
    "pay",
    "format_amount",
    "hashlock",
    "parse_amount",
    "recover_signer",
    "rpc_chain",
    "sign_state",
    "state_digest",
]
