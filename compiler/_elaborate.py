"""Elaboration: evaluate a network definition into the graph IR.

Walks the AST (compiler/_syntax.py) with an environment of values, expands block calls
and loops, binds every call to its signature (compiler/_binding.py), and adds one IR node
per primitive through the GraphBuilder (compiler/_graph.py), which computes its output
shape with the op's own rule. Statements and expressions are evaluated here, calls (layers,
builtins, blocks) in compiler/_elab_calls.py; builtin functions live in compiler/_builtins.py.
Every failure is an ArchError positioned at the offending source text.
"""
from __future__ import annotations

import sys

from . import _syntax as S
from . import limits, ops
from ._binding import coerce_param
from ._builtins import BUILTINS, OperandError, cost, number, operate
from ._elab_calls import Calls, Returned, closing_brace
from ._graph import GraphBuilder, Names
from ._values import Outputs, Tensor, check_int, make_list, show, type_name
from .errors import ArchError, Span, did_you_mean
from .ir import Network


class Elaborator(Calls):
    """Evaluates a network definition: statements and expressions here, calls in
    compiler/_elab_calls.py."""

    def __init__(self, blocks: dict, sources: dict):
        self.blocks = blocks          # name -> S.Definition (kind "block")
        self.sources = sources
        self.builder = GraphBuilder()
        self.steps = 0
        self.work = 0  # list elements built, compared or passed to calls (limits.MAX_WORK)
        self.stack: list[tuple[str, Span]] = []

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
        names = self.builder.root(d.name, d.span)
        env: dict = {}
        for p in d.params:
            if p.name in overrides:
                value, span = overrides[p.name]
            elif p.default is not None:
                value, span = self.eval(p.default, env, names), p.default.span
            else:
                raise ArchError(f"network parameter '{p.name}' has no default and no value", p.span,
                                hint=f"give one with -D {p.name}=...")
            env[p.name] = coerce_param(value, p.type, span, f"parameter '{p.name}'")
        params = dict(env)
        names.scope.args = dict(params)
        self.stack.append((d.name, d.span))
        try:
            self._body(d.body, env, names)
        except Returned as r:
            out = r.value
        else:
            raise ArchError(f"network '{d.name}' ends without `return`", closing_brace(d.span),
                            hint="end the body with `return <output tensor>`")
        if not isinstance(out, (Tensor, Outputs)):
            raise ArchError(f"network '{d.name}' must return a tensor or outputs(name=tensor, "
                            f"...), not {type_name(out)}", d.span)
        if self.builder.input_node is None:
            raise ArchError(f"network '{d.name}' has no input", d.span,
                            hint="declare it: x = input(3, 32, 32)")
        names.scope.output = out
        named = tuple((k, t.node) for k, t in out.items) if isinstance(out, Outputs) else ()
        return Network(name=d.name, file=d.file, params=params, graph=self.builder.graph,
                       input=self.builder.input_node,
                       output=named[0][1] if named else out.node, sources=self.sources,
                       scopes=self.builder.scopes, definitions=dict(self.blocks),
                       outputs=named)

    # ---- statements ----
    def _tick(self, span: Span):
        self.steps += 1
        if self.steps > limits.MAX_STEPS:
            raise ArchError(f"evaluation takes more than {limits.MAX_STEPS} steps", span,
                            hint="a loop is probably far larger than intended")

    def _charge(self, span: Span, work: int):
        self.work += work
        if self.work > limits.MAX_WORK:
            raise ArchError(f"evaluation handles more than {limits.MAX_WORK} list elements",
                            span, hint="a loop probably builds or compares large lists far "
                                       "more often than intended")

    def _body(self, stmts, env, names: Names):
        for st in stmts:
            self._tick(st.span)
            self._stmt(st, env, names)

    def _stmt(self, st, env, names: Names):
        if isinstance(st, S.Assign):
            value = self.eval(st.value, env, names)
            if len(st.targets) == 1:
                env[st.targets[0]] = value
            else:
                if not isinstance(value, tuple) or len(value) != len(st.targets):
                    n = len(value) if isinstance(value, tuple) else f"a {type_name(value)}"
                    raise ArchError(f"cannot unpack {n} into {len(st.targets)} names", st.span)
                env.update(zip(st.targets, value))
            names.record(("assign", st, value))
        elif isinstance(st, S.Return):
            value = self.eval(st.value, env, names)
            names.record(("return", st, value))
            raise Returned(value)
        elif isinstance(st, S.For):
            self._for(st, env, names)
        elif isinstance(st, S.If):
            for i, (cond, body) in enumerate(st.branches):
                if self._bool(self.eval(cond, env, names), cond.span, "an `if` condition"):
                    names.record(("if", st, i))
                    self._body(body, env, names)
                    return
            names.record(("if", st, len(st.branches) if st.orelse is not None else -1))
            if st.orelse is not None:
                self._body(st.orelse, env, names)
        elif isinstance(st, S.Assert):
            ok = self._bool(self.eval(st.cond, env, names), st.cond.span, "an assertion")
            if not ok:
                text = "condition is false"
                if st.message is not None:
                    msg = self.eval(st.message, env, names)
                    text = msg if isinstance(msg, str) else show(msg)
                raise ArchError(f"assertion failed: {text}", st.span)
            names.record(("assert", st))
        else:  # pragma: no cover - the parser builds only the statements above
            raise AssertionError(st)

    def _for(self, st: S.For, env, names: Names):
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
                inner = self.builder.open_scope(names, f"{st.label}{k}", "", "loop", st.span)
            names.record(("for", st, k, item))
            self._body(st.body, env, inner)
        names.record(("end", st))

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
            items = make_list(self.eval(i, env, names) for i in e.items)
            self._charge(e.span, cost(items))
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
        if isinstance(e, S.Slice):
            obj = self.eval(e.obj, env, names)
            if not isinstance(obj, tuple):
                raise ArchError(f"cannot slice a {type_name(obj)}", e.obj.span,
                                hint="slices take a part of a list: a[1:], a[:2], a[1:3]")
            bounds = []
            for b in (e.start, e.stop):
                v = None if b is None else self.eval(b, env, names)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                    raise ArchError(f"slice bound must be an int, got {type_name(v)}", b.span,
                                    hint="a[start:stop]: whole numbers, negative from the end; "
                                         "leave one out for the list's start or end")
                bounds.append(v)
            items = obj[bounds[0]:bounds[1]]
            self._charge(e.span, cost(items))
            return items
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
            return check_int(-number(v, "the operand of '-'"))
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
                if op == "*" and a.shape == (a.shape[0], 1, 1) and b.shape != a.shape:
                    a, b = b, a   # `s * x`: the C x 1 x 1 scale is mul's second input
                return self.builder.add_layer(ops.get("add" if op == "+" else "mul"), [a, b], {},
                                              None, e.span, names)
            raise ArchError(f"operator '{op}' is not defined for {type_name(a)} and {type_name(b)}",
                            e.span, hint="tensors support + (add) and * (channel-wise mul) only")
        try:
            r = operate(op, a, b)
            self._charge(e.span, cost(a, b, r))
            return r
        except OperandError as err:
            side = {"left": e.left.span, "right": e.right.span}.get(err.side, e.span)
            raise ArchError(err.message, side) from None


def elaborate(network: S.Definition, blocks: dict, sources: dict, overrides: dict) -> Network:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        return Elaborator(blocks, sources).network(network, overrides)
    finally:
        sys.setrecursionlimit(old)

