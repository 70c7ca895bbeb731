"""paychan: Ethereum payment channels — the contract's client, state signing and off-chain channels."""

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
