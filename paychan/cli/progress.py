"""Progress output for commands that wait: a spinner or a progress bar on stderr, only for people.

Shown only when stderr is a terminal and the wait lasts longer than a second (``DELAY``), so scripts, pipes
and ``--json`` output see nothing of it. Uses ``rich`` when it is installed (it comes with Ape), else one
plain line.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

DELAY = 1.0  # seconds before anything is shown


def _interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def waiting(text: str, count: Callable[[], int | None] | None = None, total: int | None = None) -> Iterator[None]:
    """Shows ``text`` while the block runs, after ``DELAY`` s; with ``count`` and ``total`` a progress bar
    (``count()`` is polled twice a second; it may return None when it cannot tell)."""
    if not _interactive():
        yield
        return
    done = threading.Event()
    thread = threading.Thread(target=_show, args=(text, count, total, done), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)


def _show(text: str, count: Callable[[], int | None] | None, total: int | None, done: threading.Event) -> None:
    if done.wait(DELAY):
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:  # no rich: one plain line
        print(f"{text} ...", file=sys.stderr, flush=True)
        done.wait()
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn(text)]
    if count is not None and total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(text, total=total)
        while not done.wait(0.5):
            if count is not None:
                try:
                    value = count()
                except Exception:  # the node may be busy or gone: keep waiting quietly
                    value = None
                if value is not None:
                    progress.update(task, completed=value)
