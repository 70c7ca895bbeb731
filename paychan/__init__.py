"""paychan: Ethereum payment channels — the contract's client, state signing and off-chain channels."""

from paychan.chain import Chain, connect, embedded_chain, rpc_chain
from paychan.channel import Channel
from paychan.contract import OnchainChannel, PaychanContract, RecordedState
from paychan.exceptions import ContractCustomError, PaychanError, StateRejected
from paychan.signing import Domain, recover_signer, sign_state, state_digest
from paychan.state import ETH, ChannelId, ChannelParams, ChannelState, Nonce, Signature, SignedState, Wei, channel_id

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
    "channel_id",
    "connect",
    "embedded_chain",
    "recover_signer",
    "rpc_chain",
    "sign_state",
    "state_digest",
]
