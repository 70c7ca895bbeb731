"""Who signs a participant's typed messages: a ``Signer`` gives an address and signs the project's EIP-712
messages (``State``, ``Revocation``, ``Withdrawal``) for a domain, wherever its key lives.

- ``LocalKeySigner``: a raw private key in this process (the fastest: the digest is computed word by word
  and signed with libsecp256k1, as ``paychan.signing.sign_digest`` does).
- ``KeystoreSigner``: an encrypted JSON keystore (Web3 Secret Storage, as geth, Foundry's ``cast wallet`` and
  Ape's keyfile accounts write) and its password, decrypted with ``eth_account.Account.decrypt``.
- ``JsonRpcSigner``: a wallet or remote signer behind a JSON-RPC endpoint (``eth_signTypedData_v4``). It is
  sent the wallet-safe typed data (``typed_data(..., wallet_safe=True)``: integers as decimal strings, bytes
  as hex), so a JavaScript wallet signs balances above 2**53 wei exactly.
- ``ApeSigner``: any Ape ``AccountAPI`` (test accounts, keyfile accounts, the Ledger and Trezor plugins):
  ``account.sign_message`` of the EIP-712 ``SignableMessage`` (version ``0x01``: header the domain
  separator, body the struct hash): Ape's keyfile and test accounts sign it as eth-account does, and
  ape-ledger sends its header and body to the device as EIP-712 (an ``eip712.EIP712Message`` is turned into
  exactly this message first). Ape is never imported here.
- ``Erc1271Signer``: a contract participant (an ERC-1271 wallet) whose owner key signs: ``address`` is the
  wallet, the signature is the owner's signature of the same digest (what a minimal owner-signed wallet's
  ``isValidSignature(digest, signature)`` checks). The contract asks the wallet's ``isValidSignature``
  when a participant's signature does not recover to it; ``paychan.wallets.WalletAccount`` sends the
  wallet's own transactions through its ``execute``.

Every signature, whatever produced it, is normalised to the canonical form the contract client uses (a
compact EIP-2098 ``Signature`` with low s: a high-s signature is flipped to its low-s twin, which recovers
to the same key) and recovered before ``sign_typed`` returns it: one that recovers to anyone but the
expected key raises ``WrongSigner``; a reply that is no signature at all raises ``MalformedSignerReply``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Union

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.address import is_address, to_checksum_address

from paychan.exceptions import PaychanError
from paychan.fees import FeeUpdate
from paychan.signing import (
    HALF_N,
    SECP256K1_N,
    Domain,
    TypedStruct,
    message_digest,
    recover_digest_signer,
    sign_digest,
    typed_data,
)
from paychan.state import ChannelState, Revocation, Signature, Withdrawal

TypedMessage = Union[ChannelState, Revocation, Withdrawal, FeeUpdate, TypedStruct]  # noqa: UP007 - a runtime alias
_HEX_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{128}([0-9a-fA-F]{2})?")


class SignerError(PaychanError):
    """Base of the errors a signer raises."""


class WrongSigner(SignerError):
    """Raised when a signer returns a signature that recovers to ``recovered`` instead of ``expected`` (the
    signer's address, or for an ERC-1271 wallet its owner) for the message of ``digest``."""

    def __init__(self, expected: str, recovered: str, digest: bytes) -> None:
        self.expected, self.recovered, self.digest = expected, recovered, digest
        super().__init__(f"WrongSigner(expected={expected}, recovered={recovered}, digest=0x{digest.hex()})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WrongSigner) and (self.expected, self.recovered, self.digest) == (
            other.expected,
            other.recovered,
            other.digest,
        )

    def __hash__(self) -> int:
        return hash((self.expected, self.recovered, self.digest))


class MalformedSignerReply(SignerError):
    """Raised when a signer's reply is not a signature (65 bytes ``r || s || v`` with v in 0, 1, 27, 28, or
    64 compact bytes); ``reply`` is what it returned."""

    def __init__(self, reply: object) -> None:
        self.reply = reply
        super().__init__(f"MalformedSignerReply(reply={reply!r})")


class SignerRefused(SignerError):
    """Raised when a signer declines to sign (a JSON-RPC error reply, e.g. the user rejected the request:
    ``code`` 4001, or an Ape account that returned no signature)."""

    def __init__(self, code: int | None, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"SignerRefused(code={code}, message={message!r})")


class SignerUnavailable(SignerError):
    """Raised when a remote signer cannot be reached (``url``) or its reply is not JSON-RPC."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"SignerUnavailable(url={url}, reason={reason}): the signer does not answer, nothing was signed"
        )


class AccountNotHeld(SignerError):
    """Raised when a remote signer at ``url`` answers but does not hold ``address`` (``accounts``: the
    accounts it says it holds)."""

    def __init__(self, url: str, address: str, accounts: list[str]) -> None:
        self.url, self.address, self.accounts = url, address, accounts
        held = ", ".join(accounts) if accounts else "none"
        super().__init__(f"the signer at {url} does not hold {address} (it holds {held})")


class WrongPassword(SignerError):
    """Raised when a keystore does not decrypt with the password given."""


class KeystoreMismatch(SignerError):
    """Raised when a keystore's ``address`` field is not the address of the key it decrypts to."""

    def __init__(self, stated: str, decrypted: str) -> None:
        self.stated, self.decrypted = stated, decrypted
        super().__init__(f"KeystoreMismatch(stated={stated}, decrypted={decrypted})")


def canonical_signature(raw: bytes | Signature) -> Signature:
    """A signature in the contract client's canonical form: compact (EIP-2098) with low s.

    ``raw``: a ``Signature``, 64 compact bytes or 65 bytes ``r || s || v`` (v 0, 1, 27 or 28). A high-s
    signature becomes its low-s twin (``s' = n - s``, the recovery bit flipped), which recovers to the same
    key. Anything else raises ``MalformedSignerReply``.
    """
    if isinstance(raw, Signature):
        if not (isinstance(raw.r, bytes) and isinstance(raw.vs, bytes) and len(raw.r) == len(raw.vs) == 32):
            raise MalformedSignerReply(raw)
        r, s, parity = int.from_bytes(raw.r, "big"), raw.s, raw.v - 27
    elif isinstance(raw, (bytes, bytearray)) and len(raw) == 65:
        v = raw[64]
        if v not in (0, 1, 27, 28):
            raise MalformedSignerReply(bytes(raw))
        r, s, parity = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), v % 27
    elif isinstance(raw, (bytes, bytearray)) and len(raw) == 64:
        compact = Signature.from_bytes(bytes(raw))
        r, s, parity = int.from_bytes(compact.r, "big"), compact.s, compact.v - 27
    else:
        raise MalformedSignerReply(raw)
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise MalformedSignerReply(bytes(raw) if not isinstance(raw, Signature) else raw)
    if s > HALF_N:
        s, parity = SECP256K1_N - s, parity ^ 1
    return Signature.from_vrs(parity, r, s)


class Signer(ABC):
    """Signs a participant's EIP-712 typed messages; ``address`` is the participant.

    ``sign_typed`` is the one entry point: it asks the implementation (``_sign``) for a signature,
    normalises it (``canonical_signature``) and checks that it recovers to ``signing_address``.
    """

    @property
    @abstractmethod
    def address(self) -> str:
        """The participant's address (checksummed)."""

    @property
    def signing_address(self) -> str:
        """The address a signature recovers to: ``address``, except for a contract wallet (its owner)."""
        return self.address

    @property
    def is_local(self) -> bool:
        """Whether it signs in this process at once (a key held here): else a node signs through it off its
        event loop (``paychan.node.remote_signer``)."""
        return False

    def check_available(self) -> None:
        """Raises a ``SignerError`` if the signer cannot sign for ``address`` now (nothing for a local key)."""
        return None

    @abstractmethod
    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> bytes | Signature:
        """The raw signature of ``message`` (whose EIP-712 digest in ``domain`` is ``digest``)."""

    def sign_typed(self, domain: Domain, message: TypedMessage) -> Signature:
        """The canonical signature of ``message`` (a ``ChannelState``, ``Revocation`` or ``Withdrawal``)
        in ``domain``; ``WrongSigner`` if the signature does not recover to ``signing_address``."""
        digest = message_digest(domain, message)
        signature = canonical_signature(self._sign(domain, message, digest))
        recovered = recover_digest_signer(digest, signature)
        if recovered != self.signing_address:
            raise WrongSigner(expected=self.signing_address, recovered=recovered, digest=digest)
        return signature

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"


class LocalKeySigner(Signer):
    """A raw private key in this process: the digest signed with libsecp256k1 (``sign_digest``), which is
    deterministic (RFC 6979) and always low-s.

    ``check=False`` skips recovering each signature (about 80 µs, a third of the cost of signing): the
    signature is made here with the key the address was derived from, so the check can only catch a fault
    of libsecp256k1 itself. ``Channel`` given a raw key or a ``LocalAccount`` signs this way, as fast as
    before signers existed; every other signer is always checked.
    """

    def __init__(self, private_key: bytes | str, *, check: bool = True) -> None:
        key = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else bytes(private_key)
        if len(key) != 32:
            raise ValueError(f"a private key is 32 bytes, got {len(key)}")
        self._key = key
        self._address: str = Account.from_key(key).address
        self.check = check

    @property
    def address(self) -> str:
        return self._address

    @property
    def is_local(self) -> bool:
        return True

    @property
    def key(self) -> bytes:
        """The private key (for callers that still need the raw key, such as a node's transport)."""
        return self._key

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> Signature:
        return sign_digest(digest, self._key)

    def sign_typed(self, domain: Domain, message: TypedMessage) -> Signature:
        if self.check:
            return super().sign_typed(domain, message)
        return sign_digest(message_digest(domain, message), self._key)


class KeystoreSigner(LocalKeySigner):
    """An encrypted JSON keystore (a ``dict``, its JSON text or a path to it) and its password.

    The keystore is decrypted once, here (scrypt or pbkdf2, as the file says); then it signs like a
    ``LocalKeySigner``. ``WrongPassword`` if it does not decrypt; ``KeystoreMismatch`` if the file names
    another address than that of its key.
    """

    def __init__(self, keystore: dict[str, Any] | str | os.PathLike[str], password: str) -> None:
        if isinstance(keystore, dict):
            data = keystore
        elif isinstance(keystore, str) and keystore.lstrip().startswith("{"):
            data = json.loads(keystore)
        else:
            data = json.loads(Path(keystore).read_text())
        try:
            key = bytes(Account.decrypt(data, password))
        except ValueError as error:  # eth_account: "MAC mismatch"
            raise WrongPassword(f"the keystore does not decrypt with this password ({error})") from None
        super().__init__(key)
        stated = data.get("address")
        if stated is not None:
            stated_hex = stated if str(stated).startswith("0x") else "0x" + str(stated)
            if not is_address(stated_hex) or to_checksum_address(stated_hex) != self.address:
                raise KeystoreMismatch(stated=str(stated), decrypted=self.address)


class JsonRpcSigner(Signer):
    """An account a JSON-RPC endpoint signs for (a wallet, a remote signer, a node's unlocked account).

    Each message is sent as ``eth_signTypedData_v4(address, typed data JSON)`` in the wallet-safe form
    (integers as decimal strings). An error reply raises ``SignerRefused``; an unreachable endpoint or a
    reply that is not JSON-RPC ``SignerUnavailable``.
    """

    def __init__(self, url: str, address: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.url, self.timeout = url, timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._address = to_checksum_address(address)
        self._id = 0

    @property
    def address(self) -> str:
        return self._address

    def check_available(self) -> None:
        """Asks the endpoint for its accounts (``eth_accounts``): ``SignerUnavailable`` if it does not answer,
        ``AccountNotHeld`` if it lists accounts but not ``address``. An endpoint without ``eth_accounts``
        (an error reply) counts as there: its signatures are checked one by one anyway."""
        try:
            accounts = self.request("eth_accounts", [])
        except SignerRefused:
            return
        if isinstance(accounts, list) and all(isinstance(a, str) and is_address(a) for a in accounts):
            held = [str(to_checksum_address(a)) for a in accounts]
            if self._address not in held:
                raise AccountNotHeld(self.url, self._address, held[:8])

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> bytes:
        payload = json.dumps(typed_data(domain, message, wallet_safe=True))
        result = self.request("eth_signTypedData_v4", [self._address, payload])
        if not (isinstance(result, str) and _HEX_SIGNATURE.fullmatch(result)):
            raise MalformedSignerReply(result)
        return bytes.fromhex(result[2:])

    def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call to the endpoint, returning its ``result``."""
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}).encode()
        request = urllib.request.Request(self.url, body, self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise SignerUnavailable(self.url, f"HTTP {error.code}") from None
        except (OSError, ValueError) as error:  # unreachable, timed out, or not JSON
            raise SignerUnavailable(self.url, str(error) or type(error).__name__) from None
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise SignerUnavailable(self.url, f"not a JSON-RPC reply: {reply!r}")
        if "error" in reply:
            failure = reply["error"]
            code = failure.get("code") if isinstance(failure, dict) else None
            text = failure.get("message", "") if isinstance(failure, dict) else str(failure)
            raise SignerRefused(code if isinstance(code, int) else None, str(text))
        return reply["result"]


class ApeSigner(Signer):
    """Any Ape account (``ape.api.accounts.AccountAPI``): test, keyfile, Ledger, Trezor, ...

    ``account.sign_message`` is given the EIP-712 ``SignableMessage`` (version ``0x01``, header the domain
    separator, body the struct hash, built by ``eth_account``'s ``encode_typed_data``); it returns an Ape
    ``MessageSignature`` (``v``, ``r``, ``s``), or ``None`` when the account declines (``SignerRefused``).
    """

    def __init__(self, account: Any) -> None:
        self.account = account
        self._address = to_checksum_address(str(account.address))

    @property
    def address(self) -> str:
        return self._address

    @staticmethod
    def signable(domain: Domain, message: TypedMessage) -> SignableMessage:
        """The EIP-712 ``SignableMessage`` of ``message``: what an Ape account signs."""
        return encode_typed_data(full_message=typed_data(domain, message))

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> bytes:
        signed = self.account.sign_message(self.signable(domain, message))
        if signed is None:
            raise SignerRefused(None, f"{self.account!r} returned no signature")
        try:
            v, r, s = int(signed.v), bytes(signed.r), bytes(signed.s)
        except (AttributeError, TypeError, ValueError):
            raise MalformedSignerReply(signed) from None
        if len(r) > 32 or len(s) > 32 or not 0 <= v <= 255:
            raise MalformedSignerReply(signed)
        return r.rjust(32, b"\x00") + s.rjust(32, b"\x00") + bytes([v])


class Erc1271Signer(Signer):
    """A contract participant (an ERC-1271 wallet at ``wallet``) whose ``owner`` signs for it.

    ``address`` is the wallet; the signature is ``owner``'s signature of the very same EIP-712 digest, as an
    owner-signed wallet's ``isValidSignature(digest, signature)`` checks it (``ecrecover(digest) == owner``).
    It is checked to recover to the owner. Wallets that re-wrap the digest (a Safe signs a ``SafeMessage``
    of it) need their own signer. The contract accepts these signatures through the wallet's
    ``isValidSignature``; ``paychan.wallets.WalletAccount.signer`` builds one for a wallet the SDK drives.
    """

    def __init__(self, wallet: str, owner: Signer) -> None:
        self._address = to_checksum_address(wallet)
        self.owner = owner

    @property
    def address(self) -> str:
        return self._address

    @property
    def signing_address(self) -> str:
        return self.owner.signing_address

    @property
    def is_local(self) -> bool:
        return self.owner.is_local

    def check_available(self) -> None:
        self.owner.check_available()

    def _sign(self, domain: Domain, message: TypedMessage, digest: bytes) -> Signature:
        return self.owner.sign_typed(domain, message)


def as_signer(key: Signer | bytes | str | Any, *, check: bool = True) -> Signer:
    """``key`` as a ``Signer``: a ``Signer`` as is, a raw key (bytes or hex) or an eth-account
    ``LocalAccount`` (anything with a ``key``) as a ``LocalKeySigner`` (``check``: see there)."""
    if isinstance(key, Signer):
        return key
    if isinstance(key, (bytes, bytearray, str)):
        return LocalKeySigner(bytes(key) if not isinstance(key, str) else key, check=check)
    raw = getattr(key, "key", None)
    if isinstance(raw, (bytes, bytearray)):
        return LocalKeySigner(bytes(raw), check=check)
    raise TypeError(f"not a signer, a private key or a LocalAccount: {type(key).__name__}")
