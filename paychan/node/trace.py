"""An optional timeline of a node's commits and peer requests, to see where a payment's time goes.

With ``PAYCHAN_TRACE=DIR`` in its environment a node appends one line per store commit and per peer request
it makes to ``DIR/<pid>.trace``::

    COMMIT <start ns> <end ns> <caller>>(<its caller>)
    REQ <start ns> <end ns> <path> <message type>

Times are ``time.perf_counter_ns()`` (the system's monotonic clock: the lines of the node processes of one
machine merge into one timeline). ``python -m benchmarks.routed --trace DIR`` traces its four nodes and
prints the timeline of one routed payment. Without the variable nothing is recorded and each call costs one
test of a module global.
"""

from __future__ import annotations

import os
import sys
import time

DIRECTORY = os.environ.get("PAYCHAN_TRACE") or None


def now() -> int:
    return time.perf_counter_ns() if DIRECTORY else 0


def caller(depth: int = 2) -> str:
    """The function ``depth`` frames up and its caller (what a transaction was opened by)."""
    if not DIRECTORY:
        return ""
    frame = sys._getframe(depth)
    names = [frame.f_code.co_name]
    if frame.f_back is not None:
        names.append(frame.f_back.f_code.co_name)
    return ">".join(names)


def note(kind: str, started: int, *what: str) -> None:
    """Appends one line: ``kind``, when it started (``now()``) and ended, and ``what``."""
    if not DIRECTORY:
        return
    line = " ".join((kind, str(started), str(time.perf_counter_ns()), *what))
    with open(os.path.join(DIRECTORY, f"{os.getpid()}.trace"), "a", encoding="utf-8") as out:
        out.write(line + "\n")
