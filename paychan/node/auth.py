"""Peer authentication and admission: who sent a peer request, and whether the node does any work for it.

Every peer request except ``GET /peer/info`` is signed by the channel participant it comes from. The
signature covers, under the node's EIP-712 domain (chain id and contract), the recipient node's address,
the HTTP method and path, a millisecond timestamp and the hash of the body::

    digest = keccak256(0x19 "paychan peer" 0x00 || domainSeparator || recipient || method 0x00 path 0x00
                       || timestamp (8 bytes) || keccak256(body))

and travels in three headers (``Paychan-Signer``, ``Paychan-Timestamp``, ``Paychan-Signature``). A request
is accepted only within ``MAX_SKEW_MS`` of the receiver's clock and only once (``ReplayGuard``), so a
captured request can neither be replayed nor sent to another node, chain or contract.

A node whose participant is a contract wallet (``paychan node --wallet``) signs its requests with the
wallet's owner key and names the wallet in a fourth header, ``Paychan-Participant``; the digest then has
another prefix and covers the wallet's address too::

    digest = keccak256(0x19 "paychan peer" 0x01 || domainSeparator || recipient || participant || method 0x00
                       || path 0x00 || timestamp (8 bytes) || keccak256(body))

Whether that key speaks for that wallet is the receiving node's question (``paychan.node.wallet_peers``).
A request without the header is signed and checked exactly as before.

``PeerGate`` decides what a request may cost before the node reads its body: a request that claims to come
from a known counterparty draws on that counterparty's budget (``TokenBucket``) and on its IP address's
budget for forgeries (claims of a counterparty whose signature did not verify), anything else (strangers,
missing or bad signatures) on the budget of its IP address for strangers; an exhausted budget is answered
with 429 unread. Nothing here touches the chain or the store.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import coincurve
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from paychan.exceptions import PaychanError
from paychan.signing import Domain
from paychan.state import Signature

AUTH_PREFIX = b"\x19paychan peer\x00"  # 0x19 then not 0x01: never the prefix of an EIP-712 digest
WALLET_AUTH_PREFIX = b"\x19paychan peer\x01"  # a request speaking for a contract wallet (Paychan-Participant)
SIGNER_HEADER = "Paychan-Signer"
PARTICIPANT_HEADER = "Paychan-Participant"
TIMESTAMP_HEADER = "Paychan-Timestamp"
SIGNATURE_HEADER = "Paychan-Signature"
MAX_SKEW_MS = 60_000  # a request signed more than a minute before or after the receiver's clock is refused

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}\Z")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{128}\Z")  # EIP-2098 compact, as states carry
_TIMESTAMP = re.compile(r"[0-9]{1,15}\Z")
ZERO_ADDRESS = "0x" + "00" * 20


class Unauthenticated(PaychanError):
    """Raised when a peer request is not signed, signed by someone else, too old, or seen before."""


class RateLimited(PaychanError):
    """Raised when a peer (or an IP address, for strangers) has used up its request budget for now."""

    def __init__(self, who: str, retry_after: float) -> None:
        self.who, self.retry_after = who, retry_after
        super().__init__(f"too many requests from {who}; retry in {retry_after:.2f}s")


# --- signatures over digests ----------------------------------------------------------------------


def sign_digest(private_key: bytes, digest: bytes) -> Signature:
    """A recoverable secp256k1 signature (low s, RFC 6979) of a 32-byte digest."""
    return Signature.from_bytes(_signing_key(bytes(private_key)).sign_recoverable(digest, hasher=None))


@lru_cache(maxsize=64)
def _signing_key(private_key: bytes) -> coincurve.PrivateKey:
    """The key object (cached: deriving it costs as much as the signature, and a node signs each request)."""
    return coincurve.PrivateKey(private_key)


def recover_digest_signer(digest: bytes, signature: Signature) -> str:
    """The address that signed ``digest``; the zero address if the signature recovers none."""
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature.r + signature.s.to_bytes(32, "big") + bytes([signature.v - 27]), digest, hasher=None
        )
    except Exception:  # coincurve: no key recovers from this signature
        return ZERO_ADDRESS
    return _address_of(public_key.format(compressed=False))


# The checksum of an address (a keccak and a loop over its digits, about 50 µs) cached: a node hears from the
# same few counterparties again and again. Bounded, so strangers' addresses only push older ones out.
@lru_cache(maxsize=4096)
def _address_of(public_key: bytes) -> str:
    return to_checksum_address(keccak(public_key[1:])[12:])


@lru_cache(maxsize=4096)
def _checksummed(address: str) -> str:
    return to_checksum_address(address)


# --- request signatures ---------------------------------------------------------------------------


def request_digest(
    domain: Domain,
    recipient: str,
    method: str,
    path: str,
    timestamp_ms: int,
    body: bytes,
    participant: str | None = None,
) -> bytes:
    """What the sender of a peer request signs (see the module docstring); ``participant``: the contract
    wallet the request speaks for, if any."""
    head = (
        AUTH_PREFIX + domain.separator + bytes.fromhex(recipient[2:])
        if participant is None
        else WALLET_AUTH_PREFIX + domain.separator + bytes.fromhex(recipient[2:]) + bytes.fromhex(participant[2:])
    )
    return keccak(
        head
        + method.upper().encode()
        + b"\x00"
        + path.encode()
        + b"\x00"
        + timestamp_ms.to_bytes(8, "big")
        + keccak(body)
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign_request(
    domain: Domain,
    private_key: bytes,
    recipient: str,
    method: str,
    path: str,
    body: bytes,
    timestamp_ms: int | None = None,
    signer: str | None = None,
    participant: str | None = None,
) -> dict[str, str]:
    """The authentication headers of a peer request from the holder of ``private_key`` to ``recipient``.

    ``signer``: the key's address, when the caller knows it (deriving it costs about 200 µs a request).
    ``participant``: the contract wallet the key speaks for (its owner's node), named in ``Paychan-Participant``."""
    from eth_account import Account

    timestamp_ms = now_ms() if timestamp_ms is None else timestamp_ms
    signer = signer or Account.from_key(private_key).address
    digest = request_digest(domain, recipient, method, path, timestamp_ms, body, participant)
    headers = {
        SIGNER_HEADER: signer,
        TIMESTAMP_HEADER: str(timestamp_ms),
        SIGNATURE_HEADER: "0x" + sign_digest(private_key, digest).to_bytes().hex(),
    }
    if participant is not None:
        headers[PARTICIPANT_HEADER] = participant
    return headers


@dataclass(frozen=True)
class Claim:
    """The authentication headers of a request, checked for form and freshness but not yet verified."""

    signer: str
    timestamp_ms: int
    signature: Signature
    checked_at: int  # the receiver's clock (ms) when the headers were found fresh: the replay guard's "now"
    participant: str | None = None  # the contract wallet ``signer`` claims to speak for (Paychan-Participant)

    @property
    def speaks_for(self) -> str:
        """The participant the request comes from: the wallet it names, else its signer."""
        return self.signer if self.participant is None else self.participant

    def verify(self, domain: Domain, recipient: str, method: str, path: str, body: bytes) -> bytes:
        """Checks the signature over the request; returns its digest (for the replay guard). That the signer
        speaks for ``participant`` is not checked here (``paychan.node.wallet_peers``)."""
        digest = request_digest(domain, recipient, method, path, self.timestamp_ms, body, self.participant)
        recovered = recover_digest_signer(digest, self.signature)
        if recovered != self.signer:
            raise Unauthenticated(f"the request is not signed by {self.signer}")
        return digest


def read_claim(headers: Mapping[str, str], now: int | None = None, max_skew_ms: int = MAX_SKEW_MS) -> Claim:
    """The request's claimed signer and timestamp; raises ``Unauthenticated`` if absent, malformed or stale."""
    signer = headers.get(SIGNER_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not signer and not timestamp and not signature:
        raise Unauthenticated("the request is not signed (Paychan-Signer/-Timestamp/-Signature headers)")
    if not _ADDRESS.match(signer) or not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        raise Unauthenticated("malformed authentication headers")
    now = now_ms() if now is None else now
    timestamp_ms = int(timestamp)
    if abs(now - timestamp_ms) > max_skew_ms:
        raise Unauthenticated(f"request timestamp {timestamp_ms} is more than {max_skew_ms} ms from {now}")
    try:
        parsed = Signature.from_bytes(bytes.fromhex(signature[2:]))
    except ValueError:
        raise Unauthenticated("malformed signature") from None
    participant = headers.get(PARTICIPANT_HEADER)
    if participant is None:
        return Claim(_checksummed(signer), timestamp_ms, parsed, now)
    if not _ADDRESS.match(participant):
        raise Unauthenticated("malformed Paychan-Participant header")
    wallet, key = _checksummed(participant), _checksummed(signer)
    if wallet == key:
        raise Unauthenticated("Paychan-Participant names the signer itself: leave the header out")
    return Claim(key, timestamp_ms, parsed, now, wallet)


class ReplayGuard:
    """Remembers the digests of accepted requests while their timestamps are fresh; refuses a second use.

    Holds at most ``capacity`` digests: past it, the oldest are forgotten first (they expire soonest).
    """

    def __init__(self, max_skew_ms: int = MAX_SKEW_MS, capacity: int = 200_000) -> None:
        self.max_skew_ms, self.capacity = max_skew_ms, capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def check_and_remember(self, digest: bytes, timestamp_ms: int, now: int | None = None) -> None:
        """``now``: the time the request's timestamp was found fresh (``Claim.checked_at``), not a later one:
        a digest is kept until no request with its timestamp can be fresh any more, so a replay whose body
        arrives late is still recognised."""
        now = now_ms() if now is None else now
        while self._seen:
            oldest, expires = next(iter(self._seen.items()))
            if expires >= now and len(self._seen) < self.capacity:
                break
            del self._seen[oldest]
        if digest in self._seen:
            raise Unauthenticated("request replayed")
        self._seen[digest] = max(timestamp_ms, now) + self.max_skew_ms

    def __len__(self) -> int:
        return len(self._seen)


# --- budgets --------------------------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1

    def take(self, now: float, cost: float = 1.0) -> None:
        """Spends ``cost`` tokens (the balance may go negative: a big request delays the next ones)."""
        self._refill(now)
        self.tokens -= cost

    def retry_after(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass(frozen=True)
class Limits:
    """What one peer, and one IP address of strangers, may make the node do."""

    peer_requests_per_s: float = 500.0
    peer_burst: float = 1000.0
    peer_states_per_s: float = 5000.0  # each state costs a signature check and a countersignature
    stranger_requests_per_s: float = 20.0  # per IP: announces, bad or missing signatures
    stranger_burst: float = 40.0
    stranger_body_bytes: int = 8 * 1024  # strangers can only announce, which is small
    tracked: int = 4096  # buckets kept (least recently used dropped first)


class PeerGate:
    """Admission control of the peer endpoint: budgets per counterparty and, for the rest, per IP."""

    def __init__(self, limits: Limits | None = None, clock: object = time.monotonic) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._peers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._strangers: OrderedDict[str, TokenBucket] = OrderedDict()
        self._forgeries: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused = 0  # requests answered 429

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _bucket(self, table: OrderedDict[str, TokenBucket], key: str, rate: float, burst: float) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(rate, burst, self._now())
            while len(table) > self.limits.tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return bucket

    def _peer(self, signer: str) -> TokenBucket:
        limits = self.limits
        return self._bucket(self._peers, signer, limits.peer_requests_per_s, limits.peer_burst)

    def _stranger(self, ip: str) -> TokenBucket:
        limits = self.limits
        return self._bucket(self._strangers, ip, limits.stranger_requests_per_s, limits.stranger_burst)

    def _forger(self, ip: str) -> TokenBucket:
        limits = self.limits
        return self._bucket(self._forgeries, ip, limits.stranger_requests_per_s, limits.stranger_burst)

    def admit_peer(self, signer: str, ip: str) -> None:
        """Before reading the body of a request from ``ip`` claiming to come from the counterparty ``signer``.

        Refused if that counterparty used up its budget, or if ``ip`` sent too many such claims that did not
        verify (a forger naming our counterparty cannot make us read and check bodies without limit; a real
        counterparty behind the same address as a forger is refused with it)."""
        now = self._now()
        for who, bucket in ((signer, self._peer(signer)), (ip, self._forger(ip))):
            if not bucket.available(now):
                self.refused += 1
                raise RateLimited(who, bucket.retry_after())

    def admit_stranger(self, ip: str) -> None:
        """Before reading the body of any other request (a stranger, or a request without a signature)."""
        bucket = self._stranger(ip)
        if not bucket.available(self._now()):
            self.refused += 1
            raise RateLimited(ip, bucket.retry_after())

    def charge_peer(self, signer: str, states: int = 0) -> None:
        """After a counterparty's request was verified: one request, plus its states' share."""
        limits = self.limits
        self._peer(signer).take(self._now(), 1 + states * limits.peer_requests_per_s / limits.peer_states_per_s)

    def charge_stranger(self, ip: str) -> None:
        """For a stranger's request, and for any request without a valid claim."""
        self._stranger(ip).take(self._now())

    def charge_forgery(self, ip: str) -> None:
        """For a request claiming to come from a counterparty whose signature did not verify."""
        self._forger(ip).take(self._now())
