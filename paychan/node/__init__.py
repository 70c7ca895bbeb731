"""The paychan node: one party's durable off-chain channel endpoint.

``store`` keeps every state the node signs in SQLite before the signature leaves the process; ``messages``
is the JSON wire format between nodes; ``server`` serves the peer endpoint and the local control API;
``watcher`` challenges a stale unilateral close; ``keystore`` loads the node's key.
"""

from paychan.node.store import ChannelRecord, DoubleSignRefused, Store, StoredState

__all__ = ["ChannelRecord", "DoubleSignRefused", "Store", "StoredState"]
