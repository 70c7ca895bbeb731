"""Connecting to a chain: the embedded eth-tester chain or any JSON-RPC node (anvil, a testnet, ...).

``Chain`` hides what differs between them: funded accounts with keys, sending signed transactions,
time travel and snapshots (``time_travel`` on eth-tester, ``evm_increaseTime`` + ``evm_mine`` on anvil).
Every transaction is signed locally and sent raw, so the same code runs against any node.

Time on both: each block is stamped one second after its parent (eth-tester while it runs ahead of the
wall clock; an anvil started with ``block_interval=1``), and after ``time_travel(seconds)`` the next
transaction executes at ``now() + seconds`` as seen before the call.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from paychan.exceptions import ChainUnavailable, InvalidPrivateKey

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
# Comma-separated private keys to send from on a JSON-RPC chain (a testnet, say), instead of the dev accounts.
PRIVATE_KEYS_ENV = "PAYCHAN_PRIVATE_KEYS"
EMBEDDED_CHAIN_ID = 131277322940537
DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei tip to the block producer
# The default of every ``--rpc-url``: ours first, then Foundry's (and Ape's foundry plugin's) convention.
RPC_URL_ENVS = ("PAYCHAN_RPC_URL", "ETH_RPC_URL")
# ``--rpc-url embedded``: the in-process chain, even when one of ``RPC_URL_ENVS`` is set.
EMBEDDED = "embedded"


@dataclass
class Chain:
    """A connection to one chain, with the funded accounts whose keys we hold."""

    w3: Web3
    kind: str
    accounts: list[LocalAccount]
    tester: Any = None
    url: str | None = None
    block_interval: int | None = None  # seconds between blocks when the node stamps them exactly (anvil)
    _nonces: dict[str, int] = field(default_factory=dict)
    _chain_id: int | None = None
    # Transactions may be sent from several threads (a node's watcher and its control API): the nonce is
    # taken and the transaction handed to the node under this lock, so no two get the same nonce.
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A raw JSON-RPC call (dev methods such as ``evm_mine``); raises ``ChainUnavailable`` on an error reply."""
        reply = self.w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
        if "error" in reply:
            raise ChainUnavailable(f"{method} failed on {self.url}: {reply['error']}")
        return reply.get("result")

    def now(self) -> int:
        """The latest block's timestamp."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def time_travel(self, seconds: int) -> int:
        """Moves chain time forward so the next transaction executes ``seconds`` after the latest block.

        Mines a block on the way (none when ``seconds`` is 1) and returns the latest block's timestamp.
        """
        if self.tester is not None:
            target = self.now() + seconds
            # eth-tester stamps the next block by the wall clock when that is later: nothing to do then
            if target > int(self.w3.eth.get_block("pending")["timestamp"]):
                self.tester.time_travel(target)
        elif self.block_interval is not None:
            # anvil ignores evm_increaseTime while stamping blocks at a fixed interval: mine at the time
            # wanted, one interval before the next transaction's block (what eth-tester does)
            if seconds > self.block_interval:
                self.rpc("evm_mine", [self.now() + seconds - self.block_interval])
        else:
            self.rpc("evm_increaseTime", [seconds])
            self.rpc("evm_mine", [])
        return self.now()

    def mine(self) -> None:
        if self.tester is not None:
            self.tester.mine_blocks(1)
        else:
            self.rpc("evm_mine", [])

    def snapshot(self) -> Any:
        self._nonces.clear()
        if self.tester is not None:
            return self.tester.take_snapshot()
        return self.rpc("evm_snapshot", [])

    def revert(self, snapshot_id: Any) -> None:
        """Returns to ``snapshot_id`` (on anvil a snapshot is used up by reverting to it)."""
        self._nonces.clear()
        if self.tester is not None:
            self.tester.revert_to_snapshot(snapshot_id)
        elif not self.rpc("evm_revert", [snapshot_id]):
            raise ChainUnavailable(f"evm_revert to snapshot {snapshot_id} failed on {self.url}")

    def fee_fields(self) -> dict[str, int]:
        """EIP-1559 fee fields: a fixed priority tip and room for the base fee to double."""
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        return {"maxPriorityFeePerGas": DEFAULT_PRIORITY_FEE, "maxFeePerGas": 2 * base_fee + DEFAULT_PRIORITY_FEE}

    def next_nonce(self, address: str) -> int:
        nonce = max(self._nonces.get(address, 0), self.w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]
        self._nonces[address] = nonce + 1
        return nonce

    def send(self, account: LocalAccount, tx: dict[str, Any]) -> TxReceipt:
        """Signs ``tx`` with ``account``, sends it and waits for its receipt."""
        tx = {**tx, "from": account.address, "chainId": self.chain_id, "type": 2, **self.fee_fields()}
        with self._send_lock:
            tx["nonce"] = self.next_nonce(account.address)
            raw = account.sign_transaction(tx).raw_transaction
            try:
                tx_hash = self.w3.eth.send_raw_transaction(raw)
            except Exception:
                self._nonces.pop(account.address, None)
                raise
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)

    def transfer(self, account: LocalAccount, to: str, value: int) -> TxReceipt:
        return self.send(account, {"to": to, "value": value, "gas": 21_000})

    def balance(self, address: str, block: int | str = "latest") -> int:
        return int(self.w3.eth.get_balance(address, block_identifier=block))  # type: ignore[arg-type]

    def account(self, address: str) -> LocalAccount:
        for acct in self.accounts:
            if acct.address.lower() == address.lower():
                return acct
        raise KeyError(f"no key for {address}")


def embedded_chain(accounts: int = 10) -> Chain:
    """A fresh in-process eth-tester (py-evm) chain with ``accounts`` funded accounts."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 30_000_000}))
    keys = list(backend.account_keys)
    if accounts > len(keys):
        raise ValueError(f"the embedded chain has {len(keys)} funded accounts, not {accounts}")
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    local = [Account.from_key(k.to_bytes()) for k in keys[:accounts]]
    return Chain(w3=w3, kind="embedded", accounts=local, tester=tester)


def rpc_chain(
    url: str, private_keys: list[str] | None = None, timeout: float = 30.0, block_interval: int | None = None
) -> Chain:
    """A chain behind the JSON-RPC ``url``, sending from ``private_keys``; without them, from the
    comma-separated keys in ``PAYCHAN_PRIVATE_KEYS``, else from anvil's and hardhat's dev accounts.

    ``block_interval``: the node stamps each block exactly that many seconds after its parent (an anvil
    devnet started so, see ``paychan.devnet``); time travel then mines at the exact time wanted.
    """
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    try:
        _ = w3.eth.chain_id  # the cheapest call every node answers
    except Exception as exc:  # requests' ConnectionError, timeouts, bad JSON
        raise ChainUnavailable(f"no Ethereum JSON-RPC node answers at {url} ({type(exc).__name__})") from exc
    private_keys = private_keys or [k.strip() for k in os.environ.get(PRIVATE_KEYS_ENV, "").split(",") if k.strip()]
    if private_keys:
        try:
            accounts = [Account.from_key(HexBytes(k)) for k in private_keys]
        except (ValueError, TypeError) as exc:
            raise InvalidPrivateKey(f"a private key to send from ({PRIVATE_KEYS_ENV}) is not 32 bytes of hex") from exc
    else:
        Account.enable_unaudited_hdwallet_features()
        accounts = [Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)]
    return Chain(w3=w3, kind="rpc", accounts=accounts, url=url, block_interval=block_interval)


def default_rpc_url() -> str | None:
    """The default of ``--rpc-url``: ``$PAYCHAN_RPC_URL``, else ``$ETH_RPC_URL`` (Foundry's), else None (the
    embedded chain, for the commands that can run on it)."""
    return os.environ.get("PAYCHAN_RPC_URL") or os.environ.get("ETH_RPC_URL") or None


def connect(rpc_url: str | None = None, private_keys: list[str] | None = None) -> Chain:
    """The embedded chain when ``rpc_url`` is None or ``"embedded"``, else the node at ``rpc_url``.

    The environment is not read here: a command resolves its ``--rpc-url`` default with ``default_rpc_url``.
    """
    return embedded_chain() if rpc_url is None or rpc_url == EMBEDDED else rpc_chain(rpc_url, private_keys)


def genesis_hash(chain: Chain) -> str:
    """The hash of block 0 (``0x`` + 64 hex digits): with the chain id, what tells two chains apart (two
    local devnets both have chain id 31337, never the same genesis unless started alike in the same second)."""
    return "0x" + bytes(chain.w3.eth.get_block(0)["hash"]).hex()
