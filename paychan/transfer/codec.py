"""A transfer machine's state as JSON text, and back: what a node stores after every step, so that a node
killed at any moment restarts from its store with every payment where it was.

``dump(task)`` writes one payment's state (an ``InitiatorState``, ``MediatorState`` or ``TargetState``, with
its routes, offers and channel views) as JSON: bytes as ``0x`` hex, tuples as lists, dicts as lists of
pairs, nested dataclasses as objects. ``load(text)`` reads it back, guided by the dataclasses' type hints,
and gives an equal state (``load(dump(task)) == task``); text that is not such a state raises
``MalformedMessage``. The store is the node's own (trusted) data: the codec checks types, not protocol rules.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Union

from paychan.exceptions import MalformedMessage
from paychan.transfer.initiator import InitiatorState
from paychan.transfer.mediator import MediatorState
from paychan.transfer.target import TargetState

Task = InitiatorState | MediatorState | TargetState
KINDS: dict[str, type[Any]] = {"initiator": InitiatorState, "mediator": MediatorState, "target": TargetState}


def dump(task: Task) -> str:
    """``task`` as JSON text, tagged with its kind."""
    kind = next(name for name, cls in KINDS.items() if isinstance(task, cls))
    return json.dumps({"kind": kind, "state": _encode(task)}, separators=(",", ":"))


def load(text: str) -> Task:
    """The state ``dump`` wrote; ``MalformedMessage`` for anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MalformedMessage(f"a stored transfer is JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS or "state" not in data:
        raise MalformedMessage("a stored transfer is an object with kind (initiator, mediator, target) and state")
    task: Task = _decode(data["state"], KINDS[data["kind"]])
    return task


_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, looked up once per class


def _encode(value: object) -> object:
    """``value`` as JSON-ready data. The plain values first (a node writes a payment's state after each step:
    ints, strings and bytes are most of it), a dataclass's field names looked up once per class."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return [[_encode(k), _encode(v)] for k, v in value.items()]
    kind = type(value)
    names = _FIELDS.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(kind):
            raise TypeError(f"cannot store a {kind.__name__}")
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return {name: _encode(getattr(value, name)) for name in names}


def _decode(data: object, kind: Any) -> Any:
    supertype = getattr(kind, "__supertype__", None)
    if supertype is not None:  # a NewType (ChannelId, Wei)
        return _decode(data, supertype)
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(data, option)
            except MalformedMessage as exc:
                errors.append(str(exc))
        raise MalformedMessage("; ".join(errors))
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_decode(x, item) for x in _list(data))
    if origin is dict:
        key, val = typing.get_args(kind)
        pairs = _list(data)
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
            raise MalformedMessage("a stored mapping is a list of [key, value] pairs")
        return {_decode(k, key): _decode(v, val) for k, v in pairs}
    if dataclasses.is_dataclass(kind):
        return _decode_dataclass(data, kind)
    if kind is bytes:
        if not (isinstance(data, str) and data.startswith("0x")):
            raise MalformedMessage("stored bytes are 0x hex")
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            raise MalformedMessage("stored bytes are 0x hex") from None
    if kind is bool:
        if not isinstance(data, bool):
            raise MalformedMessage("a stored flag is true or false")
        return data
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise MalformedMessage("a stored number is an integer")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise MalformedMessage("a stored text is a string")
        return data
    raise TypeError(f"no stored form for {kind!r}")


def _decode_dataclass(data: object, kind: Any) -> Any:
    if not isinstance(data, dict):
        raise MalformedMessage(f"a stored {kind.__name__} is an object")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    # a field added since the state was stored (it has a default) may be missing; an unknown one may not
    optional = {name for name, f in fields.items() if f.default is not dataclasses.MISSING}
    if not set(fields) - optional <= set(data) <= set(fields):
        raise MalformedMessage(f"a stored {kind.__name__} has the fields {', '.join(sorted(fields))}")
    return kind(**{name: _decode(data[name], hints[name]) for name in fields if name in data})


def _list(data: object) -> list[Any]:
    if not isinstance(data, list):
        raise MalformedMessage("a stored sequence is a list")
    return data


__all__ = ["dump", "load"]
