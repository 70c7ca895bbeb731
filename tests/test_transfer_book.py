"""One node's transfers (paychan.transfer.book) and four nodes' machines wired by a plain in-memory bus, no
channels and no chain: a whole payment over three hops, a retry, and a payment id that cannot be replayed."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from paychan.state import hashlock
from paychan.transfer.book import TransferBook
from paychan.transfer.events import (
    AcceptExpire,
    AcceptLock,
    AcceptSettle,
    ChannelClosed,
    CloseChannel,
    InitPayment,
    LockAdded,
    LockExpired,
    LockSettled,
    OfferLock,
    PaymentFailed,
    PaymentReceived,
    PaymentSucceeded,
    ProposeExpireLock,
    ProposeLock,
    ProposeSettleLock,
    ProposeUnlock,
    ReceiveAcceptance,
    ReceiveExpireProposal,
    ReceiveLockedTransfer,
    ReceiveRefusal,
    ReceiveSecretRequest,
    ReceiveSecretReveal,
    ReceiveSettleProposal,
    ReceiveUnlock,
    Refuse,
    RevealSecretOnChain,
    SecretRevealedOnChain,
    SendSecretRequest,
    SendSecretReveal,
    StoreSecret,
    Tick,
)
from paychan.transfer.state import OFFER_TIMEOUT, ChannelView, ReplayedPayment
from tests.transfer_helpers import (
    ALICE,
    AMOUNT,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    HASHLOCK,
    NOW,
    PAYMENT_ID,
    SECRET,
    cid,
    route,
    views,
)

PEERS = {ALICE: (BOB, DAVE), BOB: (ALICE, CAROL), CAROL: (BOB, ERIN), DAVE: (ALICE, ERIN), ERIN: (CAROL, DAVE)}


class Bus:
    """Delivers each node's actions to the others as events, in order; ``offline`` nodes drop what they get.
    The chain is a list of reveals (``RevealSecretOnChain``) and closes: each node's watcher sees the ones it
    has not seen yet at each tick it is online."""

    def __init__(self) -> None:
        self.books = {address: TransferBook(address) for address in PEERS}
        self.queue: deque = deque()
        self.offline: set[str] = set()
        self.log: list[tuple[str, object]] = []
        self.now = NOW
        self.pending: dict[bytes, str] = {}  # channel -> who proposed its settle/expire
        self.chain: list[SecretRevealedOnChain | ChannelClosed] = []
        self.seen = dict.fromkeys(PEERS, 0)  # how many chain events each node's watcher has read
        self.revealed_at: dict[bytes, int] = {}
        self.drop: set[tuple[str, type]] = set()  # (node, action type) a misbehaving node never carries out
        self.view_changes: dict[str, list[ChannelView]] = {}  # what a node knows of its channels, if not the default

    def post(self, to: str, event: object) -> None:
        if to not in self.offline:
            self.queue.append((to, event))

    def run(self) -> None:
        while self.queue:
            node, event = self.queue.popleft()
            for action in self.books[node].handle(event):
                self.log.append((node, action))
                self.apply(node, action)

    def tick(self, now: int) -> None:
        self.now = now
        for node in self.books:
            if node in self.offline:
                continue
            for event in self.chain[self.seen[node] :]:
                self.post(node, replace(event, now=now))
            self.seen[node] = len(self.chain)
            self.post(node, Tick(now))
        self.run()

    def apply(self, node: str, action: object) -> None:
        now = self.now
        if (node, type(action)) in self.drop:
            return
        if isinstance(action, OfferLock):
            to = action.transfer.hop.receiver
            channels = views(to, *PEERS[to])
            channels.update({v.channel_id: v for v in self.view_changes.get(to, ())})
            self.post(to, ReceiveLockedTransfer(action.transfer, node, channels, now))
        elif isinstance(action, AcceptLock):
            hop = action.transfer.hop
            self.post(hop.sender, ReceiveAcceptance(action.transfer.payment_id, hop.channel_id, node, now))
        elif isinstance(action, ProposeLock):
            hop = action.transfer.hop
            if hop.receiver not in self.offline and self.books[hop.receiver].expects_lock(
                action.transfer.payment_id, hop.channel_id
            ):
                for party in (hop.sender, hop.receiver):
                    self.post(party, LockAdded(action.transfer.payment_id, hop.channel_id, now))
        elif isinstance(action, Refuse):
            self.post(action.to, ReceiveRefusal(action.payment_id, action.channel_id, node, action.reason, now))
        elif isinstance(action, SendSecretRequest):
            self.post(action.to, ReceiveSecretRequest(action.payment_id, action.hashlock, action.amount, node, now))
        elif isinstance(action, SendSecretReveal):
            self.post(action.to, ReceiveSecretReveal(action.payment_id, action.secret, node, now))
        elif isinstance(action, ProposeSettleLock):
            self.pending[action.channel_id] = node
            self.post(action.to, ReceiveSettleProposal(action.payment_id, action.channel_id, action.secret, now))
        elif isinstance(action, ProposeUnlock):
            self.pending[action.channel_id] = node
            self.post(action.to, ReceiveUnlock(action.payment_id, action.channel_id, action.secret, now))
        elif isinstance(action, AcceptSettle):
            self.post(self.pending[action.channel_id], LockSettled(action.payment_id, action.channel_id, now))
        elif isinstance(action, ProposeExpireLock):
            self.pending[action.channel_id] = node
            self.post(action.to, ReceiveExpireProposal(action.payment_id, action.channel_id, now))
        elif isinstance(action, RevealSecretOnChain):
            lock_hash = hashlock(action.secret)
            if lock_hash not in self.revealed_at:  # the registry keeps the first reveal's time
                self.revealed_at[lock_hash] = now
                self.chain.append(SecretRevealedOnChain(lock_hash, action.secret, now, now))
        elif isinstance(action, CloseChannel):
            self.chain.append(ChannelClosed(action.channel_id, now))
        elif isinstance(action, AcceptExpire):
            self.post(self.pending[action.channel_id], LockExpired(action.payment_id, action.channel_id, now))

    def pay(self, *routes) -> None:
        self.post(ALICE, InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, routes, views(ALICE, BOB, DAVE), self.now))
        self.run()

    def outcomes(self) -> list[tuple[str, object]]:
        kinds = (PaymentSucceeded, PaymentFailed, PaymentReceived)
        return [(node, action) for node, action in self.log if isinstance(action, kinds)]


VIA_BOB, VIA_DAVE = route(ALICE, BOB, CAROL, ERIN), route(ALICE, DAVE, ERIN)


def test_a_payment_over_three_hops_is_settled_backwards_from_the_payee_and_unlocked_by_the_payer():
    bus = Bus()
    bus.pay(VIA_BOB, VIA_DAVE)
    assert sorted(bus.outcomes(), key=repr) == sorted(
        [(ERIN, PaymentReceived(PAYMENT_ID, AMOUNT)), (ALICE, PaymentSucceeded(PAYMENT_ID, VIA_BOB, 1))], key=repr
    )
    settles = [(node, a.channel_id) for node, a in bus.log if isinstance(a, ProposeSettleLock)]
    assert settles == [(ERIN, cid(CAROL, ERIN)), (CAROL, cid(BOB, CAROL))]  # bob waits for alice's unlock
    unlocks = [(node, a.channel_id) for node, a in bus.log if isinstance(a, ProposeUnlock)]
    assert unlocks == [(ALICE, cid(ALICE, BOB))]  # alice pays bob as soon as she told erin the secret
    reveal = next(i for i, (_, a) in enumerate(bus.log) if isinstance(a, SendSecretReveal))
    assert (
        bus.log[reveal][0] == ALICE
        and bus.log.index((ALICE, ProposeUnlock(cid(ALICE, BOB), BOB, PAYMENT_ID, SECRET))) > reveal
    )
    stored = [node for node, a in bus.log if isinstance(a, StoreSecret)]
    assert sorted(stored) == sorted([ERIN, CAROL, BOB])  # each stores the secret before it shows it upstream
    assert [node for node, a in bus.log if isinstance(a, SendSecretReveal)] == [ALICE]
    assert all(task.is_done for node in (BOB, CAROL) for task in bus.books[node].tasks.values())


def test_an_offline_intermediary_makes_the_payer_wait_for_its_lock_to_expire_then_pay_on_the_second_route():
    bus = Bus()
    bus.offline.add(CAROL)
    bus.pay(VIA_BOB, VIA_DAVE)
    bus.tick(NOW + OFFER_TIMEOUT)
    assert bus.outcomes() == []
    expiry = bus.books[ALICE].tasks[PAYMENT_ID].current.hop.expiry
    bus.tick(expiry)
    assert not any(isinstance(a, OfferLock) and a.transfer.hops[0].receiver == DAVE for _, a in bus.log)
    bus.tick(expiry + 1)
    assert sorted(bus.outcomes(), key=repr) == sorted(
        [(ERIN, PaymentReceived(PAYMENT_ID, AMOUNT)), (ALICE, PaymentSucceeded(PAYMENT_ID, VIA_DAVE, 2))], key=repr
    )
    offers = [a.transfer for node, a in bus.log if node == ALICE and isinstance(a, OfferLock)]
    assert [t.hashlock for t in offers] == [HASHLOCK, HASHLOCK] and [t.payment_id for t in offers] == [PAYMENT_ID] * 2


def test_a_payer_cannot_start_a_payment_id_twice_and_a_node_refuses_an_offer_for_its_own_payment():
    bus = Bus()
    bus.pay(VIA_BOB)
    with pytest.raises(ReplayedPayment):
        bus.books[ALICE].handle(InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (VIA_BOB,), {}, NOW))
    offer = bus.books[ALICE].tasks[PAYMENT_ID].current.transfer
    (refuse,) = bus.books[ERIN].handle(ReceiveLockedTransfer(offer.next().next(), CAROL, views(ERIN, CAROL), NOW + 9))
    assert refuse == Refuse(PAYMENT_ID, cid(CAROL, ERIN), CAROL, ReplayedPayment(PAYMENT_ID))  # erin was paid


def test_a_chain_reveal_reaches_only_the_payments_with_its_hashlock_and_an_unknown_payment_is_ignored():
    book = TransferBook(BOB)
    assert book.handle(SecretRevealedOnChain(HASHLOCK, SECRET, NOW, NOW)) == []
    assert book.handle(LockAdded(PAYMENT_ID, cid(ALICE, BOB), NOW)) == []
    with pytest.raises(KeyError):
        book.hashlock(PAYMENT_ID)
