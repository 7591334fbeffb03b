"""Runtime values of the .arch language, their type rules, and what they cost: list values
carry their size and depth (ListValue), checked before any list is built (make_list)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import limits
from .errors import printable


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


@dataclass(frozen=True)
class Outputs:
    """A network's named outputs, `outputs(name=tensor, ...)`: ((name, Tensor), ...) in
    order, the first being the primary one. Only a network may return it."""

    items: tuple


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
    if isinstance(v, Outputs):
        return "outputs"
    if v is None:
        return "none"
    return type(v).__name__


SHOW_LIMIT = 120  # characters of a value that an error message shows


class ListValue(tuple):
    """A list value of the language: a tuple that knows its cost.

    `size` counts its elements and those of every list nested in it (a list repeated twice
    counts twice) and `depth` its nesting, so that no later operation (comparing, showing,
    converting to JSON) can be asked for more than MAX_LIST elements of work or recurse
    deeper than MAX_LIST_DEPTH. Lists are only made through `make_list`, which checks both
    before anything is built.
    """

    size: int
    depth: int


def measure(v) -> tuple[int, int]:
    """(size, depth) of a value: 0, 0 for anything that is not a list."""
    if not isinstance(v, tuple):
        return 0, 0
    if isinstance(v, ListValue):
        return v.size, v.depth
    size, depth = len(v), 1
    for x in v:  # a plain tuple (a shape, a split's outputs) holds no deep lists
        if isinstance(x, tuple):
            s, d = measure(x)
            size, depth = size + s, max(depth, d + 1)
    return size, depth


def list_cost(size: int, depth: int) -> None:
    """Raise ValueError if a list of `size` elements (nested ones counted) and `depth`
    levels is over the limits: called before the list is built."""
    if size > limits.MAX_LIST:
        raise ValueError(f"list longer than {limits.MAX_LIST} elements" +
                         (" (counting the elements of nested lists)" if depth > 1 else ""))
    if depth > limits.MAX_LIST_DEPTH:
        raise ValueError(f"lists nested more than {limits.MAX_LIST_DEPTH} levels deep")


def make_list(items) -> ListValue:
    """A list value from an iterable of values, its size and depth checked (ValueError)."""
    items = tuple(items)
    size, depth = len(items), 1
    for x in items:
        if isinstance(x, tuple):
            s, d = measure(x)
            size, depth = size + s, max(depth, d + 1)
    list_cost(size, depth)
    out = ListValue(items)
    out.size, out.depth = size, depth
    return out


def plain(v):
    """A value with its lists as plain tuples: what leaves the compiler (Network.params,
    scope arguments) carries no ListValue."""
    if isinstance(v, tuple) and not isinstance(v, Tensor):
        return tuple(plain(x) for x in v)
    return v


def show(v, limit: int = SHOW_LIMIT) -> str:
    """The value as the language writes it, cut to about `limit` characters with '...'."""
    out: list[str] = []
    budget = [limit]

    def put(text: str) -> bool:
        if len(text) > budget[0]:
            out.append(text[:max(budget[0], 0)])
            budget[0] = -1
            return False
        out.append(text)
        budget[0] -= len(text)
        return True

    def walk(x, depth: int) -> bool:
        if isinstance(x, tuple) and not isinstance(x, Tensor):
            if depth > limits.MAX_LIST_DEPTH:
                return put("[...]")
            if not put("["):
                return False
            for i, y in enumerate(x):
                if (i and not put(", ")) or not walk(y, depth + 1):
                    return False
            return put("]")
        return put(_scalar(x))

    if not walk(v, 1):
        return "".join(out) + "..."
    return "".join(out)


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        text = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace(
            "\t", "\\t")
        return '"' + printable(text) + '"'  # no terminal control reaches an output raw
    if isinstance(v, Tensor):
        return f"tensor {v.shape[0]}x{v.shape[1]}x{v.shape[2]} from '{v.node}'"
    if isinstance(v, Outputs):
        return "outputs(" + ", ".join(f"{k}={_scalar(t)}" for k, t in v.items) + ")"
    if isinstance(v, int) and v.bit_length() > 64:
        return f"<integer of {v.bit_length()} bits>"
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
    """An int within MAX_INT, or a finite float; anything else passes through unchanged."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) > limits.MAX_INT:
        bits = v.bit_length()
        if bits <= 96:
            shown = str(v)
        else:  # ~0.30103 decimal digits a bit; str() of a huge int is itself costly
            digits = len(str(abs(v))) if bits <= 4000 else int(bits * 0.30103) + 1
            shown = f"of {digits} digits"
        raise OverflowError(f"integer {shown} is larger than the limit {limits.MAX_INT}")
    if isinstance(v, float) and not math.isfinite(v):
        raise OverflowError("number overflow: the result is too large for a float"
                            if v == v else "the result is not a number (NaN)")
    return v


def to_json(v):
    """A value as JSON data: lists become arrays; a non-finite float (which no value of the
    language can be) becomes null, so that the output is always valid JSON."""
    if isinstance(v, tuple):
        return [to_json(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
