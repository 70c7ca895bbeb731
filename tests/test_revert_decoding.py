"""Revert data is found wherever a node puts it in the JSON-RPC error: anvil's ``error.data`` (a hex
string), Hardhat's ``error.data.data`` (next to a ``message``), as web3 raises either. Hardhat is not
installed, so its errors are built here in the shapes web3 7 gives them."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3.exceptions import ContractLogicError, Web3RPCError

from paychan.compile import load_artifact
from paychan.contract import ErrorDecoder, _revert_data
from paychan.exceptions import StaleState, TransactionFailed

STALE = function_signature_to_4byte_selector("StaleState(uint48,uint48)") + encode(["uint48", "uint48"], [5, 7])
STALE_HEX = "0x" + STALE.hex()
HARDHAT_MESSAGE = "VM Exception while processing transaction: reverted with custom error 'StaleState(5, 7)'"


@pytest.fixture(scope="module")
def decoder() -> ErrorDecoder:
    return ErrorDecoder(load_artifact().abi)


def hardhat_error(data: dict[str, Any]) -> dict[str, Any]:
    """A Hardhat JSON-RPC error object whose ``data`` is ``data``."""
    return {"code": -32603, "message": f"Error: {HARDHAT_MESSAGE}", "data": data}


def raised_from(cause: BaseException) -> TransactionFailed:
    """An exception whose revert data is only in its cause (as our own code wraps web3's)."""
    try:
        raise TransactionFailed("wrapped") from cause
    except TransactionFailed as exc:
        return exc


SHAPES: dict[str, BaseException] = {
    # web3's ContractLogicError for Hardhat: data is the nested {"message", "data"} object
    "contract logic error, message and data": ContractLogicError(
        f"execution reverted: {HARDHAT_MESSAGE}", data={"message": HARDHAT_MESSAGE, "data": STALE_HEX}
    ),
    # the same, one level deeper still (a whole error object as data)
    "contract logic error, nested error object": ContractLogicError(
        "execution reverted", data=hardhat_error({"message": HARDHAT_MESSAGE, "data": STALE_HEX})
    ),
    # a provider that raises the raw error object: ValueError({"code", "message", "data": {...}})
    "value error, data.data": ValueError(hardhat_error({"data": STALE_HEX})),
    "value error, data.message and data.data": ValueError(
        hardhat_error({"message": HARDHAT_MESSAGE, "data": STALE_HEX})
    ),
    # web3 7's RPC error keeps the whole reply in rpc_response
    "web3 rpc error, rpc_response.error.data.data": Web3RPCError(
        HARDHAT_MESSAGE,
        rpc_response={"jsonrpc": "2.0", "id": 1, "error": hardhat_error({"message": "reverted", "data": STALE_HEX})},  # type: ignore[typeddict-item]
    ),
    "cause chain, value error data.data": raised_from(ValueError(hardhat_error({"data": STALE_HEX}))),
    # anvil and geth (unchanged): a hex string in data
    "anvil, contract logic error with hex data": ContractLogicError("execution reverted", data=STALE_HEX),
    "anvil, value error with hex data": ValueError({"code": 3, "message": "execution reverted", "data": STALE_HEX}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_revert_data_is_found_at_every_depth_nodes_put_it(shape: str) -> None:
    assert _revert_data(SHAPES[shape]) == STALE


@pytest.mark.parametrize("shape", SHAPES)
def test_a_hardhat_revert_is_raised_as_the_contract_error_with_its_arguments(decoder: ErrorDecoder, shape: str) -> None:
    with pytest.raises(StaleState) as raised:
        decoder.reraise(SHAPES[shape])
    assert (raised.value.submittedNonce, raised.value.recordedNonce) == (5, 7)


def test_an_unknown_selector_at_depth_is_a_transaction_failure(decoder: ErrorDecoder) -> None:
    unknown = ValueError(hardhat_error({"message": "reverted", "data": "0xdeadbeef" + "00" * 32}))
    with pytest.raises(TransactionFailed):
        decoder.reraise(unknown)


def test_an_error_without_revert_data_at_any_depth_has_none() -> None:
    assert _revert_data(ValueError(hardhat_error({"message": "reverted"}))) is None
    assert _revert_data(ValueError({"code": -32000, "message": "nonce too low"})) is None
    assert _revert_data(ContractLogicError("execution reverted", data={"message": "x", "data": "0x"})) is None


def test_nesting_deeper_than_any_node_goes_is_not_followed_forever() -> None:
    nested: dict[str, Any] = {"data": STALE_HEX}
    for _ in range(50):
        nested = {"data": nested}
    assert _revert_data(ValueError(nested)) is None
    cyclic: dict[str, Any] = {"message": "loop"}
    cyclic["data"] = cyclic
    assert _revert_data(ValueError(cyclic)) is None
