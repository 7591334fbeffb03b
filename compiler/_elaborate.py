"""Elaboration: evaluate a network definition into the graph IR.

Walks the AST (compiler/_syntax.py) with an environment of values, expands block calls
and loops, checks every primitive call against its op's signature, and adds one IR node
per primitive, computing its output shape with the op's own shape rule (compiler/ops.py)
as it goes. Every failure is an ArchError positioned at the offending source text.
"""
from __future__ import annotations

import math
import sys

import networkx as nx

from . import _syntax as S
from . import limits, ops
from ._values import Tensor, check_int, coerce, show, type_name
from .errors import ArchError, Span, did_you_mean
from .ir import Network


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Names:
    """Hierarchical naming: one instance per block call or labelled loop iteration."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.used: dict[str, Span] = {}
        self.counters: dict[str, int] = {}

    def claim(self, label: str | None, base: str, span: Span) -> str:
        if label is None:
            k = self.counters.get(base, 0)
            while True:
                k += 1
                label = base if base == "input" and k == 1 else f"{base}_{k}"
                if label not in self.used:
                    break
            self.counters[base] = k
        elif label in self.used:
            prev = self.used[label]
            raise ArchError(
                f"the name '{self.prefix}{label}' is already used (at {prev})", span,
                hint="names must be unique within a block; inside a loop, label the loop "
                     "(`stage: for ...`) so that each iteration gets its own scope")
        self.used[label] = span
        return label

    def child(self, name: str) -> "_Names":
        return _Names(f"{self.prefix}{name}.")


# -------------------------------------------------------------------------------------
# builtin (non-layer) functions.  Each takes evaluated positional and keyword values.
def _num(v, what="argument"):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number, got {type_name(v)} {show(v)}")
    return v


def _to_int(v):
    if isinstance(v, bool):
        raise TypeError("int() of a bool is not allowed")
    if isinstance(v, str):
        raise TypeError(f"int() takes a number, got string {show(v)}")
    v = _num(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"int() of {v}")
    return int(v)


def _make_divisible(v, divisor=8, min_value=None):
    """The MobileNet/EfficientNet channel rounding rule (as in torchvision)."""
    v, divisor = _num(v), _num(divisor, "divisor")
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
            _num(v)
        return fn(vals)
    return f


BUILTINS = {
    "int": lambda v: _to_int(v),
    "float": lambda v: float(_num(v)),
    "round": lambda v, nd=None: round(_num(v)) if nd is None else round(_num(v), nd),
    "ceil": lambda v: math.ceil(_num(v)),
    "floor": lambda v: math.floor(_num(v)),
    "abs": lambda v: abs(_num(v)),
    "min": _minmax(min),
    "max": _minmax(max),
    "sum": lambda v: sum(_num(x) for x in _seq(v, "sum")),
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


# -------------------------------------------------------------------------------------
class Elaborator:
    def __init__(self, blocks: dict, sources: dict):
        self.blocks = blocks          # name -> S.Definition (kind "block")
        self.sources = sources
        self.graph = nx.DiGraph()
        self.steps = 0
        self.stack: list[tuple[str, Span]] = []
        self.input_node: str | None = None

    # ---- entry ----
    def network(self, d: S.Definition, overrides: dict) -> Network:
        unknown = [n for n in overrides if n not in {p.name for p in d.params}]
        for name in unknown:
            _, span = overrides[name]
            if span.file == "<-D>":  # point at the name in `-D name=value`
                span = Span("<-D>", 1, 4, 1, 4 + len(name))
            raise ArchError(f"network '{d.name}' has no parameter '{name}'", span,
                            hint=did_you_mean(name, [p.name for p in d.params])
                            or "parameters: " + ", ".join(p.name for p in d.params))
        env: dict = {}
        for p in d.params:
            if p.name in overrides:
                value, span = overrides[p.name]
            elif p.default is not None:
                value, span = self.eval(p.default, env, None), p.default.span
            else:
                raise ArchError(f"network parameter '{p.name}' has no default and no value", p.span,
                                hint=f"give one with -D {p.name}=...")
            env[p.name] = self._coerce(value, p.type, span, f"parameter '{p.name}'")
        params = dict(env)
        names = _Names("")
        self.stack.append((d.name, d.span))
        try:
            self._body(d.body, env, names)
        except _Return as r:
            out = r.value
        else:
            raise ArchError(f"network '{d.name}' ends without `return`", _closing_brace(d.span),
                            hint="end the body with `return <output tensor>`")
        if not isinstance(out, Tensor):
            raise ArchError(f"network '{d.name}' must return a tensor, not {type_name(out)}", d.span)
        if self.input_node is None:
            raise ArchError(f"network '{d.name}' has no input", d.span,
                            hint="declare it: x = input(3, 32, 32)")
        return Network(name=d.name, file=d.file, params=params, graph=self.graph,
                       input=self.input_node, output=out.node, sources=self.sources)

    # ---- statements ----
    def _tick(self, span: Span):
        self.steps += 1
        if self.steps > limits.MAX_STEPS:
            raise ArchError(f"evaluation takes more than {limits.MAX_STEPS} steps", span,
                            hint="a loop is probably far larger than intended")

    def _body(self, stmts, env, names):
        for st in stmts:
            self._tick(st.span)
            self._stmt(st, env, names)

    def _stmt(self, st, env, names):
        if isinstance(st, S.Assign):
            value = self.eval(st.value, env, names)
            if len(st.targets) == 1:
                env[st.targets[0]] = value
            else:
                if not isinstance(value, tuple) or len(value) != len(st.targets):
                    n = len(value) if isinstance(value, tuple) else f"a {type_name(value)}"
                    raise ArchError(f"cannot unpack {n} into {len(st.targets)} names", st.span)
                env.update(zip(st.targets, value))
        elif isinstance(st, S.Return):
            raise _Return(self.eval(st.value, env, names))
        elif isinstance(st, S.For):
            self._for(st, env, names)
        elif isinstance(st, S.If):
            for cond, body in st.branches:
                if self._bool(self.eval(cond, env, names), cond.span, "an `if` condition"):
                    self._body(body, env, names)
                    return
            if st.orelse is not None:
                self._body(st.orelse, env, names)
        elif isinstance(st, S.Assert):
            ok = self._bool(self.eval(st.cond, env, names), st.cond.span, "an assertion")
            if not ok:
                raise ArchError(f"assertion failed: {st.message or 'condition is false'}", st.span)
        else:  # pragma: no cover - the parser builds only the statements above
            raise AssertionError(st)

    def _for(self, st: S.For, env, names):
        seq = self.eval(st.iterable, env, names)
        if not isinstance(seq, tuple):
            raise ArchError(f"`for` needs a list, got {type_name(seq)} {show(seq)}", st.iterable.span,
                            hint="use range(n) to loop n times")
        for k, item in enumerate(seq, start=1):
            self._tick(st.span)
            if len(st.names) == 1:
                env[st.names[0]] = item
            else:
                if not isinstance(item, tuple) or len(item) != len(st.names):
                    raise ArchError(f"cannot unpack {show(item)} into {len(st.names)} loop variables",
                                    st.iterable.span)
                env.update(zip(st.names, item))
            inner = names
            if st.label is not None:
                inner = names.child(names.claim(f"{st.label}{k}", "", st.span))
            self._body(st.body, env, inner)

    # ---- expressions ----
    def _bool(self, v, span, what):
        if not isinstance(v, bool):
            raise ArchError(f"{what} must be true or false, got {type_name(v)} {show(v)}", span)
        return v

    def eval(self, e, env, names):
        try:
            return self._eval(e, env, names)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as err:
            raise ArchError(str(err), e.span) from None

    def _eval(self, e, env, names):
        if isinstance(e, S.Literal):
            return e.value
        if isinstance(e, S.Var):
            if e.name in env:
                return env[e.name]
            hint = did_you_mean(e.name, env)
            if e.name in ops.REGISTRY or e.name in self.blocks or e.name in BUILTINS:
                hint = f"'{e.name}' is a function; call it: {e.name}(...)"
            elif e.name in ("True", "False", "None", "TRUE", "FALSE", "NONE"):
                hint = f"write it in lower case: {e.name.lower()}"
            raise ArchError(f"unknown name '{e.name}'", e.span, hint=hint)
        if isinstance(e, S.ListLit):
            items = tuple(self.eval(i, env, names) for i in e.items)
            return items
        if isinstance(e, S.Index):
            obj = self.eval(e.obj, env, names)
            idx = self.eval(e.index, env, names)
            if not isinstance(obj, tuple):
                raise ArchError(f"cannot index a {type_name(obj)}", e.obj.span)
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise ArchError(f"list index must be an int, got {type_name(idx)}", e.index.span)
            if not -len(obj) <= idx < len(obj):
                raise ArchError(f"index {idx} is out of range for a list of {len(obj)}", e.index.span)
            return obj[idx]
        if isinstance(e, S.Attr):
            obj = self.eval(e.obj, env, names)
            if isinstance(obj, Tensor) and e.name in ("channels", "height", "width"):
                return getattr(obj, e.name)
            if isinstance(obj, Tensor) and e.name == "shape":
                return obj.shape
            hint = ("tensors have .channels, .height, .width and .shape" if isinstance(obj, Tensor)
                    else None)
            raise ArchError(f"{type_name(obj)} has no attribute '{e.name}'", e.span,
                            hint=hint or did_you_mean(e.name, ("channels", "height", "width", "shape")))
        if isinstance(e, S.BinOp):
            return self._binop(e, env, names)
        if isinstance(e, S.UnaryOp):
            v = self.eval(e.operand, env, names)
            if e.op == "not":
                return not self._bool(v, e.operand.span, "the operand of `not`")
            return check_int(-_num(v, "the operand of '-'"))
        if isinstance(e, S.IfExpr):
            c = self._bool(self.eval(e.cond, env, names), e.cond.span, "an `if` condition")
            return self.eval(e.then if c else e.orelse, env, names)
        if isinstance(e, S.Call):
            return self._call(e, env, names)
        raise AssertionError(e)  # pragma: no cover

    def _binop(self, e: S.BinOp, env, names):
        op = e.op
        if op in ("and", "or"):
            left = self._bool(self.eval(e.left, env, names), e.left.span, f"the operand of `{op}`")
            if (op == "and" and not left) or (op == "or" and left):
                return left
            return self._bool(self.eval(e.right, env, names), e.right.span, f"the operand of `{op}`")
        a = self.eval(e.left, env, names)
        b = self.eval(e.right, env, names)
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            if op in ("+", "*") and isinstance(a, Tensor) and isinstance(b, Tensor):
                return self._apply_op(ops.get("add" if op == "+" else "mul"), [a, b], {}, None, e, names)
            raise ArchError(f"operator '{op}' is not defined for {type_name(a)} and {type_name(b)}",
                            e.span, hint="tensors support + (add) and * (channel-wise mul) only")
        if op in ("==", "!="):
            same = a == b and (type_name(a) == type_name(b) or
                               {type_name(a), type_name(b)} <= {"int", "float"})
            return same if op == "==" else not same
        if op in ("<", "<=", ">", ">="):
            if not ((isinstance(a, str) and isinstance(b, str)) or
                    (type_name(a) in ("int", "float") and type_name(b) in ("int", "float"))):
                raise ArchError(f"cannot compare {type_name(a)} with {type_name(b)}", e.span)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
            if len(a) + len(b) > limits.MAX_LIST:
                raise ArchError(f"list longer than {limits.MAX_LIST} elements", e.span)
            return a + b
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > limits.MAX_STRING:
                raise ArchError(f"string longer than {limits.MAX_STRING} characters", e.span)
            return a + b
        if op == "*" and isinstance(a, tuple) and type_name(b) == "int":
            if len(a) * max(b, 0) > limits.MAX_LIST:
                raise ArchError(f"list longer than {limits.MAX_LIST} elements", e.span)
            return a * b
        x = _num(a, f"the left operand of '{op}'")
        y = _num(b, f"the right operand of '{op}'")
        if op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        elif op == "*":
            r = x * y
        elif op == "/":
            if y == 0:
                raise ArchError("division by zero", e.right.span)
            r = x / y
        elif op == "//":
            if y == 0:
                raise ArchError("division by zero", e.right.span)
            r = x // y
        elif op == "%":
            if y == 0:
                raise ArchError("modulo by zero", e.right.span)
            r = x % y
        elif op == "**":
            if abs(y) > 64 or (x == 0 and y < 0):
                raise ArchError(f"exponent {y} is out of range", e.right.span)
            r = x ** y
            if isinstance(r, complex):
                raise ArchError("fractional power of a negative number", e.span)
        else:  # pragma: no cover
            raise AssertionError(op)
        if isinstance(r, float) and not math.isfinite(r):
            raise ArchError("number overflow", e.span)
        return check_int(r)

    # ---- calls ----
    def _label(self, e: S.Call, env, names):
        """The call's label as a string (templates evaluated), checked to be a name."""
        lab = e.label
        if lab is None or isinstance(lab, str):
            text = lab
        else:
            out = []
            for part in lab.parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                try:
                    v = self._eval(part, env, names)
                except (ArchError, TypeError, ValueError) as err:
                    msg = err.message if isinstance(err, ArchError) else str(err)
                    raise ArchError(f"in label: {msg}", lab.span) from None
                if type_name(v) not in ("int", "string"):
                    raise ArchError(f"a label part must be an int or a string, got {type_name(v)}",
                                    lab.span)
                out.append(str(v))
            text = "".join(out)
        if text is not None and not text.isidentifier():
            raise ArchError(f"label '{text}' is not a valid name", e.span,
                            hint="labels are letters, digits and '_', not starting with a digit")
        return text

    def _call(self, e: S.Call, env, names):
        self._tick(e.span)
        f = e.func
        if f in ops.REGISTRY or f in TENSOR_FUNCTIONS:
            return self._layer_call(e, env, names)
        if f in self.blocks:
            return self._block_call(self.blocks[f], e, env, names)
        if f in BUILTINS:
            if e.label is not None:
                raise ArchError(f"'{f}' computes a value, not a layer; it cannot be labelled", e.span)
            args = [self.eval(a, env, names) for a in e.args]
            kwargs = {k.name: self.eval(k.value, env, names) for k in e.kwargs}
            try:
                return check_int(BUILTINS[f](*args, **kwargs))
            except TypeError as err:
                raise ArchError(f"{f}(): {err}".replace("<lambda>() ", ""), e.span,
                                hint=BUILTIN_DOCS[f]) from None
            except (ValueError, OverflowError) as err:
                raise ArchError(f"{f}(): {err}", e.span, hint=BUILTIN_DOCS[f]) from None
        known = list(ops.REGISTRY) + list(self.blocks) + list(BUILTINS) + list(TENSOR_FUNCTIONS)
        raise ArchError(f"unknown layer, block or function '{f}'", e.func_span,
                        hint=did_you_mean(f, known) or
                        "define it with `block`, or import it: import \"std/....arch\"")

    def _layer_call(self, e: S.Call, env, names):
        f = e.func
        args = [(self.eval(a, env, names), a.span) for a in e.args]
        kwargs = {k.name: (self.eval(k.value, env, names), k.span) for k in e.kwargs}
        if f == "input":
            if self.stack[-1][0] != self.stack[0][0] or len(self.stack) != 1:
                raise ArchError("input(...) may only appear in a network body", e.span,
                                hint="blocks receive tensors as parameters")
            if self.input_node is not None:
                raise ArchError("the network already has an input", e.span,
                                hint="archc networks have one input")
        if f == "split":
            return self._split(e, args, kwargs, env, names)
        if f == "activation":
            sig = {"x": None, "kind": None}
            bound = self._bind_simple("activation", sig, args, kwargs, e)
            kind, kspan = bound["kind"]
            if kind not in ops.ACTIVATIONS:
                raise ArchError(f"unknown activation {show(kind)}", kspan,
                                hint=did_you_mean(str(kind), ops.ACTIVATIONS)
                                or "activations: " + ", ".join(ops.ACTIVATIONS))
            f = kind
            args, kwargs = [bound["x"]], {}
        op = ops.get(f)
        attrs, tensors = self._bind_op(op, args, kwargs, e)
        return self._apply_op(op, tensors, attrs, self._label(e, env, names), e, names)

    def _bind_simple(self, fname, sig, args, kwargs, e):
        bound = {}
        keys = list(sig)
        if len(args) > len(keys):
            raise ArchError(f"{fname}() takes {len(keys)} arguments, got {len(args)}", e.span)
        for k, a in zip(keys, args):
            bound[k] = a
        for k, v in kwargs.items():
            if k not in sig:
                raise ArchError(f"{fname}() has no argument '{k}'", v[1], hint=did_you_mean(k, keys))
            if k in bound:
                raise ArchError(f"{fname}() got '{k}' twice", v[1])
            bound[k] = v
        for k in keys:
            if k not in bound:
                raise ArchError(f"{fname}() is missing '{k}'", e.span,
                                hint=f"{fname}({', '.join(keys)})")
        return bound

    def _split(self, e, args, kwargs, env, names):
        bound = self._bind_simple("split", {"x": None, "sizes": None}, args, kwargs, e)
        x, xspan = bound["x"]
        sizes, sspan = bound["sizes"]
        if not isinstance(x, Tensor):
            raise ArchError(f"split() takes a tensor first, got {type_name(x)}", xspan)
        if isinstance(sizes, int) and not isinstance(sizes, bool):
            if sizes < 1 or x.channels % sizes:
                raise ArchError(f"cannot split {x.channels} channels into {sizes} equal parts", sspan)
            sizes = (x.channels // sizes,) * sizes
        if not isinstance(sizes, tuple) or not sizes or not all(
                type_name(s) == "int" and s > 0 for s in sizes):
            raise ArchError("split() sizes must be a positive int (equal parts) or a list of "
                            "positive ints", sspan)
        if sum(sizes) != x.channels:
            raise ArchError(f"split() sizes {show(sizes)} add up to {sum(sizes)}, but the input has "
                            f"{x.channels} channels", sspan)
        base = names.claim(self._label(e, env, names), "split", e.span)
        inner = names.child(base)
        out, start = [], 0
        for i, s in enumerate(sizes):
            attrs = {"start": start, "stop": start + s}
            out.append(self._apply_op(ops.get("slice"), [x], attrs, str(i), e, inner))
            start += s
        return tuple(out)

    def _convert(self, arg: ops.Arg, v, span, fname):
        kind = arg.kind
        where = f"{fname}(): argument '{arg.name}'"

        def bad(expected, hint=None):
            raise ArchError(f"{where} must be {expected}, got {type_name(v)} {show(v)}", span,
                            hint=hint)

        def as_int(x):
            if isinstance(x, float):
                bad("an integer", "channel counts and sizes must be whole numbers; choose the "
                                  "rounding explicitly with int(...), round(...) or ceil(...)")
            if isinstance(x, bool) or not isinstance(x, int):
                bad("an integer")
            if arg.minimum is not None and x < arg.minimum:
                raise ArchError(f"{where} must be at least {int(arg.minimum)}, got {x}", span)
            return x

        if v is None and arg.default is None:
            return None
        if kind == "tensor":
            if not isinstance(v, Tensor):
                bad("a tensor")
            return v
        if kind == "int":
            return as_int(v)
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                bad("a number")
            if arg.minimum is not None and v < arg.minimum:
                raise ArchError(f"{where} must be at least {arg.minimum}, got {v}", span)
            return float(v)
        if kind == "bool":
            if not isinstance(v, bool):
                bad("true or false")
            return v
        if kind == "string":
            if not isinstance(v, str):
                bad("a string")
            if arg.choices and v not in arg.choices:
                raise ArchError(f"{where} must be one of {', '.join(map(show, arg.choices))}", span)
            return v
        if kind in ("pair", "padding"):
            if kind == "padding" and v == "same":
                return "same"
            if isinstance(v, tuple):
                if len(v) != 2:
                    bad("an integer or a list [h, w]")
                return (as_int(v[0]), as_int(v[1]))
            if isinstance(v, str):
                bad("an integer, [h, w]" + (' or "same"' if kind == "padding" else ""))
            x = as_int(v)
            return (x, x)
        raise AssertionError(kind)  # pragma: no cover

    def _bind_op(self, op: ops.Op, args, kwargs, e: S.Call):
        spec = op.args
        names_ = [a.name for a in spec]
        variadic = spec and spec[0].kind == "tensors"
        bound: dict = {}
        if variadic:
            vals = args
            if len(args) == 1 and isinstance(args[0][0], tuple):
                vals = [(t, args[0][1]) for t in args[0][0]]
            if not vals:
                raise ArchError(f"{op.name}() needs at least one tensor", e.span)
            for t, sp in vals:
                if not isinstance(t, Tensor):
                    raise ArchError(f"{op.name}() takes tensors, got {type_name(t)} {show(t)}", sp)
            bound[spec[0].name] = (tuple(t for t, _ in vals), e.span)
            rest_spec = spec[1:]
        else:
            if len(args) > len(spec):
                raise ArchError(f"{op.name}() takes at most {len(spec)} positional arguments, got "
                                f"{len(args)}", args[len(spec)][1], hint=self._signature(op))
            for a, v in zip(spec, args):
                bound[a.name] = v
            rest_spec = spec
        for k, v in kwargs.items():
            if k not in names_:
                raise ArchError(f"{op.name}() has no argument '{k}'", v[1],
                                hint=did_you_mean(k, names_) or self._signature(op))
            if k in bound:
                raise ArchError(f"{op.name}() got argument '{k}' twice", v[1])
            bound[k] = v
        attrs, tensors = {}, []
        for a in (spec if not variadic else spec[:1]) + (rest_spec if variadic else ()):
            if a.name not in bound:
                if a.default is ops.REQUIRED:
                    raise ArchError(f"{op.name}() is missing argument '{a.name}'", e.span,
                                    hint=self._signature(op))
                if a.kind in ("pair", "padding") and a.default is not None and a.default != "same":
                    attrs[a.name] = (a.default, a.default)
                else:
                    attrs[a.name] = a.default
                continue
            v, sp = bound[a.name]
            if a.kind == "tensors":
                tensors.extend(v)
            elif a.kind == "tensor":
                tensors.append(self._convert(a, v, sp, op.name))
            else:
                attrs[a.name] = self._convert(a, v, sp, op.name)
        self._arg_spans = {k: sp for k, (_, sp) in bound.items()}
        return attrs, tensors

    @staticmethod
    def _signature(op: ops.Op) -> str:
        parts = []
        for a in op.args:
            if a.kind == "tensors":
                parts.append(f"{a.name}...")
            elif a.default is ops.REQUIRED:
                parts.append(a.name)
            else:
                d = a.default
                parts.append(f"{a.name}={show(d)}")
        return f"{op.name}({', '.join(parts)})"

    def _apply_op(self, op: ops.Op, tensors, attrs, label, e, names):
        in_shapes = [t.shape for t in tensors]
        try:
            attrs = op.normalize(dict(attrs), in_shapes)
            shape = op.shape(in_shapes, attrs)
        except ops.OpError as err:
            span = getattr(self, "_arg_spans", {}).get(err.arg, e.span) if err.arg else e.span
            raise ArchError(err.message, span, hint=err.hint) from None
        for v in shape:
            check_int(v)
        name = names.prefix + names.claim(label, op.name, e.span)
        if self.graph.number_of_nodes() >= limits.MAX_NODES:
            raise ArchError(f"the network has more than {limits.MAX_NODES} layers", e.span)
        self.graph.add_node(name, op=op.name, attrs=attrs, inputs=tuple(t.node for t in tensors),
                            in_shapes=tuple(in_shapes), shape=tuple(shape), span=e.span)
        for t in tensors:
            self.graph.add_edge(t.node, name)
        if op.name == "input":
            self.input_node = name
        self._arg_spans = {}
        return Tensor(name, tuple(shape))

    def _block_call(self, d: S.Definition, e: S.Call, env, names):
        if any(n == d.name for n, _ in self.stack):
            chain = [n for n, _ in self.stack]
            chain = chain[chain.index(d.name):] + [d.name]
            how = "" if len(chain) == 2 else f" through {' -> '.join(chain)}"
            raise ArchError(f"block '{d.name}' calls itself{how} (recursion is not allowed)", e.span,
                            hint="repeat a block with a loop: for i in range(n) { ... }")
        if len(self.stack) >= limits.MAX_CALL_DEPTH:
            raise ArchError(f"blocks are nested more than {limits.MAX_CALL_DEPTH} deep", e.span)
        pnames = [p.name for p in d.params]
        if len(e.args) > len(d.params):
            raise ArchError(f"block '{d.name}' takes {len(d.params)} arguments, got {len(e.args)}",
                            e.args[len(d.params)].span, hint=self._block_signature(d))
        given = {}
        for p, a in zip(d.params, e.args):
            given[p.name] = (self.eval(a, env, names), a.span)
        for k in e.kwargs:
            if k.name not in pnames:
                raise ArchError(f"block '{d.name}' has no parameter '{k.name}'", k.span,
                                hint=did_you_mean(k.name, pnames) or self._block_signature(d))
            if k.name in given:
                raise ArchError(f"block '{d.name}' got parameter '{k.name}' twice", k.span)
            given[k.name] = (self.eval(k.value, env, names), k.span)
        local: dict = {}
        scope_name = names.claim(self._label(e, env, names), d.name, e.span)
        inner = names.child(scope_name)
        self.stack.append((d.name, e.span))
        try:
            for p in d.params:
                if p.name in given:
                    v, sp = given[p.name]
                elif p.default is not None:
                    v, sp = self.eval(p.default, local, inner), p.default.span
                else:
                    raise ArchError(f"block '{d.name}' is missing argument '{p.name}'", e.span,
                                    hint=self._block_signature(d))
                local[p.name] = self._coerce(v, p.type, sp, f"block '{d.name}' parameter '{p.name}'")
            try:
                self._body(d.body, local, inner)
            except _Return as r:
                return r.value
            raise ArchError(f"block '{d.name}' ends without `return`", _closing_brace(d.span),
                            hint="end the block with `return <tensor>`")
        except ArchError as err:
            if err.span is not None and err.span.file != e.span.file or (
                    err.span is not None and not _inside(err.span, e.span)):
                note = f"in block '{d.name}' called at {e.span}"
                if note not in err.notes and len(err.notes) < 8:
                    err.notes.append(note)
            raise
        finally:
            self.stack.pop()

    @staticmethod
    def _block_signature(d: S.Definition) -> str:
        return f"{d.name}({', '.join(f'{p.name}: {p.type}' for p in d.params)})"

    def _coerce(self, v, typ, span, what):
        try:
            return coerce(v, typ)
        except TypeError as err:
            hint = None
            if typ == "int" and isinstance(v, float):
                hint = "choose the rounding explicitly: int(...), round(...) or ceil(...)"
            raise ArchError(f"{what}: {err}", span, hint=hint) from None


def _closing_brace(span: Span) -> Span:
    """The final '}' of a definition whose span is `span` (its whole text)."""
    if span.end_line is None or span.end_column is None or span.end_column < 2:
        return span
    return Span(span.file, span.end_line, span.end_column - 1, span.end_line, span.end_column)


def _inside(inner: Span, outer: Span) -> bool:
    if inner.file != outer.file:
        return False
    end = (outer.end_line or outer.line, outer.end_column or outer.column)
    return (outer.line, outer.column) <= (inner.line, inner.column) <= end


def elaborate(network: S.Definition, blocks: dict, sources: dict, overrides: dict) -> Network:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        return Elaborator(blocks, sources).network(network, overrides)
    finally:
        sys.setrecursionlimit(old)
