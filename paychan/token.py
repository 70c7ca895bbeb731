"""ERC-20 tokens as a channel's asset: decimals and symbol for amounts, balances, and the approval a deposit needs.

The contract pulls a token deposit with ``transferFrom``, so the depositor first approves the contract for
at least the amount (``ensure_allowance`` sends ``approve`` only when the allowance is short).
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from paychan.chain import Chain
from paychan.exceptions import PaychanError
from paychan.wallets import WalletAccount

ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": "", "type": out}],
    }
    for name, mutability, inputs, out in (
        ("decimals", "view", (), "uint8"),
        ("symbol", "view", (), "string"),
        ("balanceOf", "view", (("account", "address"),), "uint256"),
        ("allowance", "view", (("owner", "address"), ("spender", "address")), "uint256"),
        ("approve", "nonpayable", (("spender", "address"), ("amount", "uint256")), "bool"),
    )
]


class NotAToken(PaychanError):
    """Raised when an address given as a token has no code or does not answer as an ERC-20."""


class Token:
    """An ERC-20 token on ``chain``."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.contract: Contract = chain.w3.eth.contract(address=self.address, abi=ERC20_ABI)

    def _read(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.contract.functions, name)(*args).call()
        except Exception as exc:  # no code, a revert, or an answer that is not ABI-encoded
            raise NotAToken(
                f"{self.address} does not answer {name}() as an ERC-20 token ({type(exc).__name__})"
            ) from None

    def decimals(self) -> int:
        return int(self._read("decimals"))

    def symbol(self) -> str:
        try:
            return str(self._read("symbol"))
        except NotAToken:  # optional in ERC-20
            return self.address[:10]

    def balance_of(self, account: str) -> int:
        return int(self._read("balanceOf", to_checksum_address(account)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._read("allowance", to_checksum_address(owner), to_checksum_address(spender)))

    def approve(self, sender: LocalAccount | WalletAccount, spender: str, amount: int) -> TxReceipt:
        """Approves ``spender`` for ``amount`` of the token held by ``sender`` (a contract wallet approves
        through its owner's ``execute``)."""
        data = self.contract.encode_abi("approve", args=[to_checksum_address(spender), amount])
        if isinstance(sender, WalletAccount):
            call = sender.execute_data(self.address, 0, bytes(HexBytes(data)))
            tx = {"to": sender.address, "data": call, "value": 0, "gas": 150_000}
            receipt = self.chain.send(sender.owner, tx)
        else:
            receipt = self.chain.send(sender, {"to": self.address, "data": data, "value": 0, "gas": 100_000})
        if receipt["status"] != 1:
            raise PaychanError(f"approving {spender} for {amount} of token {self.address} failed")
        return receipt


def ensure_allowance(token: Token, owner: LocalAccount | WalletAccount, spender: str, amount: int) -> TxReceipt | None:
    """Approves ``spender`` for ``amount`` of ``token`` unless it may already take that much; the receipt, if
    a transaction was needed."""
    if token.allowance(owner.address, spender) >= amount:
        return None
    balance = token.balance_of(owner.address)
    if balance < amount:
        raise PaychanError(f"insufficient token balance: {balance} available, {amount} asked ({token.address})")
    return token.approve(owner, spender, amount)
