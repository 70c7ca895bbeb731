"""The on-chain client: deploys the ``PaymentChannels`` contract and drives every channel action.

Each method sends one transaction from a local account and returns its receipt (plus what it created).
A revert with one of the contract's custom errors is raised as the Python exception of the same name
(``paychan.exceptions``), whether the node is eth-tester or anvil.
"""

from __future__ import annotations

import ast
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import requests
from eth_abi.abi import decode, encode
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.compile import Artifact, load_artifact
from paychan.exceptions import (
    ChainUnavailable,
    ContractCustomError,
    OutOfGas,
    TransactionFailed,
    UnknownChannel,
    UnsupportedChain,
    contract_error_classes,
)
from paychan.signing import Domain
from paychan.state import (
    ETH,
    ZERO_ROOT,
    ChannelId,
    ChannelParams,
    ChannelState,
    Lock,
    Signature,
    SignedState,
    Withdrawal,
    channel_id,
    pack_locks,
)
from paychan.wallets import Sender, WalletAccount

STATUS_NONE, STATUS_OPEN, STATUS_CLOSING = 0, 1, 2
STATUS_NAMES = {STATUS_NONE: "none", STATUS_OPEN: "open", STATUS_CLOSING: "closing"}
# The contract's raw closing statuses: 2 + the closer's side (0 A, 1 B), plus 2 once the closer is proven
# to have closed with a state it revoked.
_RAW_PENALIZED = 4
# Where `settle` calldata carries the outcome's salt (a uint64 in a 32-byte word): after the selector, the
# Channel's 5 words and the Outcome's first 5 words.
OUTCOME_SALT_WORD = slice(4 + 10 * 32, 4 + 11 * 32)
# Where `challenge` and `proveRevoked` calldata carry the record's outcome hash (which the salt makes
# random): after the selector and the Channel's 5 words.
RECORD_HASH_WORD = slice(4 + 5 * 32, 4 + 6 * 32)
_MASK_116 = (1 << 116) - 1


@dataclass(frozen=True)
class OnchainChannel:
    """A channel's slot as the contract reports it (``getChannel``). ``status`` is 0 none, 1 open or 2
    closing; a closing channel also tells who closed (``closed_by``) and whether the closer was proven
    to have cheated (``penalized``). ``withdrawals`` is an open channel's withdrawal counter."""

    channel_id: ChannelId
    status: int
    deposit_a: int
    deposit_b: int
    deadline: int
    nonce: int
    fingerprint: bytes
    withdrawals: int = 0
    closed_by: str | None = None
    penalized: bool = False

    @property
    def status_name(self) -> str:
        if self.penalized:
            return "closing (closer penalized)"
        return STATUS_NAMES[self.status]

    @property
    def total_deposit(self) -> int:
        return self.deposit_a + self.deposit_b


@dataclass(frozen=True)
class RecordedState:
    """The record of a closing channel: the state recorded by the last unilateral close or accepted
    challenge (from its event: nonce, payouts before locks, locked totals, locks root, salt), the deadline
    and the nonce the closer submitted (from ``ChannelClosed``), the channel's deposits and withdrawal
    counter (final once it is closing; from its ``Deposited``/``Withdrawn`` events). ``challenge`` and
    ``prove_revoked`` pass back :meth:`as_record`, ``settle`` :meth:`as_outcome` with :attr:`funds` and the
    closer's nonce; the contract checks them against the fingerprint in the channel's slot
    (:meth:`fingerprint`)."""

    nonce: int
    balance_a: int
    balance_b: int
    deadline: int
    deposit_a: int
    deposit_b: int
    salt: int
    locked_a: int = 0
    locked_b: int = 0
    locks_root: bytes = ZERO_ROOT
    withdrawals: int = 0
    closer_nonce: int = 0

    @classmethod
    def from_events(cls, closed: Any, latest: Any, funds: tuple[int, int, int]) -> RecordedState:
        """The record from the args of the channel's ``ChannelClosed`` event (``closed``), of its latest
        ``ChannelClosed`` or ``ChallengeAccepted`` event (``latest``; the same one if none followed) and
        the channel's ``funds`` (deposit A, deposit B, withdrawal counter) as its last ``Deposited`` and
        ``Withdrawn`` events left them (:meth:`PaychanContract.funds_from_events`)."""
        deposit_a, deposit_b, withdrawals = funds
        return cls(
            int(latest["nonce"]),
            int(latest["balanceA"]),
            int(latest["balanceB"]),
            int(closed["deadline"]),
            deposit_a,
            deposit_b,
            int(latest["salt"]),
            locked_a=int(latest["lockedA"]),
            locked_b=int(latest["lockedB"]),
            locks_root=bytes(latest["locksRoot"]),
            withdrawals=withdrawals,
            closer_nonce=int(closed["nonce"]),
        )

    @property
    def funds(self) -> int:
        """The contract's ``Record.funds``: the open slot's withdrawal counter and deposits, packed."""
        return (self.withdrawals << 232) | (self.deposit_a << 116) | self.deposit_b

    def as_outcome(self) -> tuple[int, int, int, int, bytes, int]:
        """The contract's ``Outcome``."""
        return (self.balance_a, self.balance_b, self.locked_a, self.locked_b, self.locks_root, self.salt)

    def outcome_hash(self) -> bytes:
        return keccak(encode(["uint256", "uint256", "uint256", "uint256", "bytes32", "uint64"], self.as_outcome()))

    def as_record(self) -> tuple[bytes, int, int]:
        """The contract's ``Record``."""
        return (self.outcome_hash(), self.funds, self.closer_nonce)

    def fingerprint(self) -> bytes:
        """The 20-byte fingerprint the closing slot holds for this record (``RecordMismatch`` values)."""
        return keccak(encode(["bytes32", "uint256", "uint48"], self.as_record()))[-20:]


class ErrorDecoder:
    """Maps revert data to the contract's custom errors, raised as ``paychan.exceptions`` classes."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        classes = contract_error_classes()
        self._errors: dict[bytes, tuple[type[ContractCustomError], list[str]]] = {}
        for item in abi:
            if item["type"] == "error":
                selector = function_abi_to_4byte_selector(item)  # type: ignore[arg-type]
                self._errors[selector] = (classes[item["name"]], [i["type"] for i in item["inputs"]])

    def decode(self, data: bytes) -> ContractCustomError | None:
        entry = self._errors.get(bytes(data[:4]))
        if entry is None:
            return None
        cls, types = entry
        values = decode(types, bytes(data[4:])) if types else ()
        return cls(*[to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)])

    def reraise(self, exc: Exception) -> None:
        """Raises the decoded custom error of ``exc``, or ``TransactionFailed`` for any other revert."""
        data = _revert_data(exc)
        if data is not None:
            decoded = self.decode(data)
            if decoded is not None:
                raise decoded from None
        raise TransactionFailed(str(exc)) from exc


def _revert_data(exc: BaseException) -> bytes | None:
    """Revert data from a web3 (anvil, Hardhat), eth-tester or py-evm exception, following its cause chain.

    Nodes put the data at different depths of the JSON-RPC error: anvil and geth in ``error.data`` (a hex
    string), Hardhat one level deeper (``error.data.data``, next to a ``message``); web3 passes either on
    as the exception's ``data``, its first argument, or (``Web3RPCError``) its ``rpc_response``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        candidates = (getattr(current, "data", None), getattr(current, "rpc_response", None), *current.args)
        for candidate in candidates:
            data = _as_revert_bytes(candidate)
            if data is not None:
                return data
        current = current.__cause__ or current.__context__
    return None


_MAX_NESTING = 4  # {"error": {"data": {"data": "0x..."}}} is the deepest any known node goes


def _as_revert_bytes(candidate: Any, depth: int = 0) -> bytes | None:
    if isinstance(candidate, dict):
        if depth >= _MAX_NESTING:
            return None
        # a JSON-RPC reply ({"error": ...}), an error object ({"code", "message", "data"}) or Hardhat's
        # nested data ({"message", "data"}): the revert data is under "data", at some depth
        for key in ("data", "error"):
            found = _as_revert_bytes(candidate.get(key), depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(candidate, (bytes, bytearray)):
        return bytes(candidate) if len(candidate) >= 4 else None
    if isinstance(candidate, BaseException) and candidate.args:
        return _as_revert_bytes(candidate.args[0], depth + 1)  # py-evm's Revert(b"...")
    if not isinstance(candidate, str):
        return None
    if candidate.startswith("0x") and len(candidate) >= 10:
        try:
            return bytes(HexBytes(candidate))
        except ValueError:
            return None
    marker = "execution reverted: b"  # eth-tester's message: execution reverted: b'\\x..'
    if candidate.startswith(marker):
        try:
            value = ast.literal_eval(candidate[len(marker) - 1 :])
        except (ValueError, SyntaxError):
            return None
        return bytes(value) if isinstance(value, bytes) and len(value) >= 4 else None
    return None


# --- the fork check --------------------------------------------------------------------------------

# Creation code that stores 1 in transient slot 0, loads it back and returns it as one word:
#   PUSH1 1 PUSH1 0 TSTORE  PUSH1 0 TLOAD  PUSH1 0 MSTORE  PUSH1 32 PUSH1 0 RETURN
# A node without EIP-1153 fails the call (0x5c and 0x5d are invalid opcodes before Cancun).
TRANSIENT_STORAGE_PROBE = "0x600160005d60005c60005260206000f3"
_checked_chains: weakref.WeakValueDictionary[int, Chain] = weakref.WeakValueDictionary()


def require_transient_storage(chain: Chain) -> None:
    """Raises ``UnsupportedChain`` unless ``chain`` runs TSTORE/TLOAD (EIP-1153, Cancun), which
    ``PaymentChannels`` uses (its reentrancy guard): a contract-creation ``eth_call`` of a 16-byte probe.

    Checked once per ``Chain`` object. A node that does not answer raises ``ChainUnavailable`` instead.
    """
    if _checked_chains.get(id(chain)) is chain:
        return
    where = f"the node at {chain.url}" if chain.url else f"the {chain.kind} chain"
    try:
        result = bytes(chain.w3.eth.call({"data": TRANSIENT_STORAGE_PROBE}))  # type: ignore[typeddict-item]
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ChainUnavailable(f"no Ethereum JSON-RPC node answers at {chain.url} ({type(exc).__name__})") from exc
    except Exception as exc:  # the node's "invalid opcode" (web3's RPC error, eth-tester's VMError, ...)
        raise _unsupported(where) from exc
    if int.from_bytes(result, "big") != 1:
        raise _unsupported(where)
    _checked_chains[id(chain)] = chain


def _unsupported(where: str) -> UnsupportedChain:
    return UnsupportedChain(
        f"{where} does not support transient storage (EIP-1153, Cancun): PaymentChannels needs a Cancun or later chain"
    )


class PaychanContract:
    """A deployed ``PaymentChannels`` contract on ``chain``."""

    def __init__(self, chain: Chain, address: str, artifact: Artifact | None = None, from_block: int = 0) -> None:
        """``from_block``: the contract's deployment block, where event queries start (public nodes refuse
        log queries over the whole chain)."""
        self.chain = chain
        self.from_block = from_block
        self.artifact = artifact or load_artifact()
        self.address = to_checksum_address(address)
        self.contract: Contract = chain.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self.errors = ErrorDecoder(self.artifact.abi)
        self.domain = Domain(chain.chain_id, self.address)

    # --- deploying -------------------------------------------------------------------------------

    @classmethod
    def deploy(
        cls, chain: Chain, deployer: LocalAccount, artifact: Artifact | None = None
    ) -> tuple[PaychanContract, TxReceipt]:
        """Deploys ``PaymentChannels`` from ``deployer``; refuses (``UnsupportedChain``) a chain without
        transient storage, where the deployment would succeed and every later call fail."""
        require_transient_storage(chain)
        artifact = artifact or load_artifact()
        factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor().build_transaction({"from": deployer.address, "gas": 3_000_000})
        receipt = chain.send(deployer, {"data": tx["data"], "gas": 3_000_000})
        address = receipt["contractAddress"]
        if receipt["status"] != 1 or address is None:
            raise TransactionFailed("deploying PaymentChannels failed")
        return cls(chain, address, artifact, from_block=int(receipt["blockNumber"])), receipt

    # --- sending ---------------------------------------------------------------------------------

    def _transact(self, sender: Sender, fn: Any, value: int = 0, gas: int | None = None) -> TxReceipt:
        wallet = sender if isinstance(sender, WalletAccount) else None
        if isinstance(sender, WalletAccount):
            # the owner sends wallet.execute(this contract, value, calldata): the wallet is msg.sender and
            # pays ``value`` from its own balance; it bubbles the inner revert data, decoded as usual
            data = bytes(HexBytes(fn._encode_transaction_data()))
            fn = sender.execute_call(self.chain.w3, self.address, value, data)
            sender, value = sender.owner, 0
        tx: dict[str, Any] = {"from": sender.address, "value": value}
        try:
            if gas is None:
                tx["gas"] = self._estimate(fn, tx)
            else:
                tx["gas"] = gas
            built = fn.build_transaction({**tx, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0})
            receipt = self.chain.send(
                sender, {"to": fn.address, "data": built["data"], "value": value, "gas": tx["gas"]}
            )
        except ContractCustomError:
            raise
        except Exception as exc:  # web3 / node errors carrying revert data
            self._reraise(exc, wallet)
        if receipt["status"] != 1:
            self._raise_replayed(fn, tx, receipt, wallet)
        return receipt

    def _reraise(self, exc: Exception, wallet: WalletAccount | None = None) -> NoReturn:
        """Raises the contract's custom error in ``exc``'s revert data; for a call sent through ``wallet``,
        the wallet's own refusal (``NotWalletOwner``) if it is that; else ``TransactionFailed``."""
        data = _revert_data(exc) if wallet is not None else None
        if wallet is not None and data is not None and self.errors.decode(data) is None:
            refused = wallet.own_error(data)
            if refused is not None:
                raise refused from None
        self.errors.reraise(exc)
        raise AssertionError("unreachable: reraise always raises")

    def _estimate(self, fn: Any, tx: dict[str, Any]) -> int:
        # eth-tester always estimates on the pending block; other nodes are asked for the same, so a
        # time-dependent revert reports the same timestamp on every chain
        block = None if self.chain.tester is not None else "pending"
        estimate = int(fn.estimate_gas(tx, block_identifier=block))
        return estimate + estimate // 5 + 10_000  # refunds and warm/cold differences make estimates tight

    def _raise_replayed(
        self, fn: Any, tx: dict[str, Any], receipt: TxReceipt, wallet: WalletAccount | None = None
    ) -> None:
        """Raises why the mined transaction ``tx`` (of ``receipt``) failed.

        A receipt carries no revert data, so the error is found by replaying the call (with the same gas)
        on the parent block. That replay only sees the right state when nothing the failure depends on
        differs there, and the block's timestamp always does: an out-of-gas settle one second after the
        deadline replays at the parent's timestamp and "reverts" ``ChallengePeriodActive``. So out of gas
        is told from the receipt first, where no replay can be wrong about it: a revert returns the gas it
        did not use, while running out of gas (the only way this contract's code fails that uses up its
        gas limit) leaves ``gasUsed`` equal to the gas limit.
        """
        gas_limit, gas_used = int(tx["gas"]), int(receipt["gasUsed"])
        if gas_used >= gas_limit:
            raise OutOfGas(gas_limit, gas_used)
        try:
            fn.call(tx, block_identifier=receipt["blockNumber"] - 1)
        except Exception as exc:
            self._reraise(exc, wallet)
        raise TransactionFailed(
            f"transaction {receipt['transactionHash'].hex()} reverted after {gas_used:,} of {gas_limit:,} gas, "
            f"but its replay on block {receipt['blockNumber'] - 1} succeeds (the state it ran on differed)"
        )

    def _call(self, fn: Any) -> Any:
        try:
            return fn.call()
        except Exception as exc:
            self.errors.reraise(exc)

    # --- channel actions -------------------------------------------------------------------------

    def open_channel(
        self,
        sender: Sender,
        counterparty: str,
        amount: int = 0,
        asset: str = ETH,
        challenge_period: int = 3600,
        gas: int | None = None,
    ) -> tuple[ChannelParams, TxReceipt]:
        """Opens a channel from ``sender`` (A) to ``counterparty`` (B), funding A with ``amount``."""
        value = amount if asset == ETH else 0
        fn = self.contract.functions.open(
            to_checksum_address(counterparty), to_checksum_address(asset), challenge_period, amount
        )
        receipt = self._transact(sender, fn, value, gas)
        (event,) = self.contract.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
        args = event["args"]
        params = ChannelParams(
            args["participantA"], args["participantB"], args["asset"], args["challengePeriod"], args["number"]
        )
        return params, receipt

    def deposit(
        self, sender: Sender, params: ChannelParams, participant: str, amount: int, gas: int | None = None
    ) -> TxReceipt:
        """Adds ``amount`` to ``participant``'s deposit, paid by ``sender``."""
        value = amount if params.asset == ETH else 0
        fn = self.contract.functions.deposit(params.as_tuple(), to_checksum_address(participant), amount)
        return self._transact(sender, fn, value, gas)

    def cooperative_close(
        self, sender: Sender, params: ChannelParams, signed: SignedState, gas: int | None = None
    ) -> TxReceipt:
        """Pays out at once by a state both signed as final."""
        fn = self.contract.functions.cooperativeClose(params.as_tuple(), signed.state.as_tuple(), *_signatures(signed))
        return self._transact(sender, fn, 0, gas)

    def close(
        self, sender: Sender, params: ChannelParams, signed: SignedState | None = None, gas: int | None = None
    ) -> TxReceipt:
        """Starts a unilateral close with ``signed`` (or, with None, the deposits as nonce 0)."""
        if signed is None or signed.state.nonce == 0:
            fn = self.contract.functions.closeWithoutState(params.as_tuple())
        else:
            fn = self.contract.functions.close(params.as_tuple(), signed.state.as_tuple(), *_signatures(signed))
        return self._transact(sender, fn, 0, gas)

    def challenge(
        self,
        sender: Sender,
        params: ChannelParams,
        signed: SignedState,
        recorded: RecordedState | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Replaces the recorded state of a closing channel with the newer ``signed``."""
        recorded = recorded or self.recorded_state(self.channel_id(params))
        fn = self.contract.functions.challenge(
            params.as_tuple(), recorded.as_record(), signed.state.as_tuple(), *_signatures(signed)
        )
        return self._transact(sender, fn, 0, gas)

    def settle(
        self,
        sender: Sender,
        params: ChannelParams,
        recorded: RecordedState | None = None,
        gas: int | None = None,
        locks: Sequence[Lock] | bytes = (),
    ) -> TxReceipt:
        """Pays out the recorded state after the deadline, resolving its ``locks`` (the recorded state's
        lock list, in order; or its packed bytes) against the secret registry."""
        recorded = recorded or self.recorded_state(self.channel_id(params))
        packed = locks if isinstance(locks, bytes) else pack_locks(list(locks))
        fn = self.contract.functions.settle(
            params.as_tuple(), recorded.as_outcome(), recorded.funds, recorded.closer_nonce, packed
        )
        return self._transact(sender, fn, 0, gas)

    def prove_revoked(
        self,
        sender: Sender,
        params: ChannelParams,
        below_nonce: int,
        signature: Signature,
        recorded: RecordedState | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Proves that the closer revoked the state it closed with (its signed ``Revocation`` of every
        nonce below ``below_nonce``): settling then pays the whole channel to the other side."""
        recorded = recorded or self.recorded_state(self.channel_id(params))
        fn = self.contract.functions.proveRevoked(
            params.as_tuple(), recorded.as_record(), below_nonce, signature.as_tuple()
        )
        return self._transact(sender, fn, 0, gas)

    def withdraw(
        self,
        sender: Sender,
        params: ChannelParams,
        withdrawal: Withdrawal,
        sig_a: Signature,
        sig_b: Signature,
        gas: int | None = None,
    ) -> TxReceipt:
        """Takes ``withdrawal``'s amounts out of the open channel (both signed it)."""
        fn = self.contract.functions.withdraw(
            params.as_tuple(), withdrawal.as_tuple(), sig_a.as_tuple(), sig_b.as_tuple()
        )
        return self._transact(sender, fn, 0, gas)

    def claim(self, sender: Sender, asset: str = ETH, to: str | None = None, gas: int | None = None) -> TxReceipt:
        """Collects ``sender``'s deferred payouts in ``asset``."""
        fn = self.contract.functions.claim(to_checksum_address(asset), to_checksum_address(to or sender.address))
        return self._transact(sender, fn, 0, gas)

    # --- secret registry -------------------------------------------------------------------------

    def reveal_secret(self, sender: Sender, secret: bytes, gas: int | None = None) -> TxReceipt:
        """Reveals the 32-byte ``secret`` on chain (``revealSecret``): the first reveal records the block's
        timestamp under ``hashlock(secret)`` and emits ``SecretRevealed``; a repeated one changes nothing."""
        fn = self.contract.functions.revealSecret(_secret_word(secret))
        return self._transact(sender, fn, 0, gas)

    def reveal_secrets(self, sender: Sender, secrets: Sequence[bytes], gas: int | None = None) -> TxReceipt:
        """Reveals each of ``secrets`` in one transaction (``revealSecrets``); known ones are skipped."""
        fn = self.contract.functions.revealSecrets([_secret_word(s) for s in secrets])
        return self._transact(sender, fn, 0, gas)

    def revealed_at(self, hashlock: bytes) -> int:
        """When the secret of ``hashlock`` (``sha256(secret)``) was first revealed on chain, 0 if never."""
        return int(self._call(self.contract.functions.revealedAt(_secret_word(hashlock, "hashlock"))))

    # --- reading ---------------------------------------------------------------------------------

    def channel_id(self, params: ChannelParams) -> ChannelId:
        return channel_id(params, self.domain.chain_id, self.address)

    def get_channel(self, cid: ChannelId) -> OnchainChannel:
        raw, dep_a, dep_b, deadline, nonce, fingerprint, withdrawals = self._call(
            self.contract.functions.getChannel(cid)
        )
        return onchain_channel(cid, raw, dep_a, dep_b, deadline, nonce, bytes(fingerprint), withdrawals)

    def recorded_state(self, cid: ChannelId) -> RecordedState:
        """The latest ``ChannelClosed``/``ChallengeAccepted`` record of a closing channel.

        For a channel that is not closing it returns an empty record (the contract then reverts with
        ``ChannelNotClosing`` when it is used).
        """
        onchain = self.get_channel(cid)
        if onchain.status != STATUS_CLOSING:
            return RecordedState(0, 0, 0, 0, 0, 0, 0)
        closes = self._logs("ChannelClosed", cid)
        records = [*closes, *self._logs("ChallengeAccepted", cid)]
        records.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        close = max(closes, key=lambda e: (e["blockNumber"], e["logIndex"]))["args"]
        return RecordedState.from_events(close, records[-1]["args"], self.funds_from_events(cid))

    def deposits_from_events(self, cid: ChannelId) -> tuple[int, int]:
        """The channel's deposits (A, B): the ``total`` of each participant's last ``Deposited`` event, or
        the deposits a later ``Withdrawn`` event left."""
        deposit_a, deposit_b, _ = self.funds_from_events(cid)
        return deposit_a, deposit_b

    def funds_from_events(self, cid: ChannelId) -> tuple[int, int, int]:
        """The channel's deposits (A, B) and withdrawal counter, as its ``Deposited`` and ``Withdrawn``
        events left them (the record's ``funds`` once it is closing)."""
        participant_a = self.find_params(cid).participant_a
        totals = {"A": 0, "B": 0}
        withdrawals = 0
        logs = [*self._logs("Deposited", cid), *self._logs("Withdrawn", cid)]
        logs.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        for log in logs:
            args = log["args"]
            if log["event"] == "Withdrawn":
                totals = {"A": args["depositA"], "B": args["depositB"]}
                withdrawals = int(args["withdrawals"])
            else:
                totals["A" if args["participant"] == participant_a else "B"] = args["total"]
        return totals["A"], totals["B"], withdrawals

    def find_params(self, cid: ChannelId) -> ChannelParams:
        """The parameters of channel ``cid``, from its ``ChannelOpened`` event."""
        logs = self._logs("ChannelOpened", cid)
        if not logs:
            raise UnknownChannel(f"no channel 0x{cid.hex()} on {self.address}")
        a = logs[0]["args"]
        return ChannelParams(a["participantA"], a["participantB"], a["asset"], a["challengePeriod"], a["number"])

    def owed(self, account: str, asset: str = ETH) -> int:
        return int(self._call(self.contract.functions.owed(to_checksum_address(account), to_checksum_address(asset))))

    def onchain_digest(self, params: ChannelParams, state: ChannelState) -> bytes:
        return bytes(self._call(self.contract.functions.stateDigest(params.as_tuple(), state.as_tuple())))

    def onchain_revocation_digest(self, params: ChannelParams, below_nonce: int) -> bytes:
        return bytes(self._call(self.contract.functions.revocationDigest(params.as_tuple(), below_nonce)))

    def onchain_withdrawal_digest(self, params: ChannelParams, withdrawal: Withdrawal) -> bytes:
        return bytes(self._call(self.contract.functions.withdrawalDigest(params.as_tuple(), withdrawal.as_tuple())))

    def _logs(self, event: str, cid: ChannelId) -> list[Any]:
        return list(
            getattr(self.contract.events, event)().get_logs(
                from_block=self.from_block, argument_filters={"channelId": cid}
            )
        )


def onchain_channel(
    cid: ChannelId,
    raw_status: int,
    deposit_a: int,
    deposit_b: int,
    deadline: int,
    nonce: int,
    fingerprint: bytes,
    withdrawals: int = 0,
) -> OnchainChannel:
    """``getChannel``'s values with the raw status (0..5) told apart: closing, by whom, penalized."""
    if raw_status < STATUS_CLOSING:
        return OnchainChannel(cid, raw_status, deposit_a, deposit_b, deadline, nonce, fingerprint, withdrawals)
    closed_by = "A" if (raw_status - STATUS_CLOSING) % 2 == 0 else "B"
    return OnchainChannel(
        cid,
        STATUS_CLOSING,
        deposit_a,
        deposit_b,
        deadline,
        nonce,
        fingerprint,
        withdrawals,
        closed_by=closed_by,
        penalized=raw_status >= _RAW_PENALIZED,
    )


def _secret_word(value: bytes, what: str = "secret") -> bytes:
    if len(value) != 32:
        raise ValueError(f"a {what} is 32 bytes, got {len(value)}")
    return bytes(value)


def _signatures(signed: SignedState) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    from paychan.state import EMPTY_SIGNATURE

    return ((signed.sig_a or EMPTY_SIGNATURE).as_tuple(), (signed.sig_b or EMPTY_SIGNATURE).as_tuple())
