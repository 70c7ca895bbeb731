"""The turn of the channel exchange (``paychan.node.turn``): unit tests of the machine, a model of two machines
exchanging messages over a network that delays, reorders, drops and duplicates them (with crashes), checked
for safety and liveness, and the node driving the machine. No sockets, no chain."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paychan.node import turn
from paychan.node.server import Node
from paychan.node.store import Store
from paychan.node.turn import (
    ActionBuildMore,
    ActionGrant,
    ActionPropose,
    ActionSend,
    AnswerTurn,
    BatchSigned,
    BuildBatch,
    Countersign,
    Exchange,
    GrantAbandoned,
    ProposalCountersigned,
    ReceiveCountersignatures,
    ReceiveProposal,
    ReceiveTurnAnswer,
    ReceiveTurnRequest,
    RefuseNotYourTurn,
    RefuseProposalPending,
    Restored,
    SendPropose,
    SendTurnRequest,
    SignBatch,
    SigningBatch,
    StoreEpoch,
    TurnState,
    YieldTurn,
    handle,
)
from tests.model_v2_helpers import module_constants_left_out
from tests.node.conftest import CID, DOMAIN, KEY_A, channel_record

# --- the machine, event by event ---------------------------------------------------------------------------


def test_side_a_holds_the_turn_at_even_epochs_and_b_at_odd_ones() -> None:
    assert TurnState("A", 0).holds and not TurnState("A", 1).holds
    assert TurnState("B", 1).holds and not TurnState("B", 2).holds


def test_a_holder_with_nothing_in_flight_grants_the_next_epoch_and_stores_it_before_answering() -> None:
    waiting, _ = handle(TurnState("A", 4), ReceiveTurnRequest(3))
    assert waiting.peer_waiting == 1
    state, actions = handle(waiting, ActionGrant())
    assert actions == [StoreEpoch(5), AnswerTurn(5)]
    assert state == TurnState("A", 5) and not state.holds


def test_a_holder_with_proposals_in_flight_grants_only_once_they_are_countersigned() -> None:
    state, _ = handle(TurnState("A", 0, in_flight=2), ReceiveTurnRequest(0))
    assert handle(state, ActionGrant()) == (state, [])
    state, _ = handle(state, ReceiveCountersignatures(1))
    assert handle(state, ActionGrant())[1] == []
    state, _ = handle(state, ReceiveCountersignatures(1))
    assert handle(state, ActionGrant())[1] == [StoreEpoch(1), AnswerTurn(1)]


def test_a_side_without_the_turn_answers_its_epoch_as_it_is_and_stores_nothing() -> None:
    state, _ = handle(TurnState("B", 2), ReceiveTurnRequest(2))
    assert handle(state, ActionGrant()) == (TurnState("B", 2), [AnswerTurn(2)])


def test_a_turn_request_with_a_higher_epoch_is_one_handed_to_us_and_is_adopted() -> None:
    # we granted 3; the peer granted 4 back and we never got its answer: its next request carries 4
    state, _ = handle(TurnState("A", 3), ReceiveTurnRequest(4))
    assert state.epoch == 4 and state.holds
    assert handle(state, ActionGrant())[1] == [StoreEpoch(5), AnswerTurn(5)]
    lower, _ = handle(TurnState("A", 6), ReceiveTurnRequest(3))
    assert lower.epoch == 6


def test_a_peer_waiting_for_the_turn_stops_new_batches_but_not_one_a_turn_we_asked_for_carries() -> None:
    waiting, _ = handle(TurnState("A", 0), ReceiveTurnRequest(0))
    assert handle(waiting, ActionSend())[1] == [YieldTurn()]
    assert handle(waiting, ActionBuildMore())[1] == []
    asked, _ = handle(TurnState("A", 1), ReceiveTurnAnswer(2))
    assert asked.holds and asked.owed
    asked, _ = handle(asked, ReceiveTurnRequest(1))
    assert handle(asked, ActionSend())[1] == [BuildBatch()]
    after, _ = handle(asked, BatchSigned(3))
    assert not after.owed and after.in_flight == 3
    assert handle(after, ActionBuildMore())[1] == []  # the pipeline waits: the peer gets the turn next


def test_without_the_turn_and_nothing_in_flight_the_sender_asks_with_its_epoch() -> None:
    assert handle(TurnState("B", 0), ActionSend())[1] == [SendTurnRequest(0)]
    assert handle(TurnState("B", 0, in_flight=1), ActionSend())[1] == [Exchange()]
    assert handle(TurnState("B", 1), ActionSend())[1] == [BuildBatch()]


def test_a_turn_answer_with_no_higher_epoch_asks_again_after_a_delay_and_a_higher_one_at_once() -> None:
    assert handle(TurnState("B", 2), ReceiveTurnAnswer(2))[1] == [SendTurnRequest(2, turn.RETRY_DELAY)]
    state, actions = handle(TurnState("B", 2), ReceiveTurnAnswer(4))  # adopted, still not ours: ask again
    assert state.epoch == 4 and actions == [SendTurnRequest(4, 0.0)]
    state, actions = handle(TurnState("B", 2), ReceiveTurnAnswer(3))
    assert state == TurnState("B", 3, owed=True) and actions == []


def test_a_routed_lock_with_nothing_queued_is_signed_at_the_next_epoch_and_hands_the_turn_over() -> None:
    state = TurnState("A", 2)
    assert handle(state, SigningBatch(routed_op=True))[1] == [StoreEpoch(3), SignBatch(3, True)]
    signed, _ = handle(state, BatchSigned(1, handover=True))
    assert signed.epoch == 3 and signed.handed_over
    assert handle(signed, ActionPropose())[1] == [SendPropose(3, True)]


def test_a_routed_lock_with_requests_queued_behind_it_or_a_plain_batch_keeps_the_turn() -> None:
    state = TurnState("A", 2)
    assert handle(state, SigningBatch(routed_op=True, queued=True))[1] == [StoreEpoch(2), SignBatch(2, False)]
    assert handle(state, SigningBatch())[1] == [StoreEpoch(2), SignBatch(2, False)]
    signed, _ = handle(state, BatchSigned(4))
    assert handle(signed, ActionPropose())[1] == [SendPropose(2, False)]


def test_a_proposal_while_we_hold_the_turn_is_refused_unless_we_countersigned_it_already() -> None:
    state = TurnState("B", 3)
    assert handle(state, ReceiveProposal(2, False, False))[1] == [RefuseNotYourTurn(3)]
    assert handle(state, ReceiveProposal(3, True, True))[1] == [Countersign()]  # re-sent after a lost answer
    assert handle(TurnState("B", 2), ReceiveProposal(2, False, False))[1] == [Countersign()]


def test_the_turn_handed_over_is_taken_only_when_every_state_is_countersigned() -> None:
    state = TurnState("B", 2)
    assert handle(state, ProposalCountersigned(3, True, all_states=False)) == (state, [])
    taken, actions = handle(state, ProposalCountersigned(3, True, all_states=True))
    assert taken.epoch == 3 and taken.holds and actions == [StoreEpoch(3)]
    assert handle(state, ProposalCountersigned(3, False, all_states=True)) == (state, [])


def test_a_handover_at_an_epoch_not_above_ours_or_of_the_peers_parity_is_ignored() -> None:
    state = TurnState("B", 3)
    assert handle(state, ProposalCountersigned(3, True, True)) == (state, [])  # re-sent: taken already
    assert handle(state, ProposalCountersigned(1, True, True)) == (state, [])
    assert handle(TurnState("B", 2), ProposalCountersigned(4, True, True)) == (TurnState("B", 2), [])


def test_a_node_waiting_for_its_own_turn_request_still_answers_the_peers_at_once() -> None:
    # commit aff03dc: both nodes ask each other at once; each answers without the turn it does not hold
    for role, epoch in (("A", 1), ("B", 2)):
        asking = TurnState(role, epoch)
        assert handle(asking, ActionSend())[1] == [SendTurnRequest(epoch)]
        waiting, _ = handle(asking, ReceiveTurnRequest(epoch))
        assert handle(waiting, ActionGrant())[1] == [AnswerTurn(epoch)]


def test_a_restart_takes_the_stored_epoch_and_a_reload_keeps_the_one_adopted_in_memory() -> None:
    assert handle(TurnState("A"), Restored(5, 1)) == (TurnState("A", 5, in_flight=1), [])
    adopted = TurnState("A", 6, peer_waiting=1, owed=True)
    assert handle(adopted, Restored(5, 0)) == (adopted, [])
    assert handle(adopted, Restored(8, 2))[0] == TurnState("A", 8, 2, 1, True)


def test_proposals_in_flight_without_the_turn_go_out_as_a_handover_after_a_restart() -> None:
    restarted, _ = handle(TurnState("A"), Restored(3, 1))
    assert restarted.handed_over
    assert handle(restarted, ActionPropose())[1] == [SendPropose(3, True)]
    state, _ = handle(restarted, ReceiveTurnRequest(2))
    assert handle(state, ActionGrant())[1] == []  # the peer takes the turn with them, not from a grant


def test_a_grant_abandoned_refuses_with_proposal_pending_and_stops_counting_the_peer() -> None:
    state, _ = handle(TurnState("A", 0, in_flight=1), ReceiveTurnRequest(0))
    state, actions = handle(state, GrantAbandoned())
    assert actions == [RefuseProposalPending()] and state.peer_waiting == 0
    assert handle(state, ActionSend())[1] == [Exchange()]


# --- the model: two machines, a network that delays, reorders, drops and duplicates, crashes ---------------


class Violation(AssertionError):
    """Raised when the model breaks a safety property."""


@dataclass
class Side:
    """One node as the model sees it: its machine, what it stored, its queue, its proposals and signatures."""

    role: str
    state: TurnState
    stored: int = 0
    queue: list[bool] = field(default_factory=list)  # True: a routed payment's lock operation
    inflight: list[int] = field(default_factory=list)  # nonces of our proposals not countersigned yet
    signed: dict[int, str] = field(default_factory=dict)  # nonce -> whose proposal we signed there
    waiting_for: int | None = None  # the request our sender waits on
    grants: list[tuple[int, int]] = field(default_factory=list)  # the peer's requests waiting: (id, epoch)
    batches: int = 0
    used: int = 0  # the highest epoch we signed a batch under

    @property
    def nonce(self) -> int:
        return max(self.signed, default=0)


@dataclass
class Message:
    kind: str  # turn, turn-answer, propose, propose-answer
    to: str
    request: int
    epoch: int = 0
    handover: bool = False
    nonces: tuple[int, ...] = ()
    refused: bool = False


class World:
    """Two sides and the messages between them; every step checks the safety properties."""

    def __init__(self) -> None:
        self.sides = {role: Side(role, TurnState(role)) for role in "AB"}
        self.network: list[Message] = []
        self.proposers: dict[int, str] = {}  # nonce -> the side that proposed a state there
        self.requests = 0

    def peer(self, role: str) -> Side:
        return self.sides["B" if role == "A" else "A"]

    def feed(self, side: Side, event: turn.Event) -> list[turn.Action]:
        before = side.state.epoch
        side.state, actions = handle(side.state, event)
        for action in actions:
            if isinstance(action, StoreEpoch):
                side.stored = max(side.stored, action.epoch)
        if side.state.epoch < before:
            raise Violation(f"{side.role}'s epoch went down from {before} to {side.state.epoch}")
        if side.state.in_flight != len(side.inflight):
            raise Violation(f"{side.role} counts {side.state.in_flight} in flight, holds {side.inflight}")
        return actions

    def send(self, message: Message) -> None:
        self.network.append(message)

    def request_id(self) -> int:
        self.requests += 1
        return self.requests

    # -- our sender ---------------------------------------------------------------------------------------

    def sender(self, side: Side) -> None:
        if side.waiting_for is not None or not (side.queue or side.inflight):
            return
        (action,) = self.feed(side, ActionSend())
        if isinstance(action, SendTurnRequest):
            side.waiting_for = self.request_id()
            self.send(Message("turn", self.peer(side.role).role, side.waiting_for, action.epoch))
        elif isinstance(action, BuildBatch):
            self.build(side)
            if side.state.owed:
                self.feed(side, BatchSigned(0))
            self.exchange(side)
        elif isinstance(action, Exchange):
            self.exchange(side)

    def build(self, side: Side) -> None:
        """``_build_batch`` / ``_build_op``: a routed lock operation alone and once nothing is in flight."""
        if not side.queue or (side.queue[0] and side.inflight):
            return
        routed = side.queue[0]  # alone; payments in twos at most, up to the next lock operation
        count = 1 if routed else next((i for i, r in enumerate(side.queue[:2]) if r), min(2, len(side.queue)))
        signing = self.feed(side, SigningBatch(routed_op=routed, queued=len(side.queue) > 1))
        sign = next(a for a in signing if isinstance(a, SignBatch))
        if not side.state.holds:
            raise Violation(f"{side.role} signs a batch without the turn at epoch {side.state.epoch}")
        if side.stored < sign.epoch:
            raise Violation(f"{side.role} signs under epoch {sign.epoch} with {side.stored} stored")
        for _ in range(count):
            nonce = side.nonce + 1
            other = self.proposers.setdefault(nonce, side.role)
            if other != side.role:
                raise Violation(f"both sides proposed a state at nonce {nonce}")
            side.signed[nonce] = side.role
            side.inflight.append(nonce)
            side.queue.pop(0)
        side.used = max(side.used, sign.epoch)
        side.batches += 1
        self.feed(side, BatchSigned(count, sign.handover))

    def exchange(self, side: Side) -> None:
        if not side.inflight:
            return
        (header,) = self.feed(side, ActionPropose())
        assert isinstance(header, SendPropose)
        side.waiting_for = self.request_id()
        peer = self.peer(side.role).role
        self.send(Message("propose", peer, side.waiting_for, header.epoch, header.handover, tuple(side.inflight)))

    def build_more(self, side: Side) -> None:
        """The pipeline: while our message is on its way, the next batch of payments (never a lock op)."""
        if side.waiting_for is None or not side.inflight or not side.queue or side.queue[0]:
            return
        if self.feed(side, ActionBuildMore()):
            self.build(side)

    # -- the peer's side of a request -----------------------------------------------------------------------

    def grant(self, side: Side, request: int, give_up: bool = False) -> None:
        actions = self.feed(side, GrantAbandoned() if give_up else ActionGrant())
        for action in actions:
            if isinstance(action, AnswerTurn | RefuseProposalPending):
                asked = next(epoch for r, epoch in side.grants if r == request)
                side.grants.remove((request, asked))
                if isinstance(action, AnswerTurn) and action.epoch < asked:
                    # the requester keeps its higher epoch and asks again: without the turn, forever
                    raise Violation(f"{side.role} answers {action.epoch} to a request at epoch {asked}")
                epoch = action.epoch if isinstance(action, AnswerTurn) else 0
                refused = isinstance(action, RefuseProposalPending)
                self.send(Message("turn-answer", self.peer(side.role).role, request, epoch, refused=refused))

    def deliver(self, message: Message, refuse: bool = False) -> None:
        side = self.sides[message.to]
        if message.kind == "turn":
            self.feed(side, ReceiveTurnRequest(message.epoch))
            side.grants.append((message.request, message.epoch))
        elif message.kind == "turn-answer":
            self.turn_answer(side, message)
        elif message.kind == "propose":
            self.countersign(side, message, refuse)
        else:
            self.countersignatures(side, message)

    def turn_answer(self, side: Side, message: Message) -> None:
        ours = side.waiting_for == message.request
        if message.refused:
            if ours:
                side.waiting_for = None
            return
        self.feed(side, ReceiveTurnAnswer(message.epoch))  # a stale answer too: the machine must bear it
        if ours:
            side.waiting_for = None
            if side.state.holds:  # the sender takes the channel's lock at once and builds
                batches = side.batches
                self.sender(side)
                if side.queue and side.batches == batches:
                    # we would give the turn back unused if the peer asks: to and fro, nobody building
                    raise Violation(f"{side.role} got the turn it asked for and built nothing")

    def countersign(self, side: Side, message: Message, refuse: bool = False) -> None:
        """``handle_propose``; ``refuse``: the receiver's own checks refuse the first state it has not
        countersigned yet (a lock its clock finds too late, say): those before it are countersigned."""
        proposer = self.peer(side.role).role
        again = all(side.signed.get(n) == proposer for n in message.nonces)
        (verdict,) = self.feed(side, ReceiveProposal(message.epoch, message.handover, again))
        accepted: list[int] = []
        if isinstance(verdict, Countersign):
            for nonce in message.nonces:
                if side.signed.get(nonce) == proposer:
                    accepted.append(nonce)
                elif side.signed.get(nonce) == side.role:
                    raise Violation(f"{side.role} is asked to countersign at nonce {nonce}, where it proposed")
                elif nonce == side.nonce + 1 and not refuse:
                    side.signed[nonce] = proposer
                    accepted.append(nonce)
                else:
                    break  # UnexpectedNonce
            all_states = len(accepted) == len(message.nonces)
            self.feed(side, ProposalCountersigned(message.epoch, message.handover, all_states))
        answer = Message("propose-answer", proposer, message.request, nonces=tuple(accepted))
        self.send(replace_refused(answer, not isinstance(verdict, Countersign)))

    def countersignatures(self, side: Side, message: Message) -> None:
        done = 0
        for nonce in message.nonces:
            if not side.inflight or side.inflight[0] != nonce:
                break
            side.inflight.pop(0)
            done += 1
        if done:
            self.feed(side, ReceiveCountersignatures(done))
        if side.waiting_for == message.request:
            side.waiting_for = None

    def crash(self, side: Side) -> None:
        """The node restarts: what it stored stays (epoch, states, intents), memory and requests are gone."""
        side.state, _ = handle(TurnState(side.role), Restored(side.stored, len(side.inflight)))
        side.waiting_for, side.grants = None, []
        if side.stored < side.used:
            raise Violation(f"{side.role} restarts at epoch {side.stored} below {side.used}, one it signed under")

    def reload(self, side: Side) -> None:
        """The channel is rebuilt from the store in the same process (``Node._reload``)."""
        self.feed(side, Restored(side.stored, len(side.inflight)))

    def check(self) -> None:
        a, b = self.sides["A"], self.sides["B"]
        if a.state.holds and b.state.holds:
            raise Violation(f"both hold the turn: A at {a.state.epoch}, B at {b.state.epoch}")

    # -- a step of the adversary ---------------------------------------------------------------------------

    def step(self, choice: int) -> None:
        """One move, drawn from ``choice``: mostly deliveries (the oldest first), senders, grants and payments;
        now and then a message dropped, duplicated or refused, a request timed out, a grant given up, a
        crash or a reload."""
        kind, pick = choice % 8, choice >> 3
        side = self.sides["AB"[pick % 2]]
        grants = [(s, r) for s in self.sides.values() for r, _ in s.grants]
        if kind in (0, 1) and self.network:
            self.deliver(self.network.pop(0))
        elif kind == 3 and self.network:
            self.deliver(self.network.pop(pick % len(self.network)))
        elif kind == 4 and grants:
            self.grant(*grants[pick % len(grants)])
        elif kind == 5:
            if len(side.queue) < 3:
                side.queue.append(bool(pick & 2))
        elif kind == 6:
            self.adversity(side, (pick >> 1) % 8, pick >> 4, grants)
        elif kind == 7:
            self.build_more(side)
        else:
            self.sender(side)
        self.check()

    def adversity(self, side: Side, what: int, pick: int, grants: list[tuple[Side, int]]) -> None:
        if what == 0 and self.network:
            self.network.pop(pick % len(self.network))
        elif what == 1 and self.network:
            self.network.append(self.network[pick % len(self.network)])
        elif what == 2 and self.network:
            self.deliver(self.network.pop(pick % len(self.network)), refuse=True)
        elif what == 3:
            side.waiting_for = None  # our request timed out: its answer, if any, is stale
        elif what == 4:
            self.crash(side)
        elif what == 5:
            self.reload(side)
        elif what == 6 and grants:
            self.grant(*grants[pick % len(grants)], give_up=True)

    def calm(self, wanting: str = "AB", order: int = 0, rounds: int = 60) -> int:
        """From now on every message arrives within a round (in an order drawn from ``order``: 0 is the order
        sent), every waiting grant is tried each round, nothing is refused; a sender whose request or answer
        was lost times out. The sides in ``wanting`` have a payment to send. Returns the rounds it took until
        both had sent all they had."""
        shuffle = random.Random(order).shuffle if order else None
        for role in wanting:
            self.sides[role].queue.append(False)
        for done in range(rounds):
            if all(not s.queue and not s.inflight for s in self.sides.values()):
                return done
            for side in self.sides.values():
                self.sender(side)
                self.build_more(side)
                for request, _ in list(side.grants):
                    self.grant(side, request)
            pending, self.network = self.network, []
            if shuffle is not None:
                shuffle(pending)
            for message in pending:
                self.deliver(message)
                self.check()
            for side in self.sides.values():
                peer = self.peer(side.role)
                lost = side.waiting_for is not None and side.waiting_for not in [r for r, _ in peer.grants]
                if lost and not any(m.request == side.waiting_for for m in self.network):
                    side.waiting_for = None
        raise AssertionError(f"no progress in {rounds} rounds: {self.sides} {self.network}")


def replace_refused(message: Message, refused: bool) -> Message:
    message.refused = refused
    return message


def run_world(choices: list[int], wanting: str = "AB", order: int = 0) -> World:
    """The adversary's ``choices``, then the calm that must let each side in ``wanting`` send."""
    world = World()
    for choice in choices:
        world.step(choice)
    before = {role: side.batches for role, side in world.sides.items()}
    world.calm(wanting, order)
    for role in wanting:
        assert world.sides[role].batches > before[role], f"{role} never built a batch once it wanted to send"
    return world


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=0, max_value=2**16), min_size=40, max_size=160),
    st.sampled_from(["AB", "A", "B"]),
    st.integers(min_value=0, max_value=2**16),
)
def _model(choices: list[int], wanting: str, order: int) -> None:
    run_world(choices, wanting, order)


def test_two_machines_over_a_lossy_reordering_network_never_both_hold_the_turn_and_both_get_to_send() -> None:
    """Safety: never both sides hold the turn, never two proposals at one nonce, a batch is signed only with
    the turn and under an epoch stored first, epochs only grow (a restart resumes at the stored epoch, never
    below one signed under). Liveness: once messages arrive, both sides that want to send do, within a
    bound (no deadlock, no handing the turn to and fro without building)."""
    with module_constants_left_out():
        _model()


def test_the_model_catches_a_machine_that_grants_with_proposals_in_flight() -> None:
    """The model can fail: a holder that grants without waiting for its proposals lets both sign a nonce."""
    original = turn._HANDLERS[ActionGrant]

    def careless(state: TurnState, event: ActionGrant) -> turn.Result:
        after, actions = original(TurnState(state.role, state.epoch, 0, state.peer_waiting, state.owed), event)
        return TurnState(after.role, after.epoch, state.in_flight, after.peer_waiting, after.owed), actions

    turn._HANDLERS[ActionGrant] = careless
    try:
        world = World()
        a, b = world.sides["A"], world.sides["B"]
        a.queue.append(False)
        world.sender(a)  # A builds nonce 1 and sends it
        propose = world.network.pop()
        b.queue.append(False)
        world.sender(b)  # B asks for the turn
        world.deliver(world.network.pop())
        world.grant(a, a.grants[0][0])  # granted with nonce 1 in flight
        try:
            world.deliver(world.network.pop())  # B takes the turn and signs nonce 1 as well
        except Violation:
            return
        raise AssertionError(f"no violation: {propose}")
    finally:
        turn._HANDLERS[ActionGrant] = original


# --- the node drives the machine ---------------------------------------------------------------------------


def test_a_turn_granted_while_the_channel_was_reloaded_is_given_up_by_the_reloaded_channel(tmp_path: Path) -> None:
    """A grant waiting on the channel's lock while the channel is rebuilt (a refused withdrawal reloads it under
    the lock; so does a remote signer's dry run) gives the turn up in the channel as it is then: before, the
    grant moved the old object's epoch only, and the rebuilt channel kept proposing at the epoch it had given
    away, while the peer proposed at the next one: each refused the other's states (NotYourTurn) for good."""

    async def scenario() -> None:
        store = Store(tmp_path / "a.db")
        store.add_channel(channel_record("A"))
        node = Node(store, KEY_A, DOMAIN)
        runtime = node.runtimes[CID]
        assert runtime.has_turn()
        async with runtime.lock:
            grant = asyncio.ensure_future(node.grant_turn(runtime))
            await asyncio.sleep(0.01)
            node._reload(CID)
        assert await grant == 1
        assert store.channel(CID).turn_epoch == 1  # type: ignore[union-attr]
        assert not node.runtimes[CID].has_turn()
        assert node.runtimes[CID].turn.peer_waiting == 0
        await node.peer.close()
        store.close()

    asyncio.run(scenario())
