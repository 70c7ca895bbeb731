"""The payer's answer to a secret request leaves only once the step that told it is durable: the step waits
for the transaction that signs its unlock (one commit instead of two on a routed payment's path,
``NodeTransfers._defer``), and is written on its own if that does not come (``DURABLE_WAIT``) or rolls back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from paychan.node import transfers as node_transfers
from paychan.node.store import Store
from paychan.node.transfers import NodeTransfers
from paychan.transfer import initiator
from paychan.transfer.events import InitPayment
from tests.test_transfer_book import VIA_BOB
from tests.transfer_helpers import ALICE, AMOUNT, BOB, ERIN, HASHLOCK, NOW, PAYMENT_ID, SECRET, views


def payer(tmp_path: Path) -> tuple[NodeTransfers, Store]:
    """alice's transfers with one payment of hers whose newest step waits for a transaction (deferred)."""
    store = Store(tmp_path / "alice.db")
    node = SimpleNamespace(store=store, address=ALICE, public_url="http://127.0.0.1:1")
    transfers = NodeTransfers(node)  # type: ignore[arg-type]
    task, _ = initiator.handle(None, InitPayment(PAYMENT_ID, SECRET, ERIN, AMOUNT, (VIA_BOB,), views(ALICE, BOB), NOW))
    assert task is not None
    transfers.book.tasks[PAYMENT_ID] = task
    transfers.by_hashlock[HASHLOCK] = PAYMENT_ID
    transfers._dirty.add(PAYMENT_ID)
    return transfers, store


def stored(store: Store) -> list[int]:
    return [payment_id for payment_id, _, _ in store.transfers()]


def test_the_answer_waits_for_the_transaction_that_signs_the_unlock_and_returns_once_it_committed(
    tmp_path: Path,
) -> None:
    transfers, store = payer(tmp_path)

    async def scenario() -> None:
        answer = asyncio.ensure_future(transfers._until_durable(PAYMENT_ID))
        await asyncio.sleep(0.05)
        assert not answer.done() and stored(store) == []  # not durable yet: the secret stays here
        with store.transaction():  # the unlock's transaction writes the deferred step (``flush``)
            transfers.flush(HASHLOCK)
            await asyncio.sleep(0.05)
            assert not answer.done()  # written, not committed
        await asyncio.wait_for(answer, 1.0)
        assert stored(store) == [PAYMENT_ID] and PAYMENT_ID not in transfers._dirty

    asyncio.run(scenario())


def test_a_step_whose_transaction_rolls_back_or_never_comes_is_written_on_its_own_before_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transfers, store = payer(tmp_path)
    monkeypatch.setattr(node_transfers, "DURABLE_WAIT", 0.2)

    async def scenario() -> None:
        answer = asyncio.ensure_future(transfers._until_durable(PAYMENT_ID))
        with pytest.raises(RuntimeError), store.transaction():  # the unlock is refused: its transaction rolls back
            transfers.flush(HASHLOCK)
            raise RuntimeError("the signer refused")
        assert PAYMENT_ID in transfers._dirty and stored(store) == []  # deferred again
        await asyncio.wait_for(answer, 2.0)  # after DURABLE_WAIT it wrote the step itself
        assert stored(store) == [PAYMENT_ID] and PAYMENT_ID not in transfers._dirty

    asyncio.run(scenario())
