"""The watchtower: holds the newest doubly-signed state of its clients' channels and defends them on chain.

- ``protocol``: the signed push a client sends (EIP-712 ``TowerPush`` under the contract's domain), its
  JSON form, its bounds, its verification and the rule that only a newer push replaces the held one.
- ``store``: SQLite (WAL, ``synchronous=FULL``, schema versioned): the channels the contract opened, the
  newest push per channel and client (O(1) rows per channel) and the watcher's cursor.
- ``watcher``: follows the contract's events from its deployment block and answers a stale close
  (penalty if it holds the closer's revocation, else a challenge), reveals held secrets before their locks
  expire and settles after the deadline when asked (``decide`` says what, with no I/O).
- ``registry``: accepting pushes (checked with no chain call, written in batches, answered once committed).
- ``service``: the aiohttp app, which only turns HTTP into calls of the above.
- ``process``: ``paychan tower`` as a child process (tests, benchmark).

The node's side (``paychan node --tower URL``) is ``paychan.node.tower_client``.
"""
