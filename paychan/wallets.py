"""A participant that is a contract wallet: ``PaychanContract``'s calls sent through the wallet.

A contract participant (an ERC-1271 smart account, such as ``contracts/test/OwnedWallet1271.sol`` or an
ERC-4337 ``SimpleAccount``) cannot sign a transaction; its owner key makes it call. A :class:`WalletAccount`
names the wallet and that owner: pass it to any ``PaychanContract`` method as ``sender`` and the call is
sent by the owner as ``wallet.execute(contract, value, calldata)``, so the channel contract sees the wallet
as ``msg.sender``, and ETH the call carries (``open_channel``, ``deposit``) comes from the wallet's own
balance. A wallet of this interface bubbles the inner call's revert data, so a rejected call still raises
the contract's named exception (``paychan.exceptions``) with its values.

States are signed for the wallet by its owner key: :meth:`WalletAccount.signer` is the
``Erc1271Signer`` a ``Channel`` takes; the contract checks such signatures with the wallet's
``isValidSignature``. :func:`accepts_signature` asks a wallet the same question off chain (an ``eth_call``
with the gas the contract gives it), and :func:`check_wallet_owner` whether a key drives a wallet, as
``paychan node --wallet`` does before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, Web3RPCError

from paychan.exceptions import PaychanError, TransactionFailed
from paychan.signers import Erc1271Signer, LocalKeySigner
from paychan.signing import sign_digest
from paychan.state import Signature

EXECUTE_SIGNATURE = "execute(address,uint256,bytes)"
EXECUTE_SELECTOR = keccak(text=EXECUTE_SIGNATURE)[:4]
# The one function of the wallet the SDK calls (OwnedWallet1271, ERC-4337 SimpleAccount and many others).
EXECUTE_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "execute",
        "stateMutability": "nonpayable",
        "inputs": [
            {"name": "target", "type": "address"},
            {"name": "value", "type": "uint256"},
            {"name": "data", "type": "bytes"},
        ],
        "outputs": [],
    }
]
# ``NotOwner(address caller)``: how OwnedWallet1271 (and wallets like it) refuse a caller other than the owner.
NOT_OWNER_SELECTOR = keccak(text="NotOwner(address)")[:4]
IS_VALID_SIGNATURE_SELECTOR = keccak(text="isValidSignature(bytes32,bytes)")[:4]
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
# The gas the contract gives a wallet's isValidSignature (PaymentChannels._ERC1271_GAS): an off-chain check
# gets no more, so it accepts only what the contract would and a gas-burning wallet costs a bounded call.
ERC1271_GAS = 100_000


class NotAWallet(PaychanError):
    """Raised when ``address`` has no code: it is a key, not a contract wallet."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"{address} has no code on this chain: it is not a contract wallet")


class WalletRefusesSigner(PaychanError):
    """Raised when the wallet at ``wallet`` does not accept ``signer``'s signatures (ERC-1271
    ``isValidSignature`` within ``ERC1271_GAS``): states that key signs would not count as the wallet's."""

    def __init__(self, wallet: str, signer: str) -> None:
        self.wallet, self.signer = wallet, signer
        super().__init__(f"WalletRefusesSigner(wallet={wallet}, signer={signer})")


class NotWalletOwner(TransactionFailed):
    """Raised when the wallet at ``wallet`` refuses to ``execute`` for ``caller`` (``NotOwner(caller)``):
    the key driving it is not its owner. Nothing was sent on to the channel contract."""

    def __init__(self, wallet: str, caller: str) -> None:
        self.wallet, self.caller = wallet, caller
        super().__init__(f"NotWalletOwner(wallet={wallet}, caller={caller})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotWalletOwner) and (self.wallet, self.caller) == (other.wallet, other.caller)

    def __hash__(self) -> int:
        return hash((self.wallet, self.caller))


@dataclass(frozen=True)
class WalletAccount:
    """The contract wallet at ``address``, driven by its ``owner`` key through ``execute(target, value,
    data)``. ``PaychanContract`` methods take it wherever they take a ``LocalAccount`` sender."""

    address: str
    owner: LocalAccount

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", to_checksum_address(self.address))

    def execute_data(self, target: str, value: int, data: bytes) -> bytes:
        """The calldata of ``execute(target, value, data)``."""
        return EXECUTE_SELECTOR + encode(["address", "uint256", "bytes"], [to_checksum_address(target), value, data])

    def execute_call(self, w3: Web3, target: str, value: int, data: bytes) -> ContractFunction:
        """The wallet's ``execute(target, value, data)`` as a web3 contract function (sent by the owner)."""
        wallet: Contract = w3.eth.contract(address=to_checksum_address(self.address), abi=EXECUTE_ABI)
        call: ContractFunction = wallet.functions.execute(to_checksum_address(target), value, bytes(data))
        return call

    def own_error(self, data: bytes) -> NotWalletOwner | None:
        """The wallet's own refusal in revert ``data`` (``NotOwner(caller)``), or None."""
        if len(data) != 36 or data[:4] != NOT_OWNER_SELECTOR or any(data[4:16]):
            return None
        return NotWalletOwner(self.address, to_checksum_address(data[16:36]))

    def signer(self) -> Erc1271Signer:
        """Signs channel states for the wallet with the owner key (what ``isValidSignature`` accepts)."""
        return Erc1271Signer(self.address, LocalKeySigner(self.owner.key))

    @property
    def signing_address(self) -> str:
        """The key whose signatures count as the wallet's: a peer's ``Channel(peer_signing_address=...)``."""
        return to_checksum_address(self.owner.address)


def erc1271_calldata(digest: bytes, signature: Signature) -> bytes:
    """``isValidSignature(digest, r || s || v)``: the 65-byte form the contract passes (solady)."""
    packed = signature.r + signature.s.to_bytes(32, "big") + bytes([signature.v])
    return IS_VALID_SIGNATURE_SELECTOR + encode(["bytes32", "bytes"], [digest, packed])


def accepts_signature(w3: Web3, wallet: str, digest: bytes, signature: Signature, gas: int = ERC1271_GAS) -> bool:
    """Whether the contract at ``wallet`` accepts ``signature`` for ``digest`` by ERC-1271, as the channel
    contract asks it: one ``eth_call`` with at most ``gas``, true only for the exact magic word. A revert, an
    error reply (out of gas), no code or any other answer is false; an RPC that cannot be reached raises."""
    call = {"to": to_checksum_address(wallet), "data": erc1271_calldata(digest, signature), "gas": gas}
    try:
        answer = bytes(w3.eth.call(call))  # type: ignore[arg-type]
    except Exception as error:
        if _call_failed(error):
            return False
        raise
    return answer[:32] == ERC1271_MAGIC + bytes(28)


def _call_failed(error: Exception) -> bool:
    """Whether ``error`` says an ``eth_call`` reverted or ran out of gas (an RPC's error reply, or the
    embedded chain's eth-tester ``TransactionFailed``, not imported here: it takes a second), as opposed to
    an RPC that cannot be reached."""
    kind = type(error)
    tester = kind.__module__.startswith("eth_tester") and kind.__name__ == "TransactionFailed"
    return tester or isinstance(error, (ContractLogicError, Web3RPCError))


def check_wallet_owner(w3: Web3, wallet: WalletAccount) -> None:
    """Checks, with two ``eth_call``s and no transaction, that ``wallet.owner`` drives the wallet: its
    signatures count as the wallet's (``isValidSignature``), and the wallet makes calls for it (``execute``
    of an empty call to the owner). ``NotAWallet``, ``WalletRefusesSigner`` or ``NotWalletOwner`` if not."""
    address, owner = wallet.address, wallet.owner.address
    if not w3.eth.get_code(address):  # type: ignore[arg-type]
        raise NotAWallet(address)
    probe = keccak(b"\x19paychan wallet owner\x00" + bytes.fromhex(address[2:]) + bytes.fromhex(owner[2:]))
    if not accepts_signature(w3, address, probe, sign_digest(probe, bytes(wallet.owner.key))):
        raise WalletRefusesSigner(address, owner)
    call = {"from": owner, "to": address, "data": wallet.execute_data(owner, 0, b""), "gas": 200_000}
    try:
        w3.eth.call(call)  # type: ignore[arg-type]
    except Exception as error:
        if _call_failed(error):
            raise NotWalletOwner(address, owner) from None
        raise


def via_wallet(wallet: str, owner: LocalAccount) -> WalletAccount:
    """``WalletAccount(wallet, owner)``: ``contract.open_channel(via_wallet(wallet, owner), bob, amount)``."""
    return WalletAccount(wallet, owner)


Sender = LocalAccount | WalletAccount
"""Who sends a ``PaychanContract`` call: a local key, or a contract wallet driven by its owner's key."""
