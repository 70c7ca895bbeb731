"""The node's key: an encrypted keystore file (eth-account's Web3 Secret Storage format).

The password comes from the environment variable ``PAYCHAN_PASSWORD`` or, when it is unset and a terminal is
attached, from a prompt. The decrypted key lives only in the node's memory.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from eth_account import Account

from paychan.exceptions import PaychanError

PASSWORD_ENV = "PAYCHAN_PASSWORD"


class KeystoreError(PaychanError):
    """Raised when the keystore cannot be read or decrypted."""


def read_password(prompt: str = "keystore password: ") -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise KeystoreError(f"no password: set {PASSWORD_ENV} or run in a terminal")
    return getpass.getpass(prompt)


def load_key(path: str | Path, password: str | None = None) -> bytes:
    """The private key in keystore ``path``, decrypted with ``password`` (default: ``read_password()``)."""
    try:
        keyfile = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc}") from exc
    secret = read_password() if password is None else password
    try:
        return bytes(Account.decrypt(keyfile, secret))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):  # eth-account's answer to a wrong password
            raise KeystoreError(
                f"cannot decrypt keystore {path}: wrong password (from $PAYCHAN_PASSWORD or the prompt)"
            ) from None
        raise KeystoreError(f"cannot decrypt keystore {path}: {exc}") from exc


def write_keystore(path: str | Path, private_key: bytes, password: str, iterations: int | None = None) -> str:
    """Encrypts ``private_key`` into a new keystore file (mode 0600); returns its address.

    ``iterations`` lowers the pbkdf2 work factor (tests only); by default eth-account's scrypt settings apply.
    """
    if iterations is None:
        keyfile = Account.encrypt(private_key, password)
    else:
        keyfile = Account.encrypt(private_key, password, kdf="pbkdf2", iterations=iterations)
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keyfile, handle)
    return str(Account.from_key(private_key).address)
