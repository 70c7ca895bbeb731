"""The paychan node: one party's durable off-chain channel endpoint.

``store`` keeps every state the node signs in SQLite before the signature leaves the process; ``messages``
is the JSON wire format between nodes; ``server`` is the node itself (its channels, the turn and batching
protocol); ``peer_api`` and ``control_api`` its aiohttp apps (the peer endpoint, the local control API, with
what they share in ``api``), ``control`` the control API's client; ``chain_actions`` its transactions and
chain reads; ``peer`` its aiohttp client; ``watcher`` challenges a stale unilateral close; ``keystore`` loads
the node's key; ``process`` runs ``paychan node`` as a child process (tests, benchmark).
"""

from paychan.node.store import ChannelRecord, DoubleSignRefused, Store, StoredState

__all__ = ["ChannelRecord", "DoubleSignRefused", "Store", "StoredState"]
