"""Builtin (non-layer) functions of the .arch language: int, round, min, range, zip ...

Each takes evaluated positional and keyword values and raises TypeError / ValueError /
OverflowError with a message; the elaborator positions it at the call.
"""
from __future__ import annotations

import math

from . import limits
from ._values import check_int, show, type_name


def number(v, what="argument"):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number, got {type_name(v)} {show(v)}")
    return v


def _to_int(v):
    if isinstance(v, bool):
        raise TypeError("int() of a bool is not allowed")
    if isinstance(v, str):
        raise TypeError(f"int() takes a number, got string {show(v)}")
    v = number(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"int() of {v}")
    return int(v)


def _make_divisible(v, divisor=8, min_value=None):
    """The MobileNet/EfficientNet channel rounding rule (as in torchvision)."""
    v, divisor = number(v), number(divisor, "divisor")
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError("divisor must be a positive integer")
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _range(*a):
    if not 1 <= len(a) <= 3 or any(isinstance(x, bool) or not isinstance(x, int) for x in a):
        raise TypeError("range() takes 1 to 3 integers: range(stop), range(start, stop[, step])")
    if len(a) == 3 and a[2] == 0:
        raise ValueError("range() step must not be zero")
    r = range(*a)
    if len(r) > limits.MAX_LIST:
        raise ValueError(f"range() of {len(r)} elements exceeds the limit of {limits.MAX_LIST}")
    return tuple(r)


def _seq(v, fn):
    if not isinstance(v, tuple):
        raise TypeError(f"{fn}() takes a list, got {type_name(v)}")
    return v


def _minmax(fn):
    def f(*a):
        vals = a[0] if len(a) == 1 and isinstance(a[0], tuple) else a
        if not vals:
            raise ValueError(f"{fn.__name__}() of nothing")
        for v in vals:
            number(v)
        return fn(vals)
    return f


BUILTINS = {
    "int": lambda v: _to_int(v),
    "float": lambda v: float(number(v)),
    "round": lambda v, nd=None: round(number(v)) if nd is None else round(number(v), nd),
    "ceil": lambda v: math.ceil(number(v)),
    "floor": lambda v: math.floor(number(v)),
    "abs": lambda v: abs(number(v)),
    "min": _minmax(min),
    "max": _minmax(max),
    "sum": lambda v: sum(number(x) for x in _seq(v, "sum")),
    "len": lambda v: len(_seq(v, "len")),
    "range": _range,
    "enumerate": lambda v: tuple((i, x) for i, x in enumerate(_seq(v, "enumerate"))),
    "zip": lambda *vs: tuple(zip(*(_seq(v, "zip") for v in vs))),
    "make_divisible": _make_divisible,
    "str": lambda v: v if isinstance(v, str) else show(v),
}
BUILTIN_DOCS = {
    "int": "int(x): truncate toward zero", "float": "float(x)",
    "round": "round(x[, digits]): nearest, ties to even (Python's rule)",
    "ceil": "ceil(x): smallest integer >= x", "floor": "floor(x): largest integer <= x",
    "abs": "abs(x)", "min": "min(a, b, ...) or min(list)", "max": "max(a, b, ...) or max(list)",
    "sum": "sum(list)", "len": "len(list)", "range": "range([start,] stop[, step]) -> list",
    "enumerate": "enumerate(list) -> [[0, a], [1, b], ...]", "zip": "zip(l1, l2, ...)",
    "make_divisible": "make_divisible(v, divisor=8, min_value=none): MobileNet rounding",
    "str": "str(x): text of a value",
}
# Functions that build layers but are not single ops.
TENSOR_FUNCTIONS = ("split", "activation")


class OperandError(ValueError):
    """An operator error; `side` ("left", "right" or None) says which operand to point at."""

    def __init__(self, message: str, side: str | None = None):
        super().__init__(message)
        self.message, self.side = message, side


def operate(op: str, a, b):
    """A binary operator (not `and`/`or`) on two evaluated non-tensor values."""
    if op in ("==", "!="):
        same = a == b and (type_name(a) == type_name(b) or
                           {type_name(a), type_name(b)} <= {"int", "float"})
        return same if op == "==" else not same
    if op in ("<", "<=", ">", ">="):
        if not ((isinstance(a, str) and isinstance(b, str)) or
                (type_name(a) in ("int", "float") and type_name(b) in ("int", "float"))):
            raise OperandError(f"cannot compare {type_name(a)} with {type_name(b)}")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) + len(b) > limits.MAX_LIST:
            raise OperandError(f"list longer than {limits.MAX_LIST} elements")
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > limits.MAX_STRING:
            raise OperandError(f"string longer than {limits.MAX_STRING} characters")
        return a + b
    if op == "*" and isinstance(a, tuple) and type_name(b) == "int":
        if len(a) * max(b, 0) > limits.MAX_LIST:
            raise OperandError(f"list longer than {limits.MAX_LIST} elements")
        return a * b
    x = number(a, f"the left operand of '{op}'")
    y = number(b, f"the right operand of '{op}'")
    if op == "+":
        r = x + y
    elif op == "-":
        r = x - y
    elif op == "*":
        r = x * y
    elif op == "/":
        if y == 0:
            raise OperandError("division by zero", "right")
        r = x / y
    elif op == "//":
        if y == 0:
            raise OperandError("division by zero", "right")
        r = x // y
    elif op == "%":
        if y == 0:
            raise OperandError("modulo by zero", "right")
        r = x % y
    elif op == "**":
        if abs(y) > 64 or (x == 0 and y < 0):
            raise OperandError(f"exponent {y} is out of range", "right")
        r = x ** y
        if isinstance(r, complex):
            raise OperandError("fractional power of a negative number")
    else:  # pragma: no cover
        raise AssertionError(op)
    if isinstance(r, float) and not math.isfinite(r):
        raise OperandError("number overflow")
    return check_int(r)
