"""Elaboration of calls: a layer (one IR node, or split's and outputs' special forms), a
builtin function (a value), or a block (a scope of its own, its body evaluated with its
arguments). The other half of the Elaborator (compiler/_elaborate.py: statements and
expressions) inherits these methods; they share its state (`builder`, `blocks`, `stack`).
"""
from __future__ import annotations

from . import _syntax as S
from . import limits, ops
from ._binding import Arg, bind_op, bind_simple, block_signature, coerce_param
from ._builtins import (BUILTIN_DOCS, BUILTINS, LAYER_INPUT_WORK, TENSOR_FUNCTIONS,
                        call_cost, cost)
from ._graph import Names
from ._values import Outputs, Tensor, check_int, show, type_name
from .errors import ArchError, Span, did_you_mean


class Returned(Exception):
    """A `return` statement: unwinds the body that runs it, to its block call or network."""

    def __init__(self, value):
        self.value = value


class Calls:
    """The Elaborator's calls (compiler/_elaborate.py's Elaborator derives from this)."""

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
        """outputs(name=tensor, ...) or outputs([[name, tensor], ...]): the named outputs a
        network returns."""
        if len(self.stack) != 1:
            raise ArchError("outputs(...) may only appear in a network body", e.span,
                            hint="a block returns a tensor or a list of tensors")
        if e.label is not None:
            raise ArchError("outputs(...) names a network's outputs; it cannot be labelled",
                            e.span)
        hint = 'return outputs(logits=x, aux=a), or outputs(pairs) with pairs = [["p2", x], ...]'
        if args and isinstance(args[0].value, Tensor):
            raise ArchError("outputs() takes the outputs as name=tensor", args[0].span,
                            hint=hint)
        if args:   # outputs(pairs): a list of [name, tensor] pairs (built in a loop)
            if len(args) > 1 or kwargs:
                raise ArchError("outputs() takes name=tensor keywords or one list of "
                                "[name, tensor] pairs, not both", args[-1].span, hint=hint)
            pairs, span = args[0].value, args[0].span
            if not isinstance(pairs, tuple) or not all(
                    isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                    for p in pairs):
                raise ArchError(f"outputs(): expected a list of [name, tensor] pairs, got "
                                f"{type_name(pairs)} {show(pairs)}", span, hint=hint)
            named = [(name, Arg(t, span, None)) for name, t in pairs]
            seen = set()
            for name, _ in named:
                if not name.isidentifier():
                    raise ArchError(f"outputs(): output name {show(name)} is not a valid name",
                                    span, hint="names are letters, digits and '_', not "
                                               "starting with a digit")
                if name in seen:
                    raise ArchError(f"outputs(): output '{name}' is named twice", span)
                seen.add(name)
        else:
            named = list(kwargs.items())
        if not named:
            raise ArchError("outputs() needs at least one name=tensor", e.span, hint=hint)
        for _, a in named:
            if not isinstance(a.value, Tensor):
                raise ArchError(f"outputs(): an output must be a tensor, got "
                                f"{type_name(a.value)} {show(a.value)}", a.span)
        return Outputs(tuple((k, a.value) for k, a in named))

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
        inner.scope.label = e.label
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
            except Returned as r:
                inner.scope.output = r.value
                return r.value
            raise ArchError(f"block '{d.name}' ends without `return`", closing_brace(d.span),
                            hint="end the block with `return <tensor>`")
        except ArchError as err:
            if err.span is not None and err.span.file != e.span.file or (
                    err.span is not None and not inside(err.span, e.span)):
                note = f"in block '{d.name}' called at {e.span}"
                if note not in err.notes and len(err.notes) < 8:
                    err.notes.append(note)
            raise
        finally:
            self.stack.pop()


def closing_brace(span: Span) -> Span:
    """The final '}' of a definition whose span is `span` (its whole text)."""
    if span.end_line is None or span.end_column is None or span.end_column < 2:
        return span
    return Span(span.file, span.end_line, span.end_column - 1, span.end_line, span.end_column)


def inside(inner: Span, outer: Span) -> bool:
    if inner.file != outer.file:
        return False
    end = (outer.end_line or outer.line, outer.end_column or outer.column)
    return (outer.line, outer.column) <= (inner.line, inner.column) <= end
