"""Every custom error of the contract has a Python exception of the same name and fields, and decodes into it."""

from __future__ import annotations

import keyword

import pytest
from eth_abi import encode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address

from paychan import exceptions
from paychan.compile import load_artifact
from paychan.contract import ErrorDecoder
from paychan.exceptions import ContractCustomError, StateRejected, contract_error_classes

ABI = load_artifact().abi
ABI_ERRORS = sorted((item for item in ABI if item["type"] == "error"), key=lambda item: item["name"])

# A distinctive sample value per ABI type, so a swapped field would show.
SAMPLES = {
    "address": lambda i: to_checksum_address(f"0x{i + 1:040x}"),
    "bytes32": lambda i: bytes([i + 1]) * 32,
    "bytes20": lambda i: bytes([i + 1]) * 20,
    "uint256": lambda i: 2**200 + i,
    "uint48": lambda i: 2**47 + i,
    "uint16": lambda i: 2**15 + i,
}


def _python_name(abi_name: str) -> str:
    return abi_name + "_" if keyword.iskeyword(abi_name) else abi_name


def _sample_values(error: dict) -> list:
    return [SAMPLES[field["type"]](i) for i, field in enumerate(error["inputs"])]


def test_the_abi_declares_the_errors_the_contract_documents():
    names = {error["name"] for error in ABI_ERRORS}
    assert {
        "InvalidCounterparty",
        "InvalidChallengePeriod",
        "ValueMismatch",
        "ZeroDeposit",
        "DepositTooLarge",
        "TokenTransferFailed",
        "NotParticipant",
        "ChannelNotOpen",
        "ChannelNotClosing",
        "MalleableSignature",
        "InvalidSignature",
        "BalancesNotConserved",
        "UnknownDeposit",
        "FinalStateHasLocks",
        "WithdrawalCountMismatch",
        "LocksMismatch",
        "ChannelPenalized",
        "NotRevoked",
        "StaleWithdrawal",
        "WithdrawalExpired",
        "WithdrawalTooLarge",
        "WithdrawalLimitReached",
        "StateNotFinal",
        "StaleState",
        "RecordMismatch",
        "ChallengePeriodOver",
        "ChallengePeriodActive",
        "NothingToClaim",
        "PayoutFailed",
        "Reentrancy",
    } <= names


@pytest.mark.parametrize("error", ABI_ERRORS, ids=lambda e: e["name"])
def test_each_abi_error_has_a_python_exception_with_the_same_name_and_fields(error):
    cls = getattr(exceptions, error["name"], None)
    assert cls is not None, f"paychan.exceptions has no {error['name']}"
    assert issubclass(cls, ContractCustomError)
    assert cls.fields == tuple(_python_name(field["name"]) for field in error["inputs"])


@pytest.mark.parametrize("error", ABI_ERRORS, ids=lambda e: e["name"])
def test_each_abi_error_decodes_into_its_exception_with_its_values(error):
    types = [field["type"] for field in error["inputs"]]
    values = _sample_values(error)
    data = function_abi_to_4byte_selector(error) + encode(types, values)
    decoded = ErrorDecoder(ABI).decode(data)
    cls = getattr(exceptions, error["name"])
    assert type(decoded) is cls
    assert decoded == cls(*values)
    for field, value in zip(cls.fields, values, strict=True):
        assert getattr(decoded, field) == value
    assert list(decoded.values.values()) == values


@pytest.mark.parametrize("error", ABI_ERRORS, ids=lambda e: e["name"])
def test_each_exception_names_its_error_and_values_in_its_message(error):
    cls = getattr(exceptions, error["name"])
    raised = cls(*_sample_values(error))
    assert str(raised).startswith(error["name"] + "(")
    for field in cls.fields:
        assert f"{field}=" in str(raised)


def test_every_python_contract_error_class_has_an_abi_error():
    abi_names = {error["name"] for error in ABI_ERRORS}
    assert set(contract_error_classes()) <= abi_names


def test_unknown_revert_data_decodes_to_nothing():
    decoder = ErrorDecoder(ABI)
    assert decoder.decode(b"\xde\xad\xbe\xef" + bytes(32)) is None
    assert decoder.decode(b"") is None


def test_exceptions_compare_by_class_and_values():
    assert exceptions.StaleState(3, 5) == exceptions.StaleState(submittedNonce=3, recordedNonce=5)
    assert exceptions.StaleState(3, 5) != exceptions.StaleState(3, 6)
    assert exceptions.ChallengePeriodOver(1, 2) != exceptions.ChallengePeriodActive(1, 2)
    assert hash(exceptions.StaleState(3, 5)) == hash(exceptions.StaleState(3, 5))


def test_an_exception_missing_a_field_cannot_be_built():
    with pytest.raises(TypeError):
        exceptions.StaleState(3)


def test_errors_the_channel_also_checks_off_chain_are_state_rejections():
    for name in (
        "InvalidSignature",
        "MalleableSignature",
        "BalancesNotConserved",
        "UnknownDeposit",
        "FinalStateHasLocks",
        "WithdrawalCountMismatch",
        "LocksMismatch",
        "StaleWithdrawal",
        "WithdrawalExpired",
        "WithdrawalTooLarge",
    ):
        cls = getattr(exceptions, name)
        assert issubclass(cls, StateRejected) and issubclass(cls, ContractCustomError)


def test_out_of_gas_is_a_transaction_failure_naming_the_gas_limit_and_the_gas_used():
    raised = exceptions.OutOfGas(30_000, 30_000)
    assert isinstance(raised, exceptions.TransactionFailed) and not isinstance(raised, ContractCustomError)
    assert (raised.gas_limit, raised.gas_used) == (30_000, 30_000)
    assert str(raised) == "OutOfGas(gas_limit=30000, gas_used=30000)"
    assert raised == exceptions.OutOfGas(30_000, 30_000) != exceptions.OutOfGas(30_000, 29_999)
