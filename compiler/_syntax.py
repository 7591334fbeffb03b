"""AST of the .arch language: frozen dataclasses, each carrying its source Span.

Built by compiler/_parser.py from the Lark tree, walked by compiler/_elaborate.py.
The pipe `x -> f(a)` is desugared here into the call `f(x, a)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import Span


@dataclass(frozen=True)
class Node:
    span: Span


# ---- expressions ----------------------------------------------------------
@dataclass(frozen=True)
class Literal(Node):
    value: object  # int, float, bool, str or None


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple


@dataclass(frozen=True)
class Var(Node):
    name: str


@dataclass(frozen=True)
class Index(Node):
    obj: "Expr"
    index: "Expr"


@dataclass(frozen=True)
class Slice(Node):
    """obj[start:stop] on a list; a bound left out is None."""
    obj: "Expr"
    start: "Expr | None"
    stop: "Expr | None"


@dataclass(frozen=True)
class Attr(Node):
    obj: "Expr"
    name: str


@dataclass(frozen=True)
class KwArg(Node):
    name: str
    value: "Expr"


@dataclass(frozen=True)
class Label(Node):
    """A string label with {expr} parts: "block{b + 1}" -> ("block", <expr b + 1>)."""
    parts: tuple   # str or Expr


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple          # positional Expr
    kwargs: tuple        # KwArg
    label: object        # None, str, or Label: `label: f(...)` names the layer or block scope
    func_span: Span      # where the callee's name stands


@dataclass(frozen=True)
class BinOp(Node):
    op: str              # + - * / // % ** == != < <= > >= and or
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str              # - not
    operand: "Expr"


@dataclass(frozen=True)
class IfExpr(Node):
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"


Expr = Union[Literal, ListLit, Var, Index, Attr, Call, BinOp, UnaryOp, IfExpr]


# ---- statements -----------------------------------------------------------
@dataclass(frozen=True)
class Assign(Node):
    targets: tuple       # one name, or several for unpacking
    value: Expr


@dataclass(frozen=True)
class Return(Node):
    value: Expr


@dataclass(frozen=True)
class For(Node):
    label: str | None    # `stage: for ...` names iteration k's scope `stage<k>`
    names: tuple
    iterable: Expr
    body: tuple


@dataclass(frozen=True)
class If(Node):
    branches: tuple      # ((cond, body), ...)
    orelse: tuple | None


@dataclass(frozen=True)
class Assert(Node):
    cond: Expr
    message: Expr | None   # evaluated only when the condition is false


Stmt = Union[Assign, Return, For, If, Assert]


# ---- definitions ----------------------------------------------------------
TYPES = ("int", "float", "bool", "string", "list", "tensor")


@dataclass(frozen=True)
class Param(Node):
    name: str
    type: str
    default: Expr | None


@dataclass(frozen=True)
class Definition(Node):
    kind: str            # "block" or "network"
    name: str
    params: tuple
    body: tuple
    file: str


@dataclass(frozen=True)
class Import(Node):
    path: str


@dataclass(frozen=True)
class Module:
    file: str
    source: str
    imports: tuple
    definitions: tuple
