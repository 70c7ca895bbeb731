"""Helpers of the v2 reference model (``tests/test_model.py``): an SDK client whose every transaction
tells how it ended, and the contract's money rules written out independently of the SDK.

``ModelContract`` is ``PaychanContract`` (the same methods build the same calldata: states, records, lock
lists, withdrawals and signatures go through the SDK) whose transactions are first run as a call on the
pending block, the very block they are then mined in, so a revert is reported with the exact custom error
and values the mined transaction hit (timestamps included), and whose last receipt is kept, reverted or
not, so the model can charge the sender's gas to the wei. ``module_constants_left_out`` keeps the
literals of whatever modules are loaded out of hypothesis's draws, so the derandomized model draws the
same histories in any process.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from eth_abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes
from hypothesis.internal.conjecture import providers
from web3.types import TxReceipt

from paychan.contract import PaychanContract
from paychan.exceptions import ContractCustomError
from paychan.state import ZERO_ROOT, Lock, pack_locks


class ModelContract(PaychanContract):
    """``PaychanContract`` whose transactions are sent with the given gas (never estimated) and end in
    one of two ways: the receipt (status 1), or the custom error the same call raises on the pending block
    (status 0; that call is only made when the model predicts a revert, ``expect_revert``).
    ``last_receipt`` is the receipt of the last transaction sent, reverted or not."""

    last_receipt: TxReceipt | None = None
    expect_revert = False  # set by the model before each transaction it predicts to revert
    _dry = False
    _dry_error: ContractCustomError | None = None

    def dry_error(self, call: Callable[[], object]) -> ContractCustomError | None:
        """The custom error the SDK ``call`` (one transaction) would revert with on the pending block, or
        None; nothing is sent."""
        self._dry = True
        try:
            call()
        finally:
            self._dry = False
        return self._dry_error

    def _tester_call(self, sender: str, fn: Any, value: int = 0) -> bytes:
        """``fn`` as a call on the pending block, straight to eth-tester (through web3 a call costs several
        times more, and the model makes a few per step)."""
        data = fn._encode_transaction_data()
        tx = {"from": sender, "to": self.address, "data": data, "value": value, "gas": 10_000_000}
        return bytes(HexBytes(self.chain.tester.call(tx, "pending")))

    def view(self, fn: Any) -> tuple[Any, ...]:
        """The values the view ``fn`` returns (decoded by its ABI outputs)."""
        return tuple(decode(get_abi_output_types(fn.abi), self._tester_call(self.chain.accounts[0].address, fn)))

    def pending_error(self, sender: LocalAccount, fn: Any, value: int) -> ContractCustomError | None:
        """The custom error ``fn`` raises as a call from ``sender`` on the pending block, or None."""
        try:
            self._tester_call(sender.address, fn, value)
        except Exception as exc:  # noqa: BLE001 - eth-tester's TransactionFailed, its message the revert data
            message = str(exc.args[0]) if exc.args else ""
            if message[:2] in ("b'", 'b"'):
                decoded = self.errors.decode(ast.literal_eval(message))
                if decoded is not None:
                    return decoded
            raise
        return None

    def _transact(self, sender: LocalAccount, fn: Any, value: int = 0, gas: int | None = None) -> TxReceipt:
        assert gas is not None, "the model sends every transaction with explicit gas"
        # The call on the pending block only when a revert is expected (or asked for): it costs a call.
        predicted = self.pending_error(sender, fn, value) if self.expect_revert or self._dry else None
        if self._dry:
            self._dry_error = predicted
            return cast(TxReceipt, {})
        self.last_receipt = None
        tx = {"from": sender.address, "value": value, "gas": gas, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        data = fn.build_transaction(tx)["data"]
        receipt = self.chain.send(sender, {"to": self.address, "data": data, "value": value, "gas": gas})
        self.last_receipt = receipt
        if receipt["status"] == 1:
            if predicted is not None:
                raise AssertionError(f"the call on the pending block raised {predicted!r}, the transaction succeeded")
            return receipt
        if predicted is None:
            # Unexpected: tell why from a replay on the parent block (the SDK's way; its timestamp differs).
            self._raise_replayed(fn, {"from": sender.address, "value": value, "gas": gas}, receipt)
        raise predicted  # type: ignore[misc]


def computed_root(packed: bytes) -> bytes:
    """What ``settle`` hashes a packed lock list to: ``keccak256`` of the bytes, zero for none."""
    from eth_utils import keccak

    return keccak(packed) if packed else ZERO_ROOT


def resolve_locks(
    balance_a: int, balance_b: int, locked_a: int, locked_b: int, locks: tuple[Lock, ...], revealed: dict[bytes, int]
) -> tuple[int, int, list[str]]:
    """The contract's settle rule for a recorded state: a lock whose secret was revealed at or before its
    expiry pays its receiver (capped at the sender side's locked total), every other goes back to its
    sender. Returns the payouts (A, B) and, per lock, how it ended (for the outcome counts)."""
    to_b = to_a = 0
    ends = []
    for lock in locks:
        at = revealed.get(lock.hashlock, 0)
        if at == 0 or at > lock.expiry:
            ends.append(
                "lock: never revealed, back to the sender" if at == 0 else "lock: revealed late, back to the sender"
            )
            continue
        ends.append("lock: paid to the receiver")
        if lock.sender == "A":
            to_b += min(lock.amount, locked_a - to_b)
        else:
            to_a += min(lock.amount, locked_b - to_a)
    return balance_a + (locked_a - to_b) + to_a, balance_b + (locked_b - to_a) + to_b, ends


def withdrawal_leaves(deposit_a: int, deposit_b: int, amount_a: int, amount_b: int) -> tuple[int, int]:
    """What a withdrawal leaves of the deposits it names: each amount from its own side first, the rest
    from the other side's (the caller has checked that the amounts fit)."""
    left_a, left_b = deposit_a, deposit_b
    if amount_a > left_a:
        left_a, left_b = 0, left_b - (amount_a - left_a)
    else:
        left_a -= amount_a
    if amount_b > left_b:
        left_a, left_b = left_a - (amount_b - left_b), 0
    else:
        left_b -= amount_b
    return left_a, left_b


def packed(locks: tuple[Lock, ...] | list[Lock]) -> bytes:
    return pack_locks(list(locks))


@contextmanager
def module_constants_left_out() -> Iterator[None]:
    """Hypothesis draws, now and then (5% of the integers, bytes, strings and floats it draws), a literal
    found in the source of any module loaded in the process that is not a test or an installed package:
    all of ``paychan``'s (``_get_local_constants``, read again whenever ``sys.modules`` grows). So the
    same derandomized seed drew other histories once other code had imported other modules (one 32-byte
    literal in ``paychan/demo_network.py``, imported by ``paychan.cli``, became a lock's secret), and any
    edit of a literal anywhere in the package moved them. Inside this block that pool is empty: the draws
    follow the seed and the strategies alone (hypothesis's own built-in constants stay). The cache of the
    constants each draw may take, filled from the pool, is emptied on the way in and out.

    Hypothesis has no setting for this; a version that renames these internals makes this a no-op, and
    ``test_model``'s check of the histories in two interpreters then fails."""
    get_local_constants = getattr(providers, "_get_local_constants", None)
    if get_local_constants is None:
        yield
        return
    providers._get_local_constants = providers.Constants
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = get_local_constants
        providers.CONSTANTS_CACHE.cache.clear()
