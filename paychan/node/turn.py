"""The turn of a channel's exchange: which side may propose the next states, as a pure state machine.

Only one side proposes at a time, so two different states are never proposed for one nonce. The turn is an
epoch counter: A holds it while it is even, B while it is odd. ``handle(state, event) -> (state, actions)``
decides everything about it and does no I/O; the node (``paychan.node.server``) feeds it the events (the
peer's turn request, its answer, the peer's proposal, our batch signed or countersigned, the channel loaded
from the store) and carries out the actions: it stores an epoch (``StoreEpoch``, durably, before the new
state is used: the stored epoch is never below one used), sends or answers a turn request, builds a batch,
refuses a proposal (``RefuseNotYourTurn``). The node keeps the waiting (a grant polls until our proposals
are countersigned) and the channel's lock: a batch is built and signed under it, and a grant is decided
under it, so no grant falls between the decision to build and the states' signatures.

- **Asking.** Without the turn and with nothing in flight, we ask the holder (``SendTurnRequest`` with our
  epoch). The holder adopts a higher epoch from the request (one it handed us and we did not take), counts
  the peer as waiting, and grants once nothing of its own is in flight (``ActionGrant``): it stores
  ``epoch + 1`` and answers it. One without the turn answers its epoch as it is. We adopt a higher epoch
  from the answer; a turn got so carries one batch at least (``owed``), even if the peer asks it back at
  once, so two nodes that both want to send never hand the turn to and fro without building.
- **Waiting peer.** While the peer waits for the turn, the holder builds no new batch (``YieldTurn``), so a
  stream of its own payments cannot starve the peer's.
- **Handover.** A routed payment's lock operation with nothing queued behind it gives the turn with it: we
  sign it at ``epoch + 1`` (stored with its intent) and send it with ``handover``; the peer takes the epoch
  when it countersigns all of the message's states (an epoch of its parity, above its own). Until then
  neither side holds the turn, and a turn request waits for it like for any proposal in flight.
- **Proposals.** The holder refuses the peer's proposal (``RefuseNotYourTurn``) unless it countersigned
  every state of it already: a re-sent message is answered as before, even once the turn came with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RETRY_DELAY = 0.01  # s before asking again when an answer brought no higher epoch


def is_turn_of(role: str, epoch: int) -> bool:
    """Whether ``role`` (``"A"`` or ``"B"``) holds the turn at ``epoch``: A at even epochs, B at odd ones."""
    return (epoch % 2 == 0) == (role == "A")


@dataclass(frozen=True, slots=True)
class TurnState:
    """One side's view of a channel's turn.

    ``epoch``: the highest epoch we know (stored, or adopted from the peer and stored with our next batch);
    ``in_flight``: our proposals signed and not countersigned yet; ``peer_waiting``: the peer's turn requests
    waiting for our grant; ``owed``: the turn came from the peer's answer to our request and carries a
    batch before we give it back."""

    role: str
    epoch: int = 0
    in_flight: int = 0
    peer_waiting: int = 0
    owed: bool = False

    @property
    def holds(self) -> bool:
        """Whether we hold the turn (we may sign new proposals)."""
        return is_turn_of(self.role, self.epoch)

    @property
    def handed_over(self) -> bool:
        """Our proposals in flight carry the turn to the peer (signed at the peer's epoch)."""
        return self.in_flight > 0 and not self.holds


# --- events (inputs): Receive… from the peer, Action… from our sender, the rest from the node ---------------


@dataclass(frozen=True, slots=True)
class Restored:
    """The channel was loaded from the store (at start, after a crash, or reloaded): the stored epoch and our
    proposals in flight there. A state reloaded in the same process keeps what it knew in memory."""

    stored_epoch: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class ActionSend:
    """Our sender has something to send (payments queued, or proposals in flight)."""


@dataclass(frozen=True, slots=True)
class ActionBuildMore:
    """Our sender, a message of ours on its way, may sign the next batch meanwhile (the pipeline)."""


@dataclass(frozen=True, slots=True)
class ActionPropose:
    """Our sender sends the proposals in flight: which epoch and handover the message carries."""


@dataclass(frozen=True, slots=True)
class SigningBatch:
    """We are about to sign a batch (in the transaction of its intents). ``routed_op``: it is a lock
    operation of a payment through the network; ``queued``: more of our requests wait behind it."""

    routed_op: bool = False
    queued: bool = False


@dataclass(frozen=True, slots=True)
class BatchSigned:
    """We signed ``states`` new proposals (committed); ``handover``: as ``SignBatch`` said."""

    states: int
    handover: bool = False


@dataclass(frozen=True, slots=True)
class ReceiveCountersignatures:
    """The peer countersigned the first ``states`` of our proposals in flight (0: it refused them all)."""

    states: int


@dataclass(frozen=True, slots=True)
class ReceiveTurnRequest:
    """The peer asks for the turn; ``epoch`` is its own (signed by it)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class ActionGrant:
    """A turn request of the peer waits: grant it now if we can."""


@dataclass(frozen=True, slots=True)
class GrantAbandoned:
    """A turn request of the peer stops waiting (our proposals stayed unanswered too long, or it went away)."""


@dataclass(frozen=True, slots=True)
class ReceiveTurnAnswer:
    """The peer answered our turn request with its epoch (signed by it)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class ReceiveProposal:
    """The peer proposes states at ``epoch``; ``countersigned_already``: we countersigned every one of them."""

    epoch: int
    handover: bool
    countersigned_already: bool


@dataclass(frozen=True, slots=True)
class ProposalCountersigned:
    """We countersigned the peer's proposal at ``epoch`` (``handover``): all its states, or not."""

    epoch: int
    handover: bool
    all_states: bool


Event = (
    Restored
    | ActionSend
    | ActionBuildMore
    | ActionPropose
    | SigningBatch
    | BatchSigned
    | ReceiveCountersignatures
    | ReceiveTurnRequest
    | ActionGrant
    | GrantAbandoned
    | ReceiveTurnAnswer
    | ReceiveProposal
    | ProposalCountersigned
)


# --- actions (outputs) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreEpoch:
    """Store ``epoch`` durably (never lowering the stored one) before the new state is used."""

    epoch: int


@dataclass(frozen=True, slots=True)
class SendTurnRequest:
    """Ask the peer for the turn with our ``epoch``, after ``delay`` s."""

    epoch: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class AnswerTurn:
    """Answer the peer's waiting turn request with ``epoch``."""

    epoch: int


@dataclass(frozen=True, slots=True)
class RefuseProposalPending:
    """Answer the peer's waiting turn request with ``ProposalPending``: our proposals stay unanswered."""


@dataclass(frozen=True, slots=True)
class BuildBatch:
    """Build and sign the next batch of our queued requests."""


@dataclass(frozen=True, slots=True)
class YieldTurn:
    """Build nothing now: the peer waits for the turn and is about to get it."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """Send our proposals in flight (again)."""


@dataclass(frozen=True, slots=True)
class SignBatch:
    """Sign the batch at ``epoch``; ``handover``: its message gives the turn to the peer."""

    epoch: int
    handover: bool


@dataclass(frozen=True, slots=True)
class SendPropose:
    """Send our proposals in flight in a message of ``epoch``, with ``handover``."""

    epoch: int
    handover: bool


@dataclass(frozen=True, slots=True)
class Countersign:
    """Check and countersign the peer's proposal."""


@dataclass(frozen=True, slots=True)
class RefuseNotYourTurn:
    """Refuse the peer's proposal: the turn is ours, at ``epoch``."""

    epoch: int


Action = (
    StoreEpoch
    | SendTurnRequest
    | AnswerTurn
    | RefuseProposalPending
    | BuildBatch
    | YieldTurn
    | Exchange
    | SignBatch
    | SendPropose
    | Countersign
    | RefuseNotYourTurn
)
Result = tuple[TurnState, list[Action]]


def _state(s: TurnState, epoch: int, in_flight: int, peer_waiting: int, owed: bool) -> TurnState:
    return TurnState(s.role, epoch, in_flight, peer_waiting, owed)


def _restored(s: TurnState, e: Restored) -> Result:
    return _state(s, max(s.epoch, e.stored_epoch), e.in_flight, s.peer_waiting, s.owed), []


def _send(s: TurnState, _: ActionSend) -> Result:
    if s.in_flight:
        return s, [Exchange()]
    if not s.holds:
        return s, [SendTurnRequest(s.epoch)]
    if s.owed or not s.peer_waiting:
        return s, [BuildBatch()]
    return s, [YieldTurn()]


def _build_more(s: TurnState, _: ActionBuildMore) -> Result:
    return s, [BuildBatch()] if s.holds and not s.peer_waiting else []


def _propose(s: TurnState, _: ActionPropose) -> Result:
    # in flight without the turn: we handed it over with these states, also after a restart
    return s, [SendPropose(s.epoch, not s.holds)]


def _signing(s: TurnState, e: SigningBatch) -> Result:
    handover = e.routed_op and not e.queued and s.holds and not s.in_flight
    epoch = s.epoch + handover
    return s, [StoreEpoch(epoch), SignBatch(epoch, handover)]


def _signed(s: TurnState, e: BatchSigned) -> Result:
    return _state(s, s.epoch + e.handover, s.in_flight + e.states, s.peer_waiting, False), []


def _countersigned(s: TurnState, e: ReceiveCountersignatures) -> Result:
    return _state(s, s.epoch, max(0, s.in_flight - e.states), s.peer_waiting, s.owed), []


def _turn_request(s: TurnState, e: ReceiveTurnRequest) -> Result:
    # a higher epoch is one the peer handed us and we did not take (its answer or handover lost)
    return _state(s, max(s.epoch, e.epoch), s.in_flight, s.peer_waiting + 1, s.owed), []


def _grant(s: TurnState, _: ActionGrant) -> Result:
    if s.in_flight:  # ours with the turn, or handed over and not taken yet: wait for the countersignatures
        return s, []
    waiting = max(0, s.peer_waiting - 1)
    if not s.holds:
        return _state(s, s.epoch, 0, waiting, s.owed), [AnswerTurn(s.epoch)]
    epoch = s.epoch + 1
    return _state(s, epoch, 0, waiting, False), [StoreEpoch(epoch), AnswerTurn(epoch)]


def _abandoned(s: TurnState, _: GrantAbandoned) -> Result:
    return _state(s, s.epoch, s.in_flight, max(0, s.peer_waiting - 1), s.owed), [RefuseProposalPending()]


def _turn_answer(s: TurnState, e: ReceiveTurnAnswer) -> Result:
    adopted = e.epoch > s.epoch
    after = _state(s, max(s.epoch, e.epoch), s.in_flight, s.peer_waiting, s.owed)
    if after.holds:  # stored with the next batch's intents
        return _state(after, after.epoch, after.in_flight, after.peer_waiting, True), []
    return after, [SendTurnRequest(after.epoch, 0.0 if adopted else RETRY_DELAY)]


def _proposal(s: TurnState, e: ReceiveProposal) -> Result:
    if s.holds and not e.countersigned_already:
        return s, [RefuseNotYourTurn(s.epoch)]
    return s, [Countersign()]


def _proposal_countersigned(s: TurnState, e: ProposalCountersigned) -> Result:
    # the peer handed the turn over with these states: ours once all are countersigned (an epoch of our
    # parity only, higher than ours)
    if e.handover and e.all_states and e.epoch > s.epoch and is_turn_of(s.role, e.epoch):
        return _state(s, e.epoch, s.in_flight, s.peer_waiting, s.owed), [StoreEpoch(e.epoch)]
    return s, []


_HANDLERS: dict[type, Callable[[TurnState, Any], Result]] = {
    Restored: _restored,
    ActionSend: _send,
    ActionBuildMore: _build_more,
    ActionPropose: _propose,
    SigningBatch: _signing,
    BatchSigned: _signed,
    ReceiveCountersignatures: _countersigned,
    ReceiveTurnRequest: _turn_request,
    ActionGrant: _grant,
    GrantAbandoned: _abandoned,
    ReceiveTurnAnswer: _turn_answer,
    ReceiveProposal: _proposal,
    ProposalCountersigned: _proposal_countersigned,
}


def handle(state: TurnState, event: Event) -> Result:
    """The turn's next state and the actions ``event`` calls for; pure, no I/O."""
    return _HANDLERS[type(event)](state, event)
