"""Gas benchmark: every channel operation measured from receipts, beside Raiden, Nitro and the EVM floor.

Run from the repository root::

    .venv/bin/python -m benchmarks.gas                     # measure, print, write results/gas.json + gas.png
    .venv/bin/python -m benchmarks.gas --update-snapshot   # also rewrite results/gas-snapshot.json
    .venv/bin/python benchmarks/gas.py --payments 100      # a shorter off-chain run

What it does: compiles ``contracts/`` (with the test-only ``TestToken``), deploys on a fresh embedded
chain (py-evm, Prague rules), runs an ETH channel and an ERC-20 channel through every operation and reads
``gasUsed`` from each receipt. It runs a channel with 1 and with 10,000 off-chain payments (the real
two-party protocol of ``paychan.channel.Channel``) and shows that the on-chain cost does not depend on how
many payments were made. For every operation it computes a floor from the Prague gas schedule: the
transaction base, the calldata actually sent, and only the storage, signature, transfer and log costs the
operation cannot avoid, each with the reason it is needed (``Floor.costs``). ``tests/test_gas_snapshot.py``
reuses ``measure_operations`` to guard against regressions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/gas.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector
from web3.types import TxReceipt

from paychan.chain import Chain, embedded_chain
from paychan.channel import Channel, agree_final, pay
from paychan.compile import Artifact, compile_contracts
from paychan.contract import OUTCOME_SALT_WORD, RECORD_HASH_WORD, PaychanContract
from paychan.signing import sign_message
from paychan.state import (
    ETH,
    ChannelParams,
    ChannelState,
    Lock,
    Revocation,
    SignedState,
    Withdrawal,
    hashlock,
    locks_root,
    pack_locks,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README_PATH = Path(__file__).resolve().parent.parent / "docs" / "gas.md"  # the gas page the README links
README_START, README_END = "<!-- gas:start -->", "<!-- gas:end -->"
RESULTS_PATH = RESULTS_DIR / "gas.json"
CHART_PATH = RESULTS_DIR / "gas.png"
SNAPSHOT_PATH = RESULTS_DIR / "gas-snapshot.json"

ETHER = 10**18
PERIOD = 3600
TX_GAS = 500_000  # explicit gas limit: skips estimation, which dominates eth-tester time
BENCH_SECRET = hashlib.sha256(b"paychan gas benchmark").digest()  # fixed: the same calldata on every run

# --------------------------------------------------------------------------------------------------
# The Prague gas schedule (the parts the floors use)
# --------------------------------------------------------------------------------------------------

TX_BASE = 21_000  # every transaction
CALLDATA_ZERO = 4  # per zero calldata byte
CALLDATA_NONZERO = 16  # per nonzero calldata byte
CALLDATA_FLOOR_PER_TOKEN = 10  # EIP-7623: a zero byte is 1 token, a nonzero byte 4
CREATE = 32_000  # contract creation
INITCODE_WORD = 2  # EIP-3860, per 32-byte word of init code
CODE_DEPOSIT = 200  # per byte of deployed runtime code
COLD_SLOAD = 2_100  # first access to a storage slot in a transaction (EIP-2929)
WARM_ACCESS = 100  # any later access to a slot or account
COLD_ACCOUNT = 2_600  # first access to an account (CALL, BALANCE, EXTCODESIZE ...)
SSTORE_SET = 20_000  # zero -> nonzero
SSTORE_RESET = 2_900  # nonzero -> other value, first write in the transaction (5,000 less the cold 2,100)
SSTORE_DIRTY = 100  # a slot already written in this transaction
CLEAR_REFUND = 4_800  # nonzero -> zero (EIP-3529)
REFUND_QUOTIENT = 5  # refunds are capped at gasUsed / 5
CALL_VALUE = 9_000  # a CALL that moves ETH ...
CALL_STIPEND = 2_300  # ... hands the callee a 2,300 stipend that an EOA returns unused
ECRECOVER = 3_000  # the precompile; precompiles are always warm, so its STATICCALL costs 100 more
SHA256_BASE, SHA256_WORD = 60, 12  # the SHA-256 precompile (address 2), also warm: its STATICCALL costs 100 more
BLOCKHASH = 20  # BLOCKHASH of a recent block
PREVRANDAO = 2  # the beacon chain randomness of the current block
LOG_BASE, LOG_TOPIC, LOG_BYTE = 375, 375, 8
KECCAK_BASE, KECCAK_WORD = 30, 6

SCHEDULE = {
    "fork": "prague",
    "tx_base": TX_BASE,
    "calldata_zero_byte": CALLDATA_ZERO,
    "calldata_nonzero_byte": CALLDATA_NONZERO,
    "calldata_floor_per_token_eip7623": CALLDATA_FLOOR_PER_TOKEN,
    "create": CREATE,
    "initcode_word": INITCODE_WORD,
    "code_deposit_byte": CODE_DEPOSIT,
    "cold_sload": COLD_SLOAD,
    "warm_access": WARM_ACCESS,
    "cold_account": COLD_ACCOUNT,
    "sstore_set": SSTORE_SET,
    "sstore_reset": SSTORE_RESET,
    "sstore_dirty": SSTORE_DIRTY,
    "clear_refund": CLEAR_REFUND,
    "refund_cap": f"gasUsed / {REFUND_QUOTIENT}",
    "call_value": CALL_VALUE,
    "call_stipend": CALL_STIPEND,
    "ecrecover": ECRECOVER,
    "sha256": f"{SHA256_BASE} + {SHA256_WORD} per word",
    "blockhash": BLOCKHASH,
    "prevrandao": PREVRANDAO,
    "log": f"{LOG_BASE} + {LOG_TOPIC} per topic + {LOG_BYTE} per data byte",
    "keccak256": f"{KECCAK_BASE} + {KECCAK_WORD} per word",
}


@dataclass(frozen=True)
class Cost:
    """One unavoidable item of an operation's floor, and why the operation cannot do without it."""

    gas: int
    why: str
    event: bool = False  # one of the contract's own events (compared with the events paychan emits)


@dataclass(frozen=True)
class Floor:
    """The least gas an operation can cost: the sum of its unavoidable items, less the refund it earns."""

    costs: tuple[Cost, ...]
    refund: int = 0
    refund_why: str = ""
    calldata_tokens: int = 0

    @property
    def gross(self) -> int:
        return sum(c.gas for c in self.costs)

    @property
    def refunded(self) -> int:
        return min(self.refund, self.gross // REFUND_QUOTIENT)

    @property
    def total(self) -> int:
        # EIP-7623: a transaction never costs less than 21,000 + 10 per calldata token.
        return max(self.gross - self.refunded, TX_BASE + CALLDATA_FLOOR_PER_TOKEN * self.calldata_tokens)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"total": self.total, "costs": [{"gas": c.gas, "why": c.why} for c in self.costs]}
        if self.refund:
            data["refund"] = {"gas": -self.refunded, "why": self.refund_why}
        return data


# --- floor building blocks -----------------------------------------------------------------------


def calldata_gas(data: bytes) -> int:
    zeros = data.count(0)
    return zeros * CALLDATA_ZERO + (len(data) - zeros) * CALLDATA_NONZERO


# `settle` passes back the outcome's salt, a uint64 in the low 8 bytes of its calldata word; `challenge` and
# `proveRevoked` pass back the outcome's hash, a whole word. Both are drawn from the recording block, so
# their zero bytes (4 gas instead of 16) vary from run to run.
RANDOM_BYTES = {
    "settle": slice(OUTCOME_SALT_WORD.stop - 8, OUTCOME_SALT_WORD.stop),
    "challenge": RECORD_HASH_WORD,
    "proveRevoked": RECORD_HASH_WORD,
}


def with_worst_case_salt(data: bytes, random: slice) -> bytes:
    """``data`` with each zero byte of its ``random`` part (the salt, or the hash it makes random) made
    nonzero: the calldata of the dearest draw, so a measurement does not depend on the one the run got."""
    worst = bytes(b or 1 for b in data[random])
    return data[: random.start] + worst + data[random.stop :]


def calldata_tokens(data: bytes) -> int:
    zeros = data.count(0)
    return zeros + 4 * (len(data) - zeros)


def _intrinsic(data: bytes) -> list[Cost]:
    zeros = data.count(0)
    return [
        Cost(TX_BASE, "transaction base cost"),
        Cost(
            calldata_gas(data),
            f"calldata as this ABI sends it: {len(data)} bytes, {zeros} zero x{CALLDATA_ZERO} + "
            f"{len(data) - zeros} nonzero x{CALLDATA_NONZERO}",
        ),
    ]


def _keccak(nbytes: int, why: str) -> Cost:
    return Cost(KECCAK_BASE + KECCAK_WORD * ((nbytes + 31) // 32), why)


def _log(topics: int, words: int, why: str, ours: bool = True) -> Cost:
    return Cost(LOG_BASE + LOG_TOPIC * topics + LOG_BYTE * 32 * words, why, event=ours)


def log_gas(topics: int, data_bytes: int) -> int:
    return LOG_BASE + LOG_TOPIC * topics + LOG_BYTE * data_bytes


CHANNEL_ID = _keccak(
    7 * 32, "channelId = keccak256 of chain id, contract and the 5 channel parameters (parameters are not stored)"
)
SLOT_READ = Cost(COLD_SLOAD, "read the channel's one storage slot (cold): status, deposits or the closing record")
SIGNATURES = (
    _keccak(9 * 32, "EIP-712 struct hash of the State (typehash + channel id + 7 fields)"),
    _keccak(66, "EIP-712 digest: keccak256(0x1901 || domain separator || struct hash)"),
    Cost(2 * (ECRECOVER + WARM_ACCESS), "ecrecover of both participants' signatures (2 x 3,000 + 2 x 100 warm call)"),
)
OUTCOME_HASH = _keccak(
    6 * 32,
    "hash of the recorded outcome: two payouts, two locked totals, the locks root and the salt do not fit "
    "the slot, so the record keeps keccak256(Outcome); the salt drawn in the recording block means forging a "
    "record takes a 160-bit preimage, not an 80-bit collision",
)
RECORD_CHECK = _keccak(
    3 * 32,
    "fingerprint of the record: keccak256(outcome hash, funds, closer's nonce); the funds word (deposits and "
    "withdrawal counter) lets a challenge give back deposits a state does not know of, the closer's nonce "
    "keeps a revocation provable after a challenge; two levels, so a challenge passes 3 words, not 9",
)
FINGERPRINT = Cost(OUTCOME_HASH.gas + RECORD_CHECK.gas, "fingerprint of the new record: " + OUTCOME_HASH.why)
SALT = Cost(
    BLOCKHASH + PREVRANDAO,
    "draw the record's salt: PREVRANDAO (2) xor BLOCKHASH of the parent block (20), unknown before the block",
)


def _eth_payouts(cold_recipients: int) -> list[Cost]:
    costs = [
        Cost(
            2 * (CALL_VALUE - CALL_STIPEND),
            "push both payouts: 2 CALLs with value (9,000 each, less the 2,300 stipend an EOA hands back)",
        )
    ]
    if cold_recipients:
        costs.append(
            Cost(
                cold_recipients * COLD_ACCOUNT,
                f"{cold_recipients} recipient(s) other than the sender are cold accounts (2,600 each); the "
                "sender is warm",
            )
        )
    return costs


def _token_transfer_from() -> list[Cost]:
    """``transferFrom(depositor, channels, amount)`` on solady's ERC20 (TestToken), infinite allowance."""
    return [
        Cost(COLD_ACCOUNT, "call the token (a cold account)"),
        Cost(COLD_SLOAD, "token: read the allowance (cold; an infinite allowance is not rewritten)"),
        Cost(COLD_SLOAD + SSTORE_RESET, "token: debit the depositor's balance (cold slot, nonzero -> nonzero)"),
        Cost(COLD_SLOAD + SSTORE_RESET, "token: credit the channels contract's balance (cold, already nonzero)"),
        _log(3, 1, "token: Transfer event (LOG3, 32 bytes)", ours=False),
    ]


def _token_payouts() -> list[Cost]:
    """Two ``transfer(recipient, amount)`` calls from the channels contract on TestToken."""
    return [
        Cost(COLD_ACCOUNT + WARM_ACCESS, "call the token twice (cold account, then warm)"),
        Cost(2 * COLD_SLOAD, "token (TestToken): its blocklist lookup for each recipient (cold)"),
        Cost(
            COLD_SLOAD + SSTORE_RESET + WARM_ACCESS + SSTORE_DIRTY,
            "token: debit the contract's balance twice (cold first write, then a warm dirty slot)",
        ),
        Cost(2 * (COLD_SLOAD + SSTORE_RESET), "token: credit both recipients (cold slots, already nonzero)"),
        Cost(2 * (LOG_BASE + 3 * LOG_TOPIC + LOG_BYTE * 32), "token: 2 Transfer events (LOG3, 32 bytes each)"),
    ]


_CLEAR = "clearing the channel's slot (nonzero -> zero) refunds 4,800, capped at a fifth of the gas used"


def floor_open(data: bytes, token: bool = False) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        Cost(
            COLD_SLOAD + SSTORE_RESET,
            "take a fresh channel number: a contract-wide counter read cold and rewritten (nonzero -> nonzero); "
            "without a never-repeating number a settled channel could be reopened and its old states replayed",
        ),
        Cost(COLD_SLOAD + SSTORE_SET, "store the new channel: one fresh slot (zero -> nonzero, cold)"),
        _log(
            1,
            5,
            "one event (channelId topic + counterparty, asset, period, number, amount) so the "
            "counterparty can find the channel, whose parameters are not stored",
        ),
    ]
    if token:
        costs += _token_transfer_from()
    else:
        costs.append(Cost(0, "the ETH deposit rides on the transaction's value: no transfer cost"))
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_deposit(data: bytes, token: bool = False) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        Cost(SSTORE_RESET, "write the new deposit into the channel's slot (nonzero -> nonzero)"),
        _log(1, 2, "one event (channelId topic + participant, amount) so the other party sees the deposit"),
    ]
    if token:
        costs += _token_transfer_from()
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_cooperative_close(data: bytes, token: bool = False) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        *SIGNATURES,
        Cost(SSTORE_RESET, "clear the channel's slot (its id can never be used again)"),
        _log(1, 2, "one event (channelId topic + both payouts)"),
        *(_token_payouts() if token else _eth_payouts(cold_recipients=1)),
    ]
    return Floor(tuple(costs), refund=CLEAR_REFUND, refund_why=_CLEAR, calldata_tokens=calldata_tokens(data))


def floor_close(data: bytes) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        *SIGNATURES,
        SALT,
        FINGERPRINT,
        Cost(SSTORE_RESET, "write the closing record (deadline, nonce, fingerprint) over the deposits"),
        _log(
            1,
            5,
            "one event (channelId topic + nonce, balanceA, balanceB, deadline, salt): the balances and salt "
            "are not stored, so the other party and watchtowers learn them here (paychan also logs the closer, "
            "the locked totals and the locks root)",
        ),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_close_without_state(data: bytes) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        SALT,
        FINGERPRINT,
        Cost(SSTORE_RESET, "write the closing record over the deposits"),
        _log(1, 5, "one event (channelId topic + nonce, balanceA, balanceB, deadline, salt)"),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_challenge(data: bytes) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        Cost(RECORD_CHECK.gas, "check the record passed in (outcome hash, funds, closer's nonce): " + RECORD_CHECK.why),
        *SIGNATURES,
        SALT,
        Cost(FINGERPRINT.gas, "fingerprint of the new record (new outcome and salt, the same funds)"),
        Cost(SSTORE_RESET, "write the new nonce and fingerprint (nonzero -> nonzero)"),
        _log(
            1,
            4,
            "one event (channelId topic + nonce, balanceA, balanceB, salt) so the next challenger or settler "
            "knows the record",
        ),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_settle(data: bytes, token: bool = False) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        Cost(FINGERPRINT.gas, "check the outcome passed in (balances, locks, salt) and the rest of the record"),
        Cost(SSTORE_RESET, "clear the channel's slot"),
        _log(1, 2, "one event (channelId topic + both payouts)"),
        *(_token_payouts() if token else _eth_payouts(cold_recipients=1)),
    ]
    return Floor(tuple(costs), refund=CLEAR_REFUND, refund_why=_CLEAR, calldata_tokens=calldata_tokens(data))


def floor_reveal_secret(data: bytes) -> Floor:
    costs = [
        *_intrinsic(data),
        Cost(
            WARM_ACCESS + SHA256_BASE + SHA256_WORD,
            "hashlock = sha256(secret): the SHA-256 precompile on one word (60 + 12), a warm call (100); "
            "SHA-256 rather than keccak256 so the preimage of a Lightning HTLC unlocks the same hashlock",
        ),
        Cost(
            COLD_SLOAD + SSTORE_SET,
            "record when the secret was first revealed: one fresh slot per hashlock (zero -> nonzero, cold); "
            "settle needs the time, not just the fact, to tell a reveal before a lock's expiry from one after",
        ),
        _log(
            2,
            1,
            "one event (hashlock topic + the secret) so every upstream hop's node, filtering by the hashlocks "
            "it holds, learns the secret from the logs",
        ),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


LOCK_BYTES = 70


def floor_settle_locks(data: bytes, locks: int, token: bool = False) -> Floor:
    base = floor_settle(data, token)
    costs = [
        *base.costs,
        _keccak(LOCK_BYTES * locks, f"check the {locks} lock(s) passed in against the recorded locksRoot (keccak256)"),
        Cost(
            locks * COLD_SLOAD,
            f"read each lock's reveal time in the secret registry ({locks} cold slot(s)): a lock pays its "
            "receiver only if its secret was revealed at or before its expiry",
        ),
    ]
    return Floor(tuple(costs), refund=base.refund, refund_why=base.refund_why, calldata_tokens=calldata_tokens(data))


def floor_prove_revoked(data: bytes) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        Cost(RECORD_CHECK.gas, "check the record passed in (outcome hash, funds, closer's nonce)"),
        _keccak(3 * 32, "EIP-712 struct hash of the Revocation (typehash + channel id + belowNonce)"),
        _keccak(66, "EIP-712 digest"),
        Cost(ECRECOVER + WARM_ACCESS, "ecrecover of the closer's revocation (3,000 + a warm 100 call)"),
        Cost(SSTORE_RESET, "mark the channel penalized in its slot (nonzero -> nonzero)"),
        _log(2, 2, "one event (channelId and cheater topics + closerNonce, belowNonce)"),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_withdraw(data: bytes, sides: int, token: bool = False) -> Floor:
    costs = [
        *_intrinsic(data),
        CHANNEL_ID,
        SLOT_READ,
        _keccak(8 * 32, "EIP-712 struct hash of the Withdrawal (typehash + channel id + 6 fields)"),
        _keccak(66, "EIP-712 digest"),
        Cost(2 * (ECRECOVER + WARM_ACCESS), "ecrecover of both participants' signatures"),
        Cost(SSTORE_RESET, "write the lower deposits and the counter into the channel's slot"),
        _log(1, 5, "one event (channelId topic + counter, amounts, new deposits)"),
    ]
    if token:
        tok = _token_payouts()
        costs += (
            tok
            if sides == 2
            else [
                Cost(COLD_ACCOUNT, "call the token (cold account)"),
                Cost(COLD_SLOAD, "token (TestToken): its blocklist lookup for the recipient (cold)"),
                Cost(COLD_SLOAD + SSTORE_RESET, "token: debit the contract's balance (cold, nonzero -> nonzero)"),
                Cost(COLD_SLOAD + SSTORE_RESET, "token: credit the recipient (cold, already nonzero)"),
                Cost(LOG_BASE + 3 * LOG_TOPIC + LOG_BYTE * 32, "token: Transfer event (LOG3, 32 bytes)"),
            ]
        )
    elif sides == 2:
        costs += _eth_payouts(cold_recipients=1)
    else:
        costs.append(Cost(CALL_VALUE - CALL_STIPEND, "push the payout to the sender: one CALL with value (warm)"))
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(data))


def floor_deploy(initcode: bytes, runtime_size: int) -> Floor:
    words = (len(initcode) + 31) // 32
    costs = [
        *_intrinsic(initcode),
        Cost(CREATE, "contract creation"),
        Cost(INITCODE_WORD * words, f"init code: {words} words x {INITCODE_WORD} (EIP-3860)"),
        Cost(
            CODE_DEPOSIT * runtime_size,
            f"code deposit: {runtime_size} runtime bytes x {CODE_DEPOSIT}; the "
            "size itself is the design lever, so this floor is for the code as shipped",
        ),
        Cost(
            COLD_SLOAD + SSTORE_SET,
            "channel counter starts at 1 (zero -> nonzero, cold): paid once here so no "
            "open pays for a fresh counter slot",
        ),
    ]
    return Floor(tuple(costs), calldata_tokens=calldata_tokens(initcode))


# --------------------------------------------------------------------------------------------------
# Published anchors and targets
# --------------------------------------------------------------------------------------------------

SOURCES = {
    "raiden": {
        "name": "Raiden TokenNetwork",
        "source": "raiden-network/raiden-contracts, raiden_contracts/data/gas.json, v0.50 "
        "(https://github.com/raiden-network/raiden-contracts/blob/master/raiden_contracts/data/gas.json)",
        "note": "ERC-20 only (Raiden has no ETH channels); measured with its own harness on an older gas schedule",
    },
    "nitro": {
        "name": "Nitro (NitroAdjudicator)",
        "source": "statechannels/go-nitro, nitro-protocol/gas-benchmarks/gasResults.json, 2023 "
        "(https://github.com/statechannels/go-nitro/tree/main/nitro-protocol/gas-benchmarks)",
        "note": "Nitro has no open transaction (a channel exists off-chain; the first deposit funds it); "
        "measured with its own harness on an older gas schedule",
    },
}

# operation -> (Raiden value, Raiden call, Nitro value, Nitro call), as quoted in issue 3.
ANCHORS: dict[str, tuple[int, str, int, str]] = {
    "open": (146_956, "openChannelWithDeposit", 46_496, "first ETH deposit; no open tx"),
    "deposit": (56_000, "setTotalDeposit", 29_408, "second ETH deposit"),
    "cooperative_close": (112_270, "cooperativeSettle", 111_514, "concludeAndTransferAllAssets"),
    "close": (118_501, "closeChannel", 113_146, "challenge"),
    "challenge": (90_516, "updateNonClosingBalanceProof", 96_482, "re-challenge"),
    "settle": (108_569, "settleChannel", 82_026, "transferAllAssets"),
    "reveal_secret": (46_181, "SecretRegistry.registerSecret", 0, ""),  # issue 13; Nitro has no registry
    # issue 13, Raiden's same-chain figures: settle 95,444 plus a separate unlock (59,037 for 1 lock, 83,840 for 6)
    "settle_1_lock": (95_444 + 59_037, "settleChannel 95,444 + unlock 59,037 (1 lock)", 0, ""),
    "settle_6_locks": (95_444 + 83_840, "settleChannel 95,444 + unlock 83,840 (6 locks)", 0, ""),
    "withdraw": (97_597, "setTotalWithdraw", 0, ""),
    "unhappy_path": (340_000, "registerSecret + closeChannel + settleChannel + unlock (about)", 0, ""),
    "deploy": (3_754_770, "TokenNetwork deployment", 3_443_915, "NitroAdjudicator deployment"),
}

TARGETS = {
    "deploy": 2_200_000,  # issue 13: contract v2 (was 1,500,000 in issue 3, met at 1,499,467 before v2)
    "eth.open": 70_000,
    "eth.top_up": 35_000,
    "eth.cooperative_close": 60_000,
    "eth.close": 50_000,
    "eth.challenge": 45_000,
    "eth.settle": 50_000,
    "reveal_secret": 47_000,  # issue 13
    # issue 13: every current operation within +5% of its figure before contract v2 (d7385d6)
    **{
        key: round(gas * 1.05)
        for key, gas in {
            "eth.open": 55_570,
            "eth.deposit": 32_040,
            "eth.top_up": 31_927,
            "eth.cooperative_close": 53_870,
            "eth.close": 42_243,
            "eth.close_without_state": 30_986,
            "eth.settle": 43_963,
            "erc20.open": 74_799,
            "erc20.deposit": 51_269,
            "erc20.top_up": 51_156,
            "erc20.cooperative_close": 65_480,
            "erc20.close": 42_483,
            "erc20.challenge": 43_531,
            "erc20.settle": 55_573,
        }.items()
    },
    # eth.challenge keeps issue 3's 45,000 above (tighter than +5% of 43,279 = 45,443)
    "eth.settle_1_lock": 55_000,  # issue 13
    "eth.prove_revoked": 50_000,  # issue 13
    "eth.withdraw": 52_000,  # issue 13: one side, ETH
    "unhappy_path": 150_000,  # issue 13: reveal + close + settle, one lock
}
# Lock and withdrawal expiries in the measured calldata: far in the future and the same every run (a
# clock-derived expiry changes the signatures' bytes, and with them the calldata gas, by a few units).
FIXED_EXPIRY = 2_000_000_000
PER_LOCK_TARGET = 3_500  # issue 13: each lock after the first
FLOOR_RATIO_TARGET = 1.25

# Before the gas work of issue 3 (commit 67aad97: legacy solc pipeline, solady's inlined reentrancy guard).
BASELINE = {
    "deploy": 1_792_164,
    "eth.open": 56_180,
    "eth.deposit": 32_547,
    "eth.top_up": 32_333,
    "eth.cooperative_close": 54_284,
    "eth.close": 42_594,
    "eth.close_without_state": 31_320,
    "eth.challenge": 43_026,
    "eth.settle": 43_631,
    "erc20.open": 75_639,
    "erc20.deposit": 52_006,
    "erc20.top_up": 51_792,
    "erc20.cooperative_close": 65_820,
    "erc20.close": 42_822,
    "erc20.challenge": 43_266,
    "erc20.settle": 55_155,
}


@dataclass(frozen=True)
class Operation:
    key: str  # e.g. "eth.open", the snapshot key
    label: str
    anchor: str | None  # key into ANCHORS
    floor: Callable[[bytes], Floor]


def _op(key: str, label: str, anchor: str | None, floor: Callable[[bytes], Floor]) -> Operation:
    return Operation(key, label, anchor, floor)


OPERATIONS: tuple[Operation, ...] = (
    _op("deploy", "deploy", "deploy", lambda d: Floor(())),  # replaced by floor_deploy (needs the code size)
    _op("eth.open", "open with deposit (ETH)", "open", floor_open),
    _op("eth.deposit", "counterparty's first deposit (ETH)", "deposit", floor_deposit),
    _op("eth.top_up", "top-up (ETH)", "deposit", floor_deposit),
    _op("eth.cooperative_close", "cooperative close (ETH)", "cooperative_close", floor_cooperative_close),
    _op("eth.close", "unilateral close (ETH)", "close", floor_close),
    _op("eth.close_without_state", "unilateral close without a state (ETH)", None, floor_close_without_state),
    _op("eth.challenge", "challenge with a newer state (ETH)", "challenge", floor_challenge),
    _op("eth.settle", "settle (ETH)", "settle", floor_settle),
    _op("erc20.open", "open with deposit (ERC-20)", "open", lambda d: floor_open(d, token=True)),
    _op("erc20.deposit", "counterparty's first deposit (ERC-20)", "deposit", lambda d: floor_deposit(d, token=True)),
    _op("erc20.top_up", "top-up (ERC-20)", "deposit", lambda d: floor_deposit(d, token=True)),
    _op(
        "erc20.cooperative_close",
        "cooperative close (ERC-20)",
        "cooperative_close",
        lambda d: floor_cooperative_close(d, token=True),
    ),
    _op("erc20.close", "unilateral close (ERC-20)", "close", floor_close),
    _op("erc20.challenge", "challenge with a newer state (ERC-20)", "challenge", floor_challenge),
    _op("erc20.settle", "settle (ERC-20)", "settle", lambda d: floor_settle(d, token=True)),
    _op("reveal_secret", "reveal a secret", "reveal_secret", floor_reveal_secret),
    _op("eth.settle_1_lock", "settle with 1 lock (ETH)", "settle_1_lock", lambda d: floor_settle_locks(d, 1)),
    _op("eth.settle_2_locks", "settle with 2 locks (ETH)", None, lambda d: floor_settle_locks(d, 2)),
    _op("eth.settle_6_locks", "settle with 6 locks (ETH)", "settle_6_locks", lambda d: floor_settle_locks(d, 6)),
    _op("eth.settle_16_locks", "settle with 16 locks (ETH)", None, lambda d: floor_settle_locks(d, 16)),
    _op("eth.prove_revoked", "prove a revoked close (penalty, ETH)", None, floor_prove_revoked),
    _op("eth.withdraw", "withdraw while open, one side (ETH)", "withdraw", lambda d: floor_withdraw(d, 1)),
    _op("eth.withdraw_both", "withdraw while open, both sides (ETH)", "withdraw", lambda d: floor_withdraw(d, 2)),
    _op("erc20.withdraw", "withdraw while open, one side (ERC-20)", "withdraw", lambda d: floor_withdraw(d, 1, True)),
    # Not one transaction: the sum of three (see COMPOSITES); its floor is the sum of their floors.
    _op("unhappy_path", "unhappy path, 1 lock: reveal + close + settle (ETH)", "unhappy_path", lambda d: Floor(())),
)
COMPOSITES = {"unhappy_path": ("unhappy.reveal_secret", "unhappy.close", "unhappy.settle_1_lock")}
COMPONENT_FLOORS = {
    "unhappy.reveal_secret": floor_reveal_secret,
    "unhappy.close": floor_close,
    "unhappy.settle_1_lock": lambda d: floor_settle_locks(d, 1),
}
OPERATION_BY_KEY = {op.key: op for op in OPERATIONS}

# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One transaction's gas (from its receipt) and the calldata it sent."""

    key: str
    gas: int
    calldata: bytes
    events_gas: int  # what the channels contract's own events cost (LOG gas, from the receipt's logs)


@dataclass
class Bench:
    """A fresh chain with the channels contract and a test token deployed, and what was measured on it."""

    chain: Chain
    contract: PaychanContract
    token: Any
    deploy_receipt: TxReceipt
    artifact: Artifact
    alice: LocalAccount
    bob: LocalAccount
    measured: dict[str, Measurement] = field(default_factory=dict)

    def record(self, key: str, receipt: TxReceipt) -> TxReceipt:
        assert receipt["status"] == 1, f"{key} reverted"
        tx = self.chain.w3.eth.get_transaction(receipt["transactionHash"])
        events = sum(
            log_gas(len(log["topics"]), len(log["data"]))
            for log in receipt["logs"]
            if log["address"] == self.contract.address
        )
        data, gas = bytes(tx["input"]), int(receipt["gasUsed"])
        random = self.salted_selectors.get(data[:4])
        if random is not None:  # report the dearest draw (it is random, see RANDOM_BYTES)
            worst = with_worst_case_salt(data, random)
            data, gas = worst, gas + calldata_gas(worst) - calldata_gas(data)
        self.measured[key] = Measurement(key, gas, data, events)
        return receipt

    @cached_property
    def salted_selectors(self) -> dict[bytes, slice]:
        """The selectors of the calls whose calldata carries a random part, and where (computed once)."""
        functions = self.contract.contract.functions
        return {
            function_signature_to_4byte_selector(getattr(functions, n).signature): part
            for n, part in RANDOM_BYTES.items()
        }


def _send_call(chain: Chain, sender: LocalAccount, fn: Any, gas: int = 200_000) -> TxReceipt:
    data = fn.build_transaction({"from": sender.address, "gas": gas, "maxFeePerGas": 0, "maxPriorityFeePerGas": 0})[
        "data"
    ]
    receipt = chain.send(sender, {"to": fn.address, "data": data, "gas": gas})
    assert receipt["status"] == 1, "token call reverted"
    return receipt


def _deploy_artifact(chain: Chain, deployer: LocalAccount, artifact: Artifact) -> Any:
    receipt = chain.send(deployer, {"data": artifact.bytecode, "gas": 6_000_000})
    assert receipt["status"] == 1, f"deploying {artifact.contract_name} failed"
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def setup(chain: Chain | None = None, artifacts: dict[str, Artifact] | None = None) -> Bench:
    """Deploys the channels contract (measured) and TestToken on ``chain`` (a fresh embedded chain)."""
    chain = chain or embedded_chain()
    artifacts = artifacts or compile_contracts(include_test=True)
    deployer, alice, bob = chain.accounts[0], chain.accounts[1], chain.accounts[2]
    contract, receipt = PaychanContract.deploy(chain, deployer, artifacts["PaymentChannels"])
    token = _deploy_artifact(chain, deployer, artifacts["TestToken"])
    for holder in (alice, bob):
        _send_call(chain, holder, token.functions.mint(holder.address, 1_000_000 * ETHER))
        _send_call(chain, holder, token.functions.approve(contract.address, 2**256 - 1))
    bench = Bench(chain, contract, token, receipt, artifacts["PaymentChannels"], alice, bob)
    bench.record("deploy", receipt)
    return bench


def _views(bench: Bench, params: ChannelParams, deposits: tuple[int, int]) -> tuple[Channel, Channel]:
    domain = bench.contract.domain
    return (
        Channel(params, domain, bench.alice.key, deposits=deposits),
        Channel(params, domain, bench.bob.key, deposits=deposits),
    )


def measure_lifecycle(bench: Bench, prefix: str, asset: str, unit: int) -> None:
    """Runs a channel of ``asset`` through every operation, recording each as ``<prefix>.<operation>``."""
    contract, alice, bob = bench.contract, bench.alice, bench.bob

    # Open, counterparty's first deposit, top-up, payments both ways, cooperative close (sent by alice).
    params, receipt = contract.open_channel(
        alice, bob.address, 5 * unit, asset=asset, challenge_period=PERIOD, gas=TX_GAS
    )
    bench.record(f"{prefix}.open", receipt)
    bench.record(f"{prefix}.deposit", contract.deposit(bob, params, bob.address, 3 * unit, gas=TX_GAS))
    bench.record(f"{prefix}.top_up", contract.deposit(alice, params, alice.address, unit, gas=TX_GAS))
    a, b = _views(bench, params, (6 * unit, 3 * unit))
    pay(a, b, unit)
    pay(b, a, unit // 2)
    final = agree_final(a, b)
    bench.record(f"{prefix}.cooperative_close", contract.cooperative_close(alice, params, final, gas=TX_GAS))

    # Dispute: alice closes with a stale state, bob challenges with the latest, bob settles.
    params, _ = contract.open_channel(alice, bob.address, 5 * unit, asset=asset, challenge_period=PERIOD, gas=TX_GAS)
    contract.deposit(bob, params, bob.address, 3 * unit, gas=TX_GAS)
    a, b = _views(bench, params, (5 * unit, 3 * unit))
    stale = pay(a, b, unit)
    latest = pay(a, b, unit)
    bench.record(f"{prefix}.close", contract.close(alice, params, stale, gas=TX_GAS))
    bench.record(f"{prefix}.challenge", contract.challenge(bob, params, latest, gas=TX_GAS))
    bench.chain.time_travel(PERIOD + 1)
    bench.record(f"{prefix}.settle", contract.settle(bob, params, gas=TX_GAS))

    if asset == ETH:
        params, _ = contract.open_channel(alice, bob.address, unit, asset=asset, challenge_period=PERIOD, gas=TX_GAS)
        bench.record(f"{prefix}.close_without_state", contract.close(alice, params, None, gas=TX_GAS))


def _signed(bench: Bench, state: ChannelState) -> SignedState:
    domain = bench.contract.domain
    return SignedState(state, sign_message(domain, state, bench.alice.key), sign_message(domain, state, bench.bob.key))


def _locked_state(bench: Bench, params: ChannelParams, nonce: int, locks: list[Lock], deposit: int) -> SignedState:
    locked = sum(lock.amount for lock in locks)
    state = ChannelState(
        bench.contract.channel_id(params),
        nonce,
        deposit - locked,
        0,
        locks_root(locks),
        deposit_a=deposit,
        deposit_b=0,
        locked_a=locked,
    )
    return _signed(bench, state)


def _secret(label: str) -> bytes:
    return hashlib.sha256(b"paychan gas benchmark " + label.encode()).digest()


def measure_v2(bench: Bench) -> None:
    """The operations of contract v2 (issue 13): settle with locks, proveRevoked, withdraw, the unhappy path."""
    contract, alice, bob, chain = bench.contract, bench.alice, bench.bob, bench.chain
    expiry = FIXED_EXPIRY  # a constant: calldata (and so gas) must not depend on the run's clock
    # Settle with N locks from A to B, every secret revealed before (its receiver is paid).
    for n in (1, 2, 6, 16):
        params, _ = contract.open_channel(alice, bob.address, 5 * ETHER, challenge_period=PERIOD, gas=TX_GAS)
        locks = [Lock("A", 10**15, expiry, hashlock(_secret(f"{n}.{i}"))) for i in range(n)]
        contract.reveal_secrets(bob, [_secret(f"{n}.{i}") for i in range(n)], gas=2_000_000)
        contract.close(bob, params, _locked_state(bench, params, 1, locks, 5 * ETHER), gas=TX_GAS)
        chain.time_travel(PERIOD + 1)
        key = f"eth.settle_{n}_lock" + ("s" if n > 1 else "")
        bench.record(key, contract.settle(bob, params, locks=pack_locks(locks), gas=2_000_000))
    # Penalty: alice closes with nonce 1 after revoking every nonce below 2; bob proves it.
    params, _ = contract.open_channel(alice, bob.address, 5 * ETHER, challenge_period=PERIOD, gas=TX_GAS)
    cid = contract.channel_id(params)
    old = _signed(bench, ChannelState(cid, 1, 4 * ETHER, ETHER, deposit_a=5 * ETHER, deposit_b=0))
    revocation = sign_message(contract.domain, Revocation(cid, 2), alice.key)
    contract.close(alice, params, old, gas=TX_GAS)
    bench.record("eth.prove_revoked", contract.prove_revoked(bob, params, 2, revocation, gas=TX_GAS))
    # Withdraw while open: one side (A), both sides, one side of an ERC-20 channel.
    for key, asset, amounts in (
        ("eth.withdraw", ETH, (ETHER, 0)),
        ("eth.withdraw_both", ETH, (ETHER, ETHER)),
        ("erc20.withdraw", bench.token.address, (ETHER, 0)),
    ):
        params, _ = contract.open_channel(
            alice, bob.address, 5 * ETHER, asset=asset, challenge_period=PERIOD, gas=TX_GAS
        )
        contract.deposit(bob, params, bob.address, 3 * ETHER, gas=TX_GAS)
        w = Withdrawal(contract.channel_id(params), *amounts, 5 * ETHER, 3 * ETHER, 0, FIXED_EXPIRY)
        sigs = (sign_message(contract.domain, w, alice.key), sign_message(contract.domain, w, bob.key))
        bench.record(key, contract.withdraw(alice, params, w, *sigs, gas=TX_GAS))
    # The unhappy path with one lock: B reveals the secret, closes with the locked state, settles.
    params, _ = contract.open_channel(alice, bob.address, 5 * ETHER, challenge_period=PERIOD, gas=TX_GAS)
    locks = [Lock("A", ETHER, expiry, hashlock(_secret("unhappy")))]
    bench.record("unhappy.reveal_secret", contract.reveal_secret(bob, _secret("unhappy"), gas=TX_GAS))
    bench.record(
        "unhappy.close", contract.close(bob, params, _locked_state(bench, params, 1, locks, 5 * ETHER), gas=TX_GAS)
    )
    chain.time_travel(PERIOD + 1)
    bench.record("unhappy.settle_1_lock", contract.settle(bob, params, locks=pack_locks(locks), gas=TX_GAS))
    for key, parts in COMPOSITES.items():
        ms = [bench.measured[k] for k in parts]
        bench.measured[key] = Measurement(key, sum(m.gas for m in ms), b"", sum(m.events_gas for m in ms))


def per_lock_cost(bench: Bench) -> dict[str, Any]:
    """The marginal cost of each lock after the first (settle with N locks against 1 lock)."""
    one = bench.measured["eth.settle_1_lock"].gas
    marginal = {n: round((bench.measured[f"eth.settle_{n}_locks"].gas - one) / (n - 1)) for n in (2, 6, 16)}
    return {
        "per_lock": marginal,
        "max": max(marginal.values()),
        "target": PER_LOCK_TARGET,
        "target_met": max(marginal.values()) <= PER_LOCK_TARGET,
    }


def measure_operations(chain: Chain | None = None, artifacts: dict[str, Artifact] | None = None) -> Bench:
    """Deploys on a fresh chain and measures every operation in ``OPERATIONS`` (ETH and ERC-20)."""
    bench = setup(chain, artifacts)
    measure_lifecycle(bench, "eth", ETH, ETHER)
    # A channel that stays open keeps the contract's token balance nonzero, as on a live deployment, so
    # the measured token operations do not pay for the contract's first token balance slot.
    bench.contract.open_channel(bench.alice, bench.bob.address, ETHER, asset=bench.token.address, gas=TX_GAS)
    measure_lifecycle(bench, "erc20", bench.token.address, ETHER)
    bench.record("reveal_secret", bench.contract.reveal_secret(bench.bob, BENCH_SECRET, gas=TX_GAS))
    measure_v2(bench)
    missing = {op.key for op in OPERATIONS} - set(bench.measured)
    assert not missing, f"not measured: {sorted(missing)}"
    return bench


def measure_payments(bench: Bench, payments: int) -> dict[str, Any]:
    """Opens an ETH channel, makes ``payments`` off-chain payments, closes cooperatively; on-chain gas."""
    contract, alice, bob = bench.contract, bench.alice, bench.bob
    params, open_receipt = contract.open_channel(alice, bob.address, 5 * ETHER, challenge_period=PERIOD, gas=TX_GAS)
    a, b = _views(bench, params, (5 * ETHER, 0))
    started = time.perf_counter()
    for _ in range(payments):
        pay(a, b, 10**12)
    seconds = time.perf_counter() - started
    final = agree_final(a, b)
    close_receipt = contract.cooperative_close(alice, params, final, gas=TX_GAS)
    result: dict[str, Any] = {
        "payments": payments,
        "off_chain_seconds": round(seconds, 2),
        "final_nonce": final.state.nonce,
    }
    for name, receipt in (("open", open_receipt), ("cooperative_close", close_receipt)):
        tx = bench.chain.w3.eth.get_transaction(receipt["transactionHash"])
        data = bytes(tx["input"])
        gas = int(receipt["gasUsed"])
        result[name] = {
            "gas": gas,
            "calldata_gas": calldata_gas(data),
            "execution_gas": gas - TX_BASE - calldata_gas(data),
        }
    result["on_chain_total"] = result["open"]["gas"] + result["cooperative_close"]["gas"]
    return result


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------


def floor_of(bench: Bench, key: str) -> Floor:
    m = bench.measured[key]
    if key == "deploy":
        return floor_deploy(m.calldata, (len(bench.artifact.deployed_bytecode) - 2) // 2)
    if key in COMPOSITES:
        parts = [(k, COMPONENT_FLOORS[k](bench.measured[k].calldata)) for k in COMPOSITES[key]]
        return Floor(tuple(Cost(f.total, f"the floor of {k.split('.', 1)[1]}") for k, f in parts))
    return OPERATION_BY_KEY[key].floor(m.calldata)


def snapshot_of(bench: Bench) -> dict[str, int]:
    return {op.key: bench.measured[op.key].gas for op in OPERATIONS}


def results(bench: Bench, payment_runs: list[dict[str, Any]]) -> dict[str, Any]:
    operations = []
    for op in OPERATIONS:
        measured = bench.measured[op.key]
        gas = measured.gas
        floor = floor_of(bench, op.key)
        entry: dict[str, Any] = {
            "key": op.key,
            "operation": op.label,
            "gas": gas,
            "before": BASELINE.get(op.key),  # None for the operations added after issue 3
            "floor": floor.to_json(),
            "ratio_to_floor": round(gas / floor.total, 3),
            "above_floor": gas - floor.total,
            "events_gas": measured.events_gas,
            "events_above_floor": measured.events_gas - sum(c.gas for c in floor.costs if c.event),
        }
        if op.key in TARGETS:
            entry["target"] = TARGETS[op.key]
            entry["target_met"] = gas <= TARGETS[op.key]
        if op.anchor:
            raiden, raiden_call, nitro, nitro_call = ANCHORS[op.anchor]
            entry["raiden"] = {"gas": raiden, "call": raiden_call}
            if nitro and not op.key.startswith("erc20."):  # the quoted Nitro figures are for ETH channels
                entry["nitro"] = {"gas": nitro, "call": nitro_call}
        operations.append(entry)
    runtime = (len(bench.artifact.deployed_bytecode) - 2) // 2
    return {
        "generated_by": "python -m benchmarks.gas",
        "chain": "eth-tester (py-evm), Prague rules",
        "compiler": bench.artifact.compiler,
        "code_size": {"runtime_bytes": runtime, "initcode_bytes": (len(bench.artifact.bytecode) - 2) // 2},
        "schedule": SCHEDULE,
        "floor_ratio_target": FLOOR_RATIO_TARGET,
        "sources": SOURCES,
        "operations": operations,
        "payments": payment_runs,
    }


def _fmt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def table(data: dict[str, Any]) -> str:
    """A markdown table of the results (also what the README shows)."""
    lines = [
        "| operation | paychan | before | target | Raiden | Nitro | floor | paychan / floor | above floor "
        "(of it: richer events) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in data["operations"]:
        events = f" ({e['events_above_floor']:,})" if e["key"] != "deploy" else ""
        lines.append(
            f"| {e['operation']} | {_fmt(e['gas'])} | {_fmt(e.get('before'))} | {_fmt(e.get('target'))} | "
            f"{_fmt(e.get('raiden', {}).get('gas'))} | {_fmt(e.get('nitro', {}).get('gas'))} | "
            f"{_fmt(e['floor']['total'])} | {e['ratio_to_floor']:.2f}x | {e['above_floor']:,}{events} |"
        )
    return "\n".join(lines)


def payments_table(data: dict[str, Any]) -> str:
    lines = [
        "| off-chain payments | final nonce | open | cooperative close | close: execution (gas - 21,000 - calldata) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for run in data["payments"]:
        lines.append(
            f"| {run['payments']:,} | {run['final_nonce']:,} | {run['open']['gas']:,} | "
            f"{run['cooperative_close']['gas']:,} | {run['cooperative_close']['execution_gas']:,} |"
        )
    return "\n".join(lines)


def floor_details(data: dict[str, Any]) -> str:
    """Each operation's floor, item by item with its reason (collapsed blocks for the README)."""
    out = []
    for e in data["operations"]:
        items = [f"  - {c['gas']:,}: {c['why']}" for c in e["floor"]["costs"] if c["gas"]]
        if "refund" in e["floor"]:
            items.append(f"  - {e['floor']['refund']['gas']:,}: {e['floor']['refund']['why']}")
        out.append(
            f"<details><summary>{e['operation']}: floor {e['floor']['total']:,}, paychan {e['gas']:,} "
            f"({e['ratio_to_floor']:.2f}x)</summary>\n\n" + "\n".join(items) + "\n</details>\n"
        )
    return "\n".join(out)


def readme_block(data: dict[str, Any]) -> str:
    """The gas section of docs/gas.md, generated from the results (``--readme`` writes it)."""
    ops = {e["key"]: e for e in data["operations"]}
    targets = [e for e in data["operations"] if "target" in e]
    met = all(e["target_met"] for e in targets)
    worst = max(data["operations"], key=lambda e: e["ratio_to_floor"])
    runs = data["payments"]
    deploy = ops["deploy"]
    return f"""## Gas

Every operation measured from transaction receipts on the embedded chain (Prague rules), beside the
published figures of Raiden and Nitro and beside the floor the EVM allows for that operation.
Targets (issues 3 and 13): {"all met" if met else "NOT all met"}. Every operation is within
{worst["ratio_to_floor"]:.2f}x of its floor (the largest: {worst["operation"]}); the goal was 1.25x.
Deployment: {deploy["gas"]:,} gas ({data["code_size"]["runtime_bytes"]:,} bytes of runtime code), target
{deploy["target"]:,}.

{table(data)}

"before": the contract as first written (legacy solc pipeline, solady's inlined reentrancy guard). The
ERC-20 rows use the test-only `TestToken` (solady ERC20 with a blocklist lookup in `transfer`), with the
contract already holding that token, as on a live deployment. `challenge` and `settle` pass back the
record's 64-bit salt, drawn from the recording block, so up to 8 of their calldata bytes are random: their
rows (and floors) are for the dearest salt (every salt byte nonzero), at most 96 gas above a lucky one.

![gas per operation: paychan, Raiden, Nitro and the floor](../benchmarks/results/gas.png)

The same channel with {runs[0]["payments"]:,} and with {runs[1]["payments"]:,} off-chain payments (the real
two-party protocol, `paychan.channel.Channel`) costs the same on chain: payments never touch the chain, and
the close carries one state whatever its nonce. The totals differ only by calldata bytes (a longer nonce,
other balances: {abs(runs[0]["cooperative_close"]["gas"] - runs[1]["cooperative_close"]["gas"])} gas);
execution is identical.

{payments_table(data)}

**The floor.** For each operation `benchmarks/gas.py` adds up, from the Prague schedule, only what the
operation cannot avoid, each item with its reason (in the code, `floor_*`, and in
`benchmarks/results/gas.json`): the 21,000 transaction base; the calldata actually sent (4 per zero byte,
16 per other); reading the channel's one slot cold (2,100) and rewriting it (2,900; 20,000 + 2,100 for the
new slot of an open; clearing refunds 4,800, capped at a fifth); the channel id and EIP-712 hashes; two
`ecrecover`s (3,000 + a warm 100 call each) for a signed state; two ETH pushes (9,000 less the 2,300
stipend an EOA returns, plus 2,600 for the recipient that is not the sender) or, for ERC-20, what the
token's own `transfer`/`transferFrom` must touch; and one event carrying what watchers cannot read from
storage (375 + 375 per topic + 8 per byte). What paychan spends above it (last column) is, first, richer
events than that one minimal event (in brackets: indexed participants for log filters, running totals, the
cooperative flag, and a `Deposited` event beside `ChannelOpened` in an open; clients and watchtowers read
them); then dispatch and ABI decoding with validation of every field, the reentrancy guard (three
transient-storage accesses, 300 gas), the range, nonce, malleability and conservation checks; and for
ERC-20 the token's own code around its storage (the floor counts only the slots, calls and log it must
touch) and the balance reads before and after `transferFrom` that credit what actually arrived. An opcode
trace of the ETH unilateral close (anvil `debug_traceTransaction`) finds no storage access, call or hash
beyond the floor's: past its richer event, the remaining ~1,700 gas are its 711 stack, jump, memory and
calldata opcodes. The deploy floor is for the code as shipped; the code size is the lever, and was cut from
7,933 to 6,575 bytes (solc's IR pipeline, one shared reentrancy-guard entry instead of an inlined copy per
function, the new channel's id hashed in place rather than through a memory struct) without removing a
check, an error or a function; contract v2 (issue 13) adds to it, {data["code_size"]["runtime_bytes"]:,} bytes
with its secret registry.

{floor_details(data)}
**Anchors.** Raiden: `raiden_contracts/data/gas.json` of raiden-network/raiden-contracts v0.50 (TokenNetwork,
ERC-20 only). Nitro: `nitro-protocol/gas-benchmarks/gasResults.json` of statechannels/go-nitro (2023; Nitro
has no open transaction, the first deposit funds a channel). Both were measured by their own harnesses under
older gas schedules, so they are indications, not like-for-like measurements; other versions of those files
differ by a few percent.

**Re-run.** `.venv/bin/python -m benchmarks.gas` (about a minute: 10,000 payments) prints the table and
rewrites `benchmarks/results/gas.json` and `gas.png`; `--readme` also rewrites this section,
`--update-snapshot` the guard's snapshot. `tests/test_gas_snapshot.py` (part of `pytest`) measures every
operation again and fails if any costs more than `benchmarks/results/gas-snapshot.json`, or exceeds its
target; a change that lowers gas must update the snapshot in the same commit."""


def write_readme(data: dict[str, Any], path: Path = README_PATH) -> None:
    """Replaces only the text between the gas markers of docs/gas.md."""
    text = path.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    path.write_text(text[:start] + "\n" + readme_block(data) + "\n" + text[end:])


CHART_OPERATIONS = (
    "eth.open",
    "eth.deposit",
    "eth.top_up",
    "eth.cooperative_close",
    "eth.close",
    "eth.challenge",
    "eth.settle",
)


def chart(data: dict[str, Any], path: Path = CHART_PATH) -> Path:
    """Grouped bars (paychan, Raiden, Nitro, floor) per ETH operation; deploy on its own axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {e["key"]: e for e in data["operations"]}
    series = (
        ("paychan", lambda e: e["gas"], "#1f77b4"),
        ("Raiden (v0.50)", lambda e: e.get("raiden", {}).get("gas", 0), "#d62728"),
        ("Nitro (2023)", lambda e: e.get("nitro", {}).get("gas", 0), "#2ca02c"),
        ("EVM floor", lambda e: e["floor"]["total"], "#7f7f7f"),
    )
    fig, (ax, ax_deploy) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [5, 1]})
    width = 0.2
    labels = [by_key[k]["operation"].replace(" (ETH)", "").replace("with a newer state", "") for k in CHART_OPERATIONS]
    for i, (name, value, color) in enumerate(series):
        xs = [j + (i - 1.5) * width for j in range(len(CHART_OPERATIONS))]
        ys = [value(by_key[k]) for k in CHART_OPERATIONS]
        ax.bar(xs, ys, width, label=name, color=color)
        if name == "paychan":
            for x, y, k in zip(xs, ys, CHART_OPERATIONS, strict=True):
                ax.annotate(f"{by_key[k]['ratio_to_floor']:.2f}x", (x, y), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(CHART_OPERATIONS)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("gas")
    ax.set_title("Gas per operation (ETH channel; label: paychan / floor)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.legend(fontsize=8)
    deploy = by_key["deploy"]
    values = [s[1](deploy) for s in series]
    ax_deploy.bar(range(4), values, color=[s[2] for s in series])
    ax_deploy.axhline(TARGETS["deploy"], color="black", linestyle="--", linewidth=0.8)
    ax_deploy.set_xticks(range(4))
    ax_deploy.set_xticklabels(["paychan", "Raiden", "Nitro", "floor"], rotation=30, fontsize=8)
    ax_deploy.set_title(f"deploy (dashed: {TARGETS['deploy'] / 1e6:.1f}M target)", fontsize=9)
    ax_deploy.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:.1f}M"))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=10_000, help="off-chain payments in the long channel")
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    parser.add_argument("--update-snapshot", action="store_true", help="also rewrite results/gas-snapshot.json")
    parser.add_argument("--readme", action="store_true", help="also rewrite the gas section of docs/gas.md")
    parser.add_argument("--readme-only", action="store_true", help="rewrite the docs/gas.md section from gas.json")
    args = parser.parse_args(argv)

    if args.readme_only:
        write_readme(json.loads(RESULTS_PATH.read_text()))
        print(f"wrote the gas section of {README_PATH} from {RESULTS_PATH}")
        return 0
    bench = measure_operations()
    runs = [measure_payments(bench, 1), measure_payments(bench, args.payments)]
    data = results(bench, runs)
    print(table(data))
    print()
    print(payments_table(data))
    same = runs[0]["cooperative_close"]["execution_gas"] == runs[1]["cooperative_close"]["execution_gas"]
    same = same and runs[0]["open"]["execution_gas"] == runs[1]["open"]["execution_gas"]
    print(
        f"\non-chain execution gas identical for {runs[0]['payments']:,} and {runs[1]['payments']:,} payments: {same}"
    )
    print(f"runtime code: {data['code_size']['runtime_bytes']:,} bytes")
    if not args.no_write:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps(data, indent=1) + "\n")
        chart(data)
        print(f"wrote {RESULTS_PATH} and {CHART_PATH}")
        if args.update_snapshot:
            SNAPSHOT_PATH.write_text(json.dumps(snapshot_of(bench), indent=1) + "\n")
            print(f"wrote {SNAPSHOT_PATH}")
        if args.readme:
            write_readme(data)
            print(f"wrote the gas section of {README_PATH}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
