""".arch expressions as Python source, for the constructors of generated block classes.

`translate(expr, scope)` writes an expression of a block body (compiler/_syntax.py) as
Python text in the generated class's `__init__`, where the block's parameters and locals
are Python variables of the same names. It returns None where the Python text would not
mean exactly what the .arch expression meant; the caller then falls back to the value
itself. Only constructs whose Python semantics equal archc's are written:

    numbers, strings, booleans        repr of the value
    lists                             tuples (immutable, and `+` / `*` / indexing agree)
    + - * / // % ** and or not < ...  the same operators (archc implements them with Python's)
    == !=                             only between operands of one kind (archc's `1 == true`
                                      is false, Python's is true)
    if c then a else b                (a if c else b)
    int float round abs min max sum len   the builtins of the same name
    ceil floor log log2 exp sqrt      math.ceil, math.floor, math.log, ...
    pow                               pow (archc's pow(a, b) is a ** b, as Python's)
    make_divisible                    a helper with archc's code, emitted when used
    x.channels                        the input's channel count (a constructor argument)

Anything else (str(), range(), zip(), .height/.width/.shape, tensors) is None.
"""
from __future__ import annotations

import keyword
import math

from archc.compiler import _syntax as S

# archc builtin -> (Python callable text, module it needs or None)
FUNCTIONS = {
    "int": ("int", None), "float": ("float", None), "round": ("round", None),
    "abs": ("abs", None), "min": ("min", None), "max": ("max", None), "sum": ("sum", None),
    "len": ("len", None), "ceil": ("math.ceil", "math"), "floor": ("math.floor", "math"),
    "log": ("math.log", "math"), "log2": ("math.log2", "math"), "exp": ("math.exp", "math"),
    "sqrt": ("math.sqrt", "math"), "pow": ("pow", None),
    "make_divisible": ("make_divisible", "make_divisible"),
}

MAKE_DIVISIBLE = '''
def make_divisible(v, divisor=8, min_value=None):
    """The MobileNet channel rounding rule (archc's make_divisible builtin)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v
'''

# Python precedence of the operators we write (higher binds tighter).
_PREC = {"if": 1, "or": 2, "and": 3, "not": 4, "cmp": 5, "+": 6, "-": 6, "*": 7, "/": 7,
         "//": 7, "%": 7, "neg": 8, "**": 9, "atom": 10}
_CMP = {"==", "!=", "<", "<=", ">", ">="}


def literal(v) -> str | None:
    """Python source for an archc value without tensors; None for anything else."""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, str):
        return repr(v) if v.isprintable() else None
    if isinstance(v, tuple):
        items = [literal(x) for x in v]
        if any(i is None for i in items):
            return None
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return None


def kind(v) -> str:
    """The comparison kind of a value: number, bool, string, list or other."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, tuple):
        return "list"
    return "other"


class Scope:
    """What a translation may refer to: archc name -> (Python text or None, value, ...),
    the value being the variable's archc value (its kind decides == and !=); `channels`
    maps a tensor value to the Python text of its channel count, or None."""

    def __init__(self, names: dict, channels):
        self.names = names          # archc name -> (python text | None, value)
        self.channels = channels    # tensor node -> python text | None
        self.needs: set = set()     # helpers used: "math", "make_divisible"


def translate(e, scope: Scope) -> str | None:
    r = _tr(e, scope)
    if r is None:
        return None
    if r[2] is not _NO:     # a constant: its value, evaluated by archc's own rules
        return literal(r[2])
    return r[0]


_NO = object()   # "not a constant"


def _fold(make):
    """The constant value of a sub-expression whose parts are constants (evaluated with the
    compiler's own builtins and operators), or _NO."""
    try:
        v = make()
    except Exception:  # noqa: BLE001 - an error here means: not folded (archc evaluated it)
        return _NO
    return v if literal(v) is not None else _NO


def _wrap(r, prec):
    text, p = r[0], r[1]
    return f"({text})" if p < prec else text


def _const(v, prec=None):
    t = literal(v)
    return (t, _PREC["neg"] if t.startswith("-") else _PREC["atom"], v)


def _tr(e, scope):  # -> (text, precedence, constant value or _NO) | None
    from archc.compiler import _builtins as B
    if isinstance(e, S.Literal):
        return None if literal(e.value) is None else _const(e.value)
    if isinstance(e, S.Var):
        entry = scope.names.get(e.name)
        if entry is None or entry[0] is None:
            return None
        if len(entry) > 2 and entry[2] and literal(entry[1]) is not None:
            return _const(entry[1])
        return (entry[0], _PREC["atom"], _NO)
    if isinstance(e, S.ListLit):
        items = [_tr(i, scope) for i in e.items]
        if any(i is None for i in items):
            return None
        if all(i[2] is not _NO for i in items):
            return _const(tuple(i[2] for i in items))
        body = ", ".join(_wrap(i, _PREC["if"] + 1) for i in items)
        return ("(" + body + ("," if len(items) == 1 else "") + ")", _PREC["atom"], _NO)
    if isinstance(e, S.Index):
        obj, idx = _tr(e.obj, scope), _tr(e.index, scope)
        if obj is None or idx is None:
            return None
        if obj[2] is not _NO and idx[2] is not _NO:
            v = _fold(lambda: obj[2][idx[2]])
            if v is not _NO:
                return _const(v)
        return (f"{_wrap(obj, _PREC['atom'])}[{idx[0]}]", _PREC["atom"], _NO)
    if isinstance(e, S.Slice):   # a constant part of a constant list; else a hole
        parts = [_tr(e.obj, scope)] + [("None", _PREC["atom"], None) if b is None else
                                       _tr(b, scope) for b in (e.start, e.stop)]
        if any(p is None or p[2] is _NO for p in parts):
            return None
        v = _fold(lambda: parts[0][2][parts[1][2]:parts[2][2]])
        return None if v is _NO else _const(v)
    if isinstance(e, S.Attr):
        if e.name == "channels" and isinstance(e.obj, S.Var):
            entry = scope.names.get(e.obj.name)
            text = None if entry is None else scope.channels(entry[1])
            return None if text is None else (text, _PREC["atom"], _NO)
        return None
    if isinstance(e, S.UnaryOp):
        a = _tr(e.operand, scope)
        if a is None:
            return None
        if a[2] is not _NO:
            v = _fold(lambda: (not a[2]) if e.op == "not" else B.check_int(-B.number(a[2])))
            if v is not _NO and (e.op == "not" or not isinstance(a[2], bool)):
                return _const(v)
        if e.op == "not":
            return (f"not {_wrap(a, _PREC['not'])}", _PREC["not"], _NO)
        return (f"-{_wrap(a, _PREC['neg'])}", _PREC["neg"], _NO)
    if isinstance(e, S.IfExpr):
        c = _tr(e.cond, scope)
        if c is not None and isinstance(c[2], bool):
            return _tr(e.then if c[2] else e.orelse, scope)   # a constant condition
        a, b = _tr(e.then, scope), _tr(e.orelse, scope)
        if c is None or a is None or b is None:
            return None
        return (f"{_wrap(a, _PREC['if'] + 1)} if {_wrap(c, _PREC['if'] + 1)} else "
                f"{_wrap(b, _PREC['if'])}", _PREC["if"], _NO)
    if isinstance(e, S.BinOp):
        return _binop(e, scope)
    if isinstance(e, S.Call):
        if e.func not in FUNCTIONS or e.label is not None:
            return None
        args = [_tr(a, scope) for a in e.args]
        kwargs = [(k.name, _tr(k.value, scope)) for k in e.kwargs]
        if any(a is None for a in args) or any(v is None for _, v in kwargs):
            return None
        if all(a[2] is not _NO for a in args) and all(v[2] is not _NO for _, v in kwargs):
            v = _fold(lambda: B.check_int(B.BUILTINS[e.func](
                *[a[2] for a in args], **{k: x[2] for k, x in kwargs})))
            if v is not _NO:
                return _const(v)
        fn, need = FUNCTIONS[e.func]
        if need:
            scope.needs.add(need)
        parts = [a[0] for a in args] + [f"{k}={v[0]}" for k, v in kwargs]
        return (f"{fn}({', '.join(parts)})", _PREC["atom"], _NO)
    return None


def _binop(e, scope):
    from archc.compiler import _builtins as B
    op = e.op
    a, b = _tr(e.left, scope), _tr(e.right, scope)
    if a is None or b is None:
        return None
    if op in ("and", "or") and isinstance(a[2], bool):
        if (op == "and") != a[2]:   # false and ..., true or ...: the left decides
            return a
        return b if isinstance(b[2], bool) or b[2] is _NO else None
    if a[2] is not _NO and b[2] is not _NO and op not in ("and", "or"):
        v = _fold(lambda: B.operate(op, a[2], b[2]))
        if v is not _NO:
            return _const(v)
    one, zero = _int_const(a, 1) or _int_const(b, 1), _int_const(a, 0) or _int_const(b, 0)
    if op == "*" and one:                           # 1 * x is x (the caller checks it)
        return b if _int_const(a, 1) else a
    if op in ("+", "-") and _int_const(b, 0) or op == "+" and _int_const(a, 0):
        return b if _int_const(a, 0) and op == "+" else a
    if op == "*" and zero:                          # 0 * n is 0 for the integer n it holds
        return _const(0)
    if op in ("==", "!="):
        ka, kb = _kind_of(e.left, scope), _kind_of(e.right, scope)
        if ka is None or ka != kb or ka == "other":
            return None
    if op in _CMP:
        p = _PREC["cmp"]
        return (f"{_wrap(a, p + 1)} {op} {_wrap(b, p + 1)}", p, _NO)
    if op in ("and", "or"):
        p = _PREC[op]
        return (f"{_wrap(a, p)} {op} {_wrap(b, p + 1)}", p, _NO)
    p = _PREC[op]
    if op == "**":  # right-associative
        return (f"{_wrap(a, p + 1)} ** {_wrap(b, p)}", p, _NO)
    return (f"{_wrap(a, p)} {op} {_wrap(b, p + 1)}", p, _NO)


def _int_const(r, n: int) -> bool:
    return type(r[2]) is int and r[2] == n


def _kind_of(e, scope) -> str | None:
    """The kind of an expression's value where it is evident without evaluating it."""
    if isinstance(e, S.Literal):
        return kind(e.value)
    if isinstance(e, S.Var):
        entry = scope.names.get(e.name)
        return None if entry is None else kind(entry[1])
    if isinstance(e, S.ListLit):
        return "list"
    if isinstance(e, S.Attr) and e.name == "channels":
        return "number"
    if isinstance(e, S.BinOp):
        if e.op in _CMP or e.op in ("and", "or"):
            return "bool"
        ka, kb = _kind_of(e.left, scope), _kind_of(e.right, scope)
        if ka == kb == "number":
            return "number"
        return None
    if isinstance(e, S.UnaryOp):
        return "bool" if e.op == "not" else _kind_of(e.operand, scope)
    if isinstance(e, S.Call) and e.func in ("int", "float", "round", "abs", "len", "ceil",
                                            "floor", "make_divisible", "sum", "log", "log2",
                                            "exp", "sqrt", "pow"):
        return "number"
    return None


def identifier(name: str) -> str:
    """A Python identifier for an archc name (keywords get a trailing '_')."""
    while keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


# ---- checking a translation: Python's meaning of the text, by a small evaluator ----------------
class _Unsafe(Exception):
    pass


_SAFE_CALLS = {"int": int, "float": float, "round": round, "abs": abs, "min": min, "max": max,
               "sum": sum, "len": len, "math.ceil": math.ceil, "math.floor": math.floor,
               "math.log": math.log, "math.log2": math.log2, "math.exp": math.exp,
               "math.sqrt": math.sqrt, "pow": lambda a, b: _checked_pow(a, b)}


def _checked_pow(a, b):
    if not isinstance(b, (int, float)) or abs(b) > 64:   # as ast.Pow below
        raise _Unsafe("pow")
    return pow(a, b)


def python_value(text: str, env: dict):
    """The value Python gives `text` (one of our translations) with variables `env`,
    computed without executing anything: an AST walk over the constructs translate()
    writes, each with Python's semantics. Raises ValueError for anything else."""
    import ast
    import operator as op
    bins = {ast.Add: op.add, ast.Sub: op.sub, ast.Mult: op.mul, ast.Div: op.truediv,
            ast.FloorDiv: op.floordiv, ast.Mod: op.mod, ast.Pow: op.pow}
    cmps = {ast.Eq: op.eq, ast.NotEq: op.ne, ast.Lt: op.lt, ast.LtE: op.le, ast.Gt: op.gt,
            ast.GtE: op.ge}
    from archc.compiler import _builtins as B

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float, str, bool)):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in env:
                raise _Unsafe(n.id)
            return env[n.id]
        if isinstance(n, ast.Tuple):
            return tuple(ev(e) for e in n.elts)
        if isinstance(n, ast.BinOp) and type(n.op) in bins:
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow) and (not isinstance(b, (int, float)) or abs(b) > 64):
                raise _Unsafe("**")
            if isinstance(n.op, ast.Mult) and isinstance(a, tuple) and b > 10_000:
                raise _Unsafe("*")
            return bins[type(n.op)](a, b)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.Not)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else not v
        if isinstance(n, ast.BoolOp):
            v = ev(n.values[0])
            for e in n.values[1:]:
                if isinstance(n.op, ast.And) and not v or isinstance(n.op, ast.Or) and v:
                    return v
                v = ev(e)
            return v
        if isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]) in cmps:
            return cmps[type(n.ops[0])](ev(n.left), ev(n.comparators[0]))
        if isinstance(n, ast.IfExp):
            return ev(n.body) if ev(n.test) else ev(n.orelse)
        if isinstance(n, ast.Subscript):
            return ev(n.value)[ev(n.slice)]
        if isinstance(n, ast.Call):
            f = ast.unparse(n.func)
            fn = _SAFE_CALLS.get(f) or (B.BUILTINS["make_divisible"]
                                        if f == "make_divisible" else None)
            if fn is None:
                raise _Unsafe(f)
            return fn(*[ev(a) for a in n.args], **{k.arg: ev(k.value) for k in n.keywords})
        raise _Unsafe(type(n).__name__)

    try:
        return ev(ast.parse(text, mode="eval").body)
    except (_Unsafe, SyntaxError, TypeError, ValueError, ArithmeticError, IndexError,
            RecursionError) as err:
        raise ValueError(f"cannot check {text!r}: {err}") from None


def same_value(a, b) -> bool:
    """archc's value `a` and Python's `b` are the same (type and value; lists as tuples)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
