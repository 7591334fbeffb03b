"""Elaboration: evaluate a network definition into the graph IR.

Walks the AST (compiler/_syntax.py) with an environment of values, expands block calls
and loops, binds every call to its signature (compiler/_binding.py), and adds one IR node
per primitive through the GraphBuilder (compiler/_graph.py), which computes its output
shape with the op's own rule. Builtin functions live in compiler/_builtins.py. Every
failure is an ArchError positioned at the offending source text.
"""
from __future__ import annotations

import sys

from . import _syntax as S
from . import limits, ops
from ._binding import Arg, bind_op, bind_simple, block_signature, coerce_param
from ._builtins import (BUILTIN_DOCS, BUILTINS, LAYER_INPUT_WORK, TENSOR_FUNCTIONS, OperandError,
                        call_cost, cost, number, operate)
from ._graph import GraphBuilder, Names
from ._values import Outputs, Tensor, check_int, make_list, show, type_name
from .errors import ArchError, Span, did_you_mean
from .ir import Network


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Elaborator:
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
        except _Return as r:
            out = r.value
        else:
            raise ArchError(f"network '{d.name}' ends without `return`", _closing_brace(d.span),
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
            raise _Return(value)
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
        if f in self.blocks:   # a block may shadow a built-in (compiler/_loader.py notes it)
            return self._block_call(self.blocks[f], e, env, names)
        if f in ops.REGISTRY or f in TENSOR_FUNCTIONS:
            return self._layer_call(e, env, names)
        if f in BUILTINS:
            if e.label is not None:
                raise ArchError(f"'{f}' computes a value, not a layer; it cannot be labelled", e.span)
            args = [self.eval(a, env, names) for a in e.args]
            kwargs = {k.name: self.eval(k.value, env, names) for k in e.kwargs}
            self._charge(e.span, call_cost(f, [*args, *kwargs.values()]))
            try:
                r = check_int(BUILTINS[f](*args, **kwargs))
                self._charge(e.span, cost(r))
                return r
            except TypeError as err:
                raise ArchError(f"{f}(): {err}".replace("<lambda>() ", ""), e.span,
                                hint=BUILTIN_DOCS[f]) from None
            except (ValueError, OverflowError) as err:
                raise ArchError(f"{f}(): {err}", e.span, hint=BUILTIN_DOCS[f]) from None
        known = list(ops.REGISTRY) + list(self.blocks) + list(BUILTINS) + list(TENSOR_FUNCTIONS)
        raise ArchError(f"unknown layer, block or function '{f}'", e.func_span,
                        hint=did_you_mean(f, known) or
                        "define it with `block`, or import it: import \"std/....arch\"")

    def _args(self, e: S.Call, env, names):
        args = [Arg(self.eval(a, env, names), a.span, a) for a in e.args]
        kwargs = {k.name: Arg(self.eval(k.value, env, names), k.span, k.value) for k in e.kwargs}
        self._charge(e.span, cost(*(a.value for a in args), *(a.value for a in kwargs.values()),
                                  per_element=LAYER_INPUT_WORK))
        return args, kwargs

    def _layer_call(self, e: S.Call, env, names: Names):
        f = e.func
        args, kwargs = self._args(e, env, names)
        if f == "input":
            if len(self.stack) != 1:
                raise ArchError("input(...) may only appear in a network body", e.span,
                                hint="blocks receive tensors as parameters")
            if self.builder.input_node is not None:
                raise ArchError("the network already has an input", e.span,
                                hint="archc networks have one input")
        if f == "split":
            return self._split(e, args, kwargs, env, names)
        if f == "outputs":
            return self._outputs(e, args, kwargs)
        if f == "activation":
            bound = bind_simple("activation", ("x", "kind"), args, kwargs, e.span)
            kind = bound["kind"]
            if kind.value not in ops.ACTIVATIONS:
                raise ArchError(f"unknown activation {show(kind.value)}", kind.span,
                                hint=did_you_mean(str(kind.value), ops.ACTIVATIONS)
                                or "activations: " + ", ".join(ops.ACTIVATIONS))
            f = kind.value
            args, kwargs = [bound["x"]], {}
        op = ops.get(f)
        b = bind_op(op, args, kwargs, e.span)
        return self.builder.add_layer(op, b.tensors, b.attrs, self._label(e, env, names), e.span,
                                      names, b.spans, b.exprs)

    def _outputs(self, e, args, kwargs):
        """outputs(name=tensor, ...): the named outputs a network returns."""
        if len(self.stack) != 1:
            raise ArchError("outputs(...) may only appear in a network body", e.span,
                            hint="a block returns a tensor or a list of tensors")
        if e.label is not None:
            raise ArchError("outputs(...) names a network's outputs; it cannot be labelled",
                            e.span)
        if args:
            raise ArchError("outputs() takes the outputs as name=tensor", args[0].span,
                            hint="return outputs(logits=x, aux=a)")
        if not kwargs:
            raise ArchError("outputs() needs at least one name=tensor", e.span)
        for a in kwargs.values():
            if not isinstance(a.value, Tensor):
                raise ArchError(f"outputs(): an output must be a tensor, got "
                                f"{type_name(a.value)} {show(a.value)}", a.span)
        return Outputs(tuple((k, a.value) for k, a in kwargs.items()))

    def _split(self, e, args, kwargs, env, names: Names):
        bound = bind_simple("split", ("x", "sizes"), args, kwargs, e.span)
        x, xspan = bound["x"].value, bound["x"].span
        sizes, sspan = bound["sizes"].value, bound["sizes"].span
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
        inner = self.builder.open_scope(names, self._label(e, env, names), "split", "split",
                                        e.span)
        out, start = [], 0
        for i, s in enumerate(sizes):
            attrs = {"start": start, "stop": start + s}
            out.append(self.builder.add_layer(ops.get("slice"), [x], attrs, str(i), e.span, inner))
            start += s
        inner.scope.output = tuple(out)
        return tuple(out)

    def _block_call(self, d: S.Definition, e: S.Call, env, names: Names):
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
                            e.args[len(d.params)].span, hint=block_signature(d))
        given = {}
        for p, a in zip(d.params, e.args):
            given[p.name] = Arg(self.eval(a, env, names), a.span, a)
        for k in e.kwargs:
            if k.name not in pnames:
                raise ArchError(f"block '{d.name}' has no parameter '{k.name}'", k.span,
                                hint=did_you_mean(k.name, pnames) or block_signature(d))
            if k.name in given:
                raise ArchError(f"block '{d.name}' got parameter '{k.name}' twice", k.span)
            given[k.name] = Arg(self.eval(k.value, env, names), k.span, k.value)
        self._charge(e.span, cost(*(a.value for a in given.values())))
        local: dict = {}
        inner = self.builder.open_scope(names, self._label(e, env, names), d.name, "block", e.span,
                                        definition=d.name)
        inner.scope.given = {k: a.expr for k, a in given.items()}
        self.stack.append((d.name, e.span))
        try:
            for p in d.params:
                if p.name in given:
                    v, sp = given[p.name].value, given[p.name].span
                elif p.default is not None:
                    v, sp = self.eval(p.default, local, inner), p.default.span
                else:
                    raise ArchError(f"block '{d.name}' is missing argument '{p.name}'", e.span,
                                    hint=block_signature(d))
                local[p.name] = coerce_param(v, p.type, sp,
                                             f"block '{d.name}' parameter '{p.name}'")
            inner.scope.args = dict(local)
            try:
                self._body(d.body, local, inner)
            except _Return as r:
                inner.scope.output = r.value
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
