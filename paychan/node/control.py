"""The client of a running node's control API (``paychan node`` writes ``DB.control.json`` with its URL and
bearer token): what the CLI and the test harness use to drive a node. It belongs to the node package; the CLI
sits on top of it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from paychan.exceptions import PaychanError


class NodeNotRunning(PaychanError):
    """Raised when no node answers for the given store."""


class ControlError(PaychanError):
    """Raised when the node's control API answers with an error; ``type`` and ``fields`` are its details."""

    def __init__(self, type_: str, message: str, fields: dict[str, Any]) -> None:
        self.type, self.fields = type_, fields
        super().__init__(message)


def control_request(
    db: str, method: str, path: str, payload: dict[str, Any] | None = None, timeout: float = 120.0
) -> Any:
    """Calls the control API of the node running on store ``db``."""
    try:
        control = json.loads(Path(f"{db}.control.json").read_text())
    except (OSError, ValueError):
        raise NodeNotRunning(f"no node is running on {db} (no control file; start it with `paychan node`)") from None
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        control["controlUrl"] + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {control['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            raise ControlError(str(error["type"]), str(error["message"]), dict(error.get("fields") or {})) from None
        except (ValueError, KeyError, TypeError):
            raise ControlError("HTTPError", f"the node answered HTTP {exc.code}", {}) from None
    except (urllib.error.URLError, OSError) as exc:
        raise NodeNotRunning(f"the node on {db} does not answer ({exc})") from None
