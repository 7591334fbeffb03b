r"""The pieces of a class body: values (`Val`, holes), constructor entries, forward items, and
`Rendered`, one block call rendered as a class body (backends/_render.py makes it,
backends/_plan.py turns calls with equal bodies into one class).

Python text in a body may hold two kinds of placeholder: `\x00k\x00`, hole k (a value filled
in per class: a literal or an argument), and `\x01i\x01`, input i of a forward expression.
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field

from archc.compiler import _syntax as S
from archc.compiler._values import Outputs, Tensor

from . import _pyexpr as P
from .lower_ctx import paren

HOLE = re.compile(r"\x00(\d+)\x00")     # a value filled in per class (literal or argument)
ARG = re.compile(r"\x01(\d+)\x01")      # input i of a forward expression


class Val:
    """A value as generated code writes it: a literal (`const`), Python text over the
    class's constructor arguments (`text`), or a hole (`text` None). `value` is its value
    in the call being rendered; `raw` the value as the .arch call wrote it (3 for a kernel
    normalised to (3, 3))."""

    __slots__ = ("value", "text", "const", "raw", "hint")

    def __init__(self, value, text=None, const=False, raw=None, hint="value"):
        self.value, self.text, self.const, self.hint = value, text, const, hint
        self.raw = value if raw is None else raw
        if const:
            self.text = P.literal(value)
            self.const = self.text is not None

    @staticmethod
    def literal(v, hint="value"):
        return Val(v, const=True, hint=hint)

    @property
    def hole(self) -> bool:
        return self.text is None

    def _combine(self, other, op, fn):
        other = other if isinstance(other, Val) else Val.literal(other)
        value = fn(self.value, other.value)
        if self.const and other.const:
            return Val.literal(value, self.hint)
        if other.const and other.value == 0 and type(other.value) is int:
            return Val(value, self.text, hint=self.hint)         # x + 0, x - 0
        if self.hole or other.hole:
            return Val(value, hint=self.hint)
        if op == "+" and other.text.isidentifier():   # a + t + t -> a + 2 * t (DenseNet)
            m = re.fullmatch(rf"(.*) \+ (?:(\d+) \* )?{re.escape(other.text)}", self.text)
            if m:
                k = int(m.group(2) or 1) + 1
                return Val(value, f"{m.group(1)} + {k} * {other.text}", hint=self.hint)
        return Val(value, f"{self.text} {op} {paren(other.text)}", hint=self.hint)

    def __add__(self, other):
        return self._combine(other, "+", lambda a, b: a + b)

    def __sub__(self, other):
        return self._combine(other, "-", lambda a, b: a - b)


@dataclass(frozen=True)
class Hole:
    r"""A value the class body cannot write from its parameters (`\x00k\x00` in its text)."""
    value: object                    # its value in this call
    hint: str                        # a name for it, should it become an argument
    forward: bool                    # forward() reads it (else the constructor)
    text: str | None                 # constructor code for it, where the class has one
    names: tuple                     # the class's Python names at that point
    literal: str | None = None       # its text when one value in every call (else literal())
    call: bool = False               # forward() calls it on the item's input (an activation)
    tag: tuple = ()                  # the `if`s it sits in (Rendered.ifs indices)
    at: int = 0                      # the number of constructor entries before it


# ---- constructor entries: what __init__ does, in order ------------------------------------------
# `tag` (ignored by ==): the indices in Rendered.ifs of the `if` statements whose taken branch
# made the entry or item (outermost first); backends/_merge.py makes those branches optional.
@dataclass(frozen=True)
class Assign:
    """`targets = text`: constructor code over the class's arguments."""
    targets: tuple                   # Python names
    text: str
    tag: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class Store:
    """`self.name = text`: a value forward() reads, computed by the constructor."""
    name: str
    text: str
    tag: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class Member:
    """`self.path = ctor`: a layer, a child block's class, or a sequence of them."""
    path: tuple                      # attribute names from the class, ("stage1", "block2")
    ctor: str                        # constructor expression (template)
    kind: str                        # layer | block | sequential
    tag: tuple = field(default=(), compare=False)


@dataclass(frozen=True)
class Code:
    """Lines of constructor code (a loop, backends/_roll.py), indented relative to __init__."""
    lines: tuple


@dataclass(frozen=True)
class Check:
    """`if not cond: raise ValueError(message)`: an assertion of the .arch file over the
    class's arguments."""
    cond: str
    message: str


@dataclass(frozen=True)
class Guard:
    """An optional step: when `cond` holds, the entries (members, stored values, the code
    they need), else each of their attributes None; forward() tests `path` for None. A
    `flag` guard has no entries: `self.path = cond`, a boolean forward() tests."""
    cond: str                        # Python text over the class's arguments
    members: tuple                   # Assign | Store | Member
    path: tuple                      # the attribute forward() tests
    index: int = -1                  # the `if` (Rendered.ifs index)
    flag: bool = False


# ---- one rendered call -------------------------------------------------------------------------
@dataclass
class Item:
    """One step of forward(): a layer, a call of a child block, or a sequence."""
    inputs: list                     # IR nodes consumed, in expression order
    outputs: list                    # IR nodes produced
    expr: str                        # expression template: inputs as \x01i\x01
    name: str                        # IR node (a layer) or scope name
    tap: bool = False                # a layer: passed through tap() in tap mode
    hint: str | None = None          # the .arch variable it was assigned to
    label: str = "y"                 # else a variable named after the layer
    multi: bool = False              # returns a tuple
    scope: str = ""                  # the naming scope it sits in (loops)
    optional: str | None = None      # an attribute that may be None (or a False flag): the
    flag: bool = False               # steps of its `if` are then absent, and their input
    through: int = 0                 # passes_on(steps)[through] passes on
    tag: tuple = ()                  # the `if`s it sits in (see Assign)
    index: int = -1                  # optional: the `if` (Rendered.ifs index) that guards it


def attributes(init: list, hoisted: list) -> set:
    """The attribute names a constructor with entries `init` sets (hoisted: [(name, _)],
    the arguments it stores)."""
    out = {name for name, _ in hoisted}
    for e in init:
        for m in (e.members + (e,) if isinstance(e, Guard) else (e,)):
            out |= {m.path[0]} if isinstance(m, (Member, Guard)) else \
                {m.name} if isinstance(m, Store) else set()
    return out


def passes_on(steps: list) -> list:
    """The inputs of a run of optional steps that come from before it: when the steps are
    absent, one of them (Item.through) stands for their output."""
    made = {n for it in steps for n in it.outputs}
    return list(dict.fromkeys(n for it in steps for n in it.inputs if n not in made))


@dataclass(frozen=True)
class Branch:
    """An `if` of the call's trace: the branch it took and its conditions as Python text."""
    where: tuple                     # (file, line, column) of the statement
    taken: int                       # the branch taken; -1: none
    conditions: tuple                # per branch: Python text checked to hold as it did, or None


@dataclass(frozen=True)
class OutChannels:
    """A class's claim on an output's channel count: a literal, or the Python name of one of
    its arguments."""
    const: bool
    value: object                    # the literal (const), else the name


@dataclass
class Rendered:
    scope: str
    definition: str | None
    params: list = field(default_factory=list)     # [(py name, archc name, default text|None)]
    channel_params: list = field(default_factory=list)  # [(py name, archc tensor param)]
    forward_args: list = field(default_factory=list)    # py names
    forward_params: list = field(default_factory=list)  # archc names of tensor params
    init: list = field(default_factory=list)   # Assign | Store | Member | Guard
    items: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    out_tuple: bool = False
    out_names: list = field(default_factory=list)   # the network's named outputs, in order
    out_channels: list = field(default_factory=list)  # per output: OutChannels | None
    holes: list = field(default_factory=list)     # [Hole]
    pyvalues: dict = field(default_factory=dict)  # Python name or text -> value in this call
    out_channel_values: list = field(default_factory=list)
    ifs: list = field(default_factory=list)       # [Branch]
    needs: set = field(default_factory=set)
    ext: dict = field(default_factory=dict)       # external node -> forward text
    # network parameters an assertion reads that the class cannot check (the network)
    unchecked: set = field(default_factory=set)
    rolls: list = field(default_factory=list)     # labelled loops written as loops (_roll.py)
    # a block class's loop written as loops (_roll_block.py): (first init entry, items
    # before it, the node it starts from, (init entries, items, last node) after it,
    # __init__ lines, forward() lines, the variable returned)
    rolled: tuple | None = None
    forward_code: list | None = None   # forward()'s lines where that loop replaced items
    loop_at: int = 0                   # ... the items before it (written as ever)
    loop_entry: str | None = None      # ... the node it starts from, after those items

    def relative(self, node: str) -> str:
        """An IR node as the call sees it: its forward text if it comes from outside, else
        its name within the call's scope."""
        prefix = f"{self.scope}." if self.scope else ""
        return self.ext.get(node) or node[len(prefix):]


# ---- names in generated code -------------------------------------------------------------------
def names_in(text: str) -> set:
    """The Python names a piece of generated code reads (string literals excluded)."""
    out = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(HOLE.sub(" 0 ", text)).readline):
            if tok.type == tokenize.NAME:
                out.add(tok.string)
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


# ---- reading the IR's values and syntax ------------------------------------------------------
def where(st) -> tuple:
    return (st.span.file, st.span.line, st.span.column)


def walk_syntax(expr):
    stack = [expr]
    while stack:
        n = stack.pop()
        yield n
        for f in getattr(n, "__dataclass_fields__", {}):
            if f == "span":
                continue
            c = getattr(n, f)
            if isinstance(c, tuple):
                stack.extend(x for x in c if isinstance(x, S.Node))
            elif isinstance(c, S.Node):
                stack.append(c)


def means(raw, value) -> bool:
    """The .arch value `raw`, passed as it is, means the normalised attribute `value`."""
    if isinstance(raw, bool) or isinstance(value, bool):
        return raw is value
    if raw == value and type(raw) is type(value):
        return True
    if isinstance(value, tuple) and len(value) == 2:
        return (isinstance(raw, int) and value == (raw, raw)) or \
            (isinstance(raw, tuple) and tuple(raw) == value)
    return isinstance(value, float) and isinstance(raw, int) and float(raw) == value


def contains_tensor(v) -> bool:
    if isinstance(v, (Tensor, Outputs)):
        return True
    return isinstance(v, tuple) and any(contains_tensor(x) for x in v)


def tensors(v) -> list:
    if isinstance(v, Tensor):
        return [v]
    if isinstance(v, tuple):
        return [t for x in v for t in tensors(x)]
    return []


def default_text(p) -> str | None:
    """A constructor argument's Python default: the .arch default when that is a literal
    (coerced to the parameter's type); None otherwise (the argument is then required)."""
    e = p.default
    if e is None or not all(isinstance(n, (S.Literal, S.ListLit, S.UnaryOp))
                            for n in walk_syntax(e)):
        return None
    v = literal_value(e)
    if p.type == "float" and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    return P.literal(v)


def literal_value(e):
    if isinstance(e, S.Literal):
        return e.value
    if isinstance(e, S.ListLit):
        return tuple(literal_value(i) for i in e.items)
    v = literal_value(e.operand)
    return -v if e.op == "-" else (not v)
