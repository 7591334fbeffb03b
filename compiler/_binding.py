"""Binding call arguments to signatures: ops (their registry `args`), tensor functions and
block parameters. Every mismatch is an ArchError positioned at the offending argument.

An evaluated argument is an `Arg` triple (value, span, expression): the expression is the
caller's AST, kept so that the IR can record where each attribute came from.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from . import _syntax as S
from . import ops
from ._values import Tensor, coerce, show, type_name
from .errors import ArchError, Span, did_you_mean


class Arg(NamedTuple):
    value: object
    span: Span
    expr: object = None   # the caller's expression (S.Expr), None when synthesised


def op_signature(op: ops.Op) -> str:
    parts = []
    for a in op.args:
        if a.kind == "tensors":
            parts.append(f"{a.name}...")
        elif a.default is ops.REQUIRED:
            parts.append(a.name)
        else:
            parts.append(f"{a.name}={show(a.default)}")
    return f"{op.name}({', '.join(parts)})"


def block_signature(d: S.Definition) -> str:
    return f"{d.name}({', '.join(f'{p.name}: {p.type}' for p in d.params)})"


def bind_simple(fname: str, keys: tuple, args: list, kwargs: dict, span: Span) -> dict:
    """Bind a tensor function's arguments (split, activation): name -> Arg, all required."""
    bound = {}
    if len(args) > len(keys):
        raise ArchError(f"{fname}() takes {len(keys)} arguments, got {len(args)}", span)
    for k, a in zip(keys, args):
        bound[k] = a
    for k, v in kwargs.items():
        if k not in keys:
            raise ArchError(f"{fname}() has no argument '{k}'", v.span, hint=did_you_mean(k, keys))
        if k in bound:
            raise ArchError(f"{fname}() got '{k}' twice", v.span)
        bound[k] = v
    for k in keys:
        if k not in bound:
            raise ArchError(f"{fname}() is missing '{k}'", span, hint=f"{fname}({', '.join(keys)})")
    return bound


def convert(arg: ops.Arg, v, span: Span, fname: str):
    """Check one op argument against its declared kind; returns the attribute value."""
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
        if not math.isfinite(v):  # the language makes none; a guard for every other path
            bad("a finite number")
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
        if kind == "padding" and v in ("same", "tf_same"):
            return v
        if isinstance(v, tuple):
            if len(v) != 2:
                bad("an integer or a list [h, w]")
            return (as_int(v[0]), as_int(v[1]))
        if isinstance(v, str):
            bad("an integer, [h, w]" + (', "same" or "tf_same"' if kind == "padding" else ""))
        x = as_int(v)
        return (x, x)
    raise AssertionError(kind)  # pragma: no cover


class BoundOp(NamedTuple):
    attrs: dict        # attribute name -> normalised-by-kind value (defaults filled in)
    tensors: list      # input tensors in argument order
    spans: dict        # argument name -> span of the value given (for positioned errors)
    exprs: dict        # attribute name -> (the caller's expression, its value), when given


def bind_op(op: ops.Op, args: list, kwargs: dict, span: Span) -> BoundOp:
    """Bind evaluated positional `args` [Arg] and keyword `kwargs` {name: Arg} to op.args."""
    spec = op.args
    names = [a.name for a in spec]
    variadic = bool(spec) and spec[0].kind == "tensors"
    bound: dict = {}
    if variadic:
        vals = args
        if len(args) == 1 and isinstance(args[0].value, tuple):
            vals = [Arg(t, args[0].span) for t in args[0].value]
        if not vals:
            raise ArchError(f"{op.name}() needs at least one tensor", span)
        for a in vals:
            if not isinstance(a.value, Tensor):
                raise ArchError(f"{op.name}() takes tensors, got {type_name(a.value)} "
                                f"{show(a.value)}", a.span)
        bound[spec[0].name] = Arg(tuple(a.value for a in vals), span)
    else:
        if len(args) > len(spec):
            raise ArchError(f"{op.name}() takes at most {len(spec)} positional arguments, got "
                            f"{len(args)}", args[len(spec)].span, hint=op_signature(op))
        for a, v in zip(spec, args):
            bound[a.name] = v
    for k, v in kwargs.items():
        if k not in names:
            raise ArchError(f"{op.name}() has no argument '{k}'", v.span,
                            hint=did_you_mean(k, names) or op_signature(op))
        if k in bound:
            raise ArchError(f"{op.name}() got argument '{k}' twice", v.span)
        bound[k] = v
    attrs, tensors, exprs = {}, [], {}
    for a in spec:
        if a.name not in bound:
            if a.default is ops.REQUIRED:
                raise ArchError(f"{op.name}() is missing argument '{a.name}'", span,
                                hint=op_signature(op))
            if a.kind in ("pair", "padding") and a.default is not None and a.default != "same":
                attrs[a.name] = (a.default, a.default)
            else:
                attrs[a.name] = a.default
            continue
        v = bound[a.name]
        if a.kind == "tensors":
            tensors.extend(v.value)
        elif a.kind == "tensor":
            tensors.append(convert(a, v.value, v.span, op.name))
        else:
            attrs[a.name] = convert(a, v.value, v.span, op.name)
            if v.expr is not None:
                exprs[a.name] = (v.expr, v.value)
    return BoundOp(attrs, tensors, {k: v.span for k, v in bound.items()}, exprs)


def coerce_param(v, typ: str, span: Span, what: str):
    """A parameter value checked against its declared type (int widens to float)."""
    try:
        return coerce(v, typ)
    except TypeError as err:
        hint = None
        if typ == "int" and isinstance(v, float):
            hint = "choose the rounding explicitly: int(...), round(...) or ceil(...)"
        raise ArchError(f"{what}: {err}", span, hint=hint) from None
