"""Builtin (non-layer) functions of the .arch language: int, round, min, range, zip ...

Each takes evaluated positional and keyword values and raises TypeError / ValueError /
OverflowError with a message; the elaborator positions it at the call.

Cost is bounded before anything is computed: every list is built through
_values.make_list (size and depth checked first), integer rounding is clamped to the digits
that can matter, and `cost` gives the elaborator the work of each call (its list arguments
and result) to charge against limits.MAX_WORK.
"""
from __future__ import annotations

import math

from . import limits
from ._values import ListValue, check_int, list_cost, make_list, measure, show, type_name


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


def _round(v, digits=None):
    v = number(v)
    if digits is None:
        return round(v)
    if isinstance(digits, bool) or not isinstance(digits, int):
        raise TypeError(f"the number of digits must be an integer, got {type_name(digits)}")
    # Python computes 10**-digits for an int: clamp to the digits that can change a value
    # (|v| < 10**19 for an int, 10**309 for a float) so that no digit count costs more.
    lim = limits.MAX_ROUND_DIGITS
    return round(v, max(-lim, min(lim, digits)))


def _make_divisible(v, divisor=8, min_value=None):
    """The MobileNet/EfficientNet channel rounding rule (as in torchvision)."""
    v, divisor = number(v), number(divisor, "divisor")
    if not isinstance(divisor, int) or divisor < 1:
        raise ValueError("divisor must be a positive integer")
    if min_value is None:
        min_value = divisor
    min_value = number(min_value, "min_value")
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _range(*a):
    if not 1 <= len(a) <= 3 or any(isinstance(x, bool) or not isinstance(x, int) for x in a):
        raise TypeError("range() takes 1 to 3 integers: range(stop), range(start, stop[, step])")
    if len(a) == 3 and a[2] == 0:
        raise ValueError("range() step must not be zero")
    start, stop, step = (0, a[0], 1) if len(a) == 1 else (a[0], a[1], a[2] if len(a) == 3 else 1)
    n = max(0, (stop - start + step - (1 if step > 0 else -1)) // step)  # len() before building
    if n > limits.MAX_LIST:
        raise ValueError(f"range() of {n} elements exceeds the limit of {limits.MAX_LIST}")
    return make_list(range(start, stop, step))


def _enumerate(v):
    v = _seq(v, "enumerate")
    size, depth = measure(v)
    list_cost(2 * len(v) + size, depth + 1)  # [i, x] pairs: the pairs and their indices
    return make_list(make_list((i, x)) for i, x in enumerate(v))


def _zip(*vs):
    vs = [_seq(v, "zip") for v in vs]
    n = min((len(v) for v in vs), default=0)
    list_cost(n * (len(vs) + 1) + sum(measure(v)[0] for v in vs),  # an upper bound
              max((measure(v)[1] for v in vs), default=0) + 1)
    return make_list(make_list(t) for t in zip(*vs))


def _str(v):
    if isinstance(v, str):
        return v
    text = show(v, limits.MAX_STRING)
    if len(text) > limits.MAX_STRING:
        raise ValueError(f"the text would be longer than {limits.MAX_STRING} characters")
    return text


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


def _positive(fn: str, v, what: str = "argument"):
    v = number(v, what)
    if v <= 0:
        raise ValueError(f"the {what} must be positive, got {show(v)}")
    return v


def _log(v, base=None):
    v = _positive("log", v)
    if base is None:
        return math.log(v)
    base = _positive("log", base, "base")
    if base == 1:
        raise ValueError("a logarithm to base 1 is undefined")
    return math.log(v, base)


def _exp(v):
    v = number(v)
    if v > 709:   # math.exp overflows a float above ~709.78
        raise OverflowError(f"e ** {show(v)} is too large for a float")
    return math.exp(v)


def _sqrt(v):
    v = number(v)
    if v < 0:
        raise ValueError(f"the argument must not be negative, got {show(v)}")
    return math.sqrt(v)


def _pow(a, b):
    """pow(a, b) is a ** b, with the operator's rules (docs/language.md sec. 5)."""
    try:
        return operate("**", a, b)
    except OperandError as err:
        raise ValueError(err.message) from None


BUILTINS = {
    "int": lambda v: _to_int(v),
    "float": lambda v: float(number(v)),
    "round": _round,
    "ceil": lambda v: math.ceil(number(v)),
    "floor": lambda v: math.floor(number(v)),
    "abs": lambda v: abs(number(v)),
    "min": _minmax(min),
    "max": _minmax(max),
    "sum": lambda v: sum(number(x) for x in _seq(v, "sum")),
    "len": lambda v: len(_seq(v, "len")),
    "range": _range,
    "enumerate": _enumerate,
    "zip": _zip,
    "make_divisible": _make_divisible,
    "str": _str,
    "log": _log,
    "log2": lambda v: math.log2(_positive("log2", v)),
    "exp": _exp,
    "sqrt": _sqrt,
    "pow": _pow,
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
    "log": "log(x[, base]): natural logarithm (or to `base`) of x > 0, a float",
    "log2": "log2(x): base-2 logarithm of x > 0, a float",
    "exp": "exp(x): e ** x, a float",
    "sqrt": "sqrt(x): square root of x >= 0, a float",
    "pow": "pow(a, b): a ** b, with the rules of the ** operator",
}
# Functions that build layers but are not single ops (outputs: a network's named outputs).
TENSOR_FUNCTIONS = ("split", "activation", "outputs")


def cost(*values, per_element: int = 1) -> int:
    """The work of a call or operator on `values` (its arguments and its result), in list
    elements: every builtin and operator is linear in the lists it reads and builds. A
    layer's list of input tensors costs LAYER_INPUT_WORK an element (graph edges, shapes)."""
    return sum(1 + per_element * measure(v)[0] for v in values)


LAYER_INPUT_WORK = 50
CONSTANT_TIME = ("len",)  # builtins whose work does not grow with their list argument


def call_cost(f: str, args) -> int:
    return len(args) if f in CONSTANT_TIME else cost(*args)


class OperandError(ValueError):
    """An operator error; `side` ("left", "right" or None) says which operand to point at."""

    def __init__(self, message: str, side: str | None = None):
        super().__init__(message)
        self.message, self.side = message, side


def operate(op: str, a, b):
    """A binary operator (not `and`/`or`) on two evaluated non-tensor values."""
    if op in ("in", "not in"):
        # membership by `==` (1 in [1.0] is true, "1" in [1] is not); a substring of a string
        if isinstance(b, tuple):
            found = any(operate("==", a, x) for x in b)
        elif isinstance(b, str):
            if not isinstance(a, str):
                raise OperandError(f"`{op}` a string needs a string on its left, not "
                                   f"{type_name(a)}", "left")
            found = a in b
        else:
            raise OperandError(f"`{op}` needs a list or a string on its right, not "
                               f"{type_name(b)}", "right")
        return found if op == "in" else not found
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
        (sa, da), (sb, db) = measure(a), measure(b)
        return _built(lambda: a + b, sa + sb, max(da, db, 1))
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > limits.MAX_STRING:
            raise OperandError(f"string longer than {limits.MAX_STRING} characters")
        return a + b
    if op == "*" and isinstance(a, tuple) and type_name(b) == "int":
        sa, da = measure(a)
        n = max(b, 0)
        return _built(lambda: a * n, sa * n, max(da, 1))
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
            raise OperandError(f"exponent {show(y)} is out of range", "right")
        try:
            r = x ** y
        except OverflowError:  # a float power: Python's message is "(34, 'Numerical ...')"
            raise OperandError("number overflow: the result is too large for a float") from None
        if isinstance(r, complex):
            raise OperandError("fractional power of a negative number")
    else:  # pragma: no cover
        raise AssertionError(op)
    try:
        return check_int(r)
    except OverflowError as err:
        raise OperandError(str(err)) from None


def _built(build, size: int, depth: int) -> ListValue:
    """The result of `+` or `*` on lists, checked before `build()` makes it; size and depth
    are known from the operands, so nothing is rescanned."""
    try:
        list_cost(size, depth)
    except ValueError as err:
        raise OperandError(str(err)) from None
    out = ListValue(build())
    out.size, out.depth = size, depth
    return out
