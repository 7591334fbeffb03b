"""Runtime values of the .arch language and their type rules."""
from __future__ import annotations

from dataclasses import dataclass

from . import limits


@dataclass(frozen=True)
class Tensor:
    """A tensor flowing through the graph: the node that produced it and its shape."""

    node: str
    shape: tuple  # (C, H, W)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]


def type_name(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, tuple):
        return "list"
    if isinstance(v, Tensor):
        return "tensor"
    if v is None:
        return "none"
    return type(v).__name__


def show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, Tensor):
        return f"tensor {v.shape[0]}x{v.shape[1]}x{v.shape[2]} from '{v.node}'"
    return repr(v)


def coerce(v, typ: str):
    """Check `v` against a declared type; returns the (possibly widened) value or raises TypeError."""
    if typ == "float" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    ok = {
        "int": isinstance(v, int) and not isinstance(v, bool),
        "float": isinstance(v, float),
        "bool": isinstance(v, bool),
        "string": isinstance(v, str),
        "list": isinstance(v, tuple),
        "tensor": isinstance(v, Tensor),
    }[typ]
    if not ok:
        raise TypeError(f"expected {typ}, got {type_name(v)} {show(v)}")
    return v


def check_int(v):
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limits.MAX_INT:
        shown = str(v) if len(str(v)) <= 30 else f"of {len(str(abs(v)))} digits"
        raise OverflowError(f"integer {shown} is larger than the limit {limits.MAX_INT}")
    return v


def to_json(v):
    if isinstance(v, tuple):
        return [to_json(x) for x in v]
    return v
