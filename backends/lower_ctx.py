"""What a backend's lowering function sees and returns, for a Python-source backend.

A backend's lowering table (lowering.Backend.lower) maps each op name to a function of a
`LowerCtx` (one layer in a class body) that returns a `Lowered`: the member's constructor
(stateful ops) and the forward expression, both as Python text. `paren` and `atomic` help a
lowering put an input's text next to an operator. Everything else about the generated file
(which classes, their names, their arguments) is decided by backends/_plan.py, once for all
backends; docs/adding-an-op.md shows a lowering end to end.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _pyexpr as P


class LowerCtx:
    """One layer in a class body, for a backend's lowering function.

    x(i)     input i as forward() writes it        ranks[i]  its runtime rank
    x4(i)    input i as a 4-D value: an N x C input (rank 2) gets its 1 x 1 axes back
    xs4()    all inputs, 4-D where any of them is (a merge)
    rank     the runtime rank of the layer's own value (lowering.ranks)
    a(name)  an attribute as the constructor writes it (a literal or constructor code)
    f(name)  an attribute as forward() writes it (a literal, or an attribute of self)
    pair(name, forward=False)  a (h, w) attribute: `3` when both sides are literal and equal
    value(name), raw(name)     its value in this call; as the .arch call wrote it
    is_default(name, d)        a literal equal to d (so the lowering can leave it out)
    cin(i)   input i's channel count as the constructor writes it
    path     the member (`self.conv1`) of a stateful op
    """

    def __init__(self, r, node: str, data: dict, ranks: list, attrs: dict, cins: list,
                 path: str | None):
        self._r, self.node, self.op = r, node, data["op"]
        self.ranks, self.attrs, self.cins, self.path = ranks, attrs, cins, path
        self.in_shapes, self.shape = data["in_shapes"], data["shape"]
        self.n_inputs = len(data["inputs"])
        self.rank = r.plan.ranks[node]
        # N x C -> N x C x 1 x 1 (NCHW) or N x 1 x 1 x C (NHWC)
        self._expand = "[:, :, None, None]" if r.backend.layout == "NCHW" else "[:, None, None, :]"

    def x(self, i: int = 0) -> str:
        return f"\x01{i}\x01"

    def xs(self) -> list:
        return [self.x(i) for i in range(self.n_inputs)]

    def x4(self, i: int = 0) -> str:
        return self.x(i) if self.ranks[i] == 4 else self.x(i) + self._expand

    def xs4(self) -> list:
        if all(r == self.ranks[0] for r in self.ranks):
            return self.xs()
        return [self.x4(i) for i in range(self.n_inputs)]

    def a(self, name: str) -> str:
        return self._r.text(self.attrs[name], forward=False)

    def f(self, name: str) -> str:
        return self._r.text(self.attrs[name], forward=True)

    def pair(self, name: str, forward: bool = False) -> str:
        v = self.attrs[name]
        if v.const and isinstance(v.value, tuple) and len(v.value) == 2 and \
                v.value[0] == v.value[1]:
            return P.literal(v.value[0])
        return self._r.text(v, forward)

    def value(self, name: str):
        return self.attrs[name].value

    def raw(self, name: str):
        return self.attrs[name].raw

    def is_default(self, name: str, default) -> bool:
        v = self.attrs[name]
        return v.const and v.value == default

    def cin(self, i: int = 0) -> str:
        return self._r.text(self.cins[i], forward=False)


@dataclass
class Lowered:
    ctor: str | None     # the member's constructor (stateful ops), else None
    expr: str            # the forward expression


# ---- text helpers for lowerings ---------------------------------------------------------------
def atomic(text: str) -> bool:
    """No operator outside brackets: a name, a call, an attribute, a subscript, a literal."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch == " " or (ch == "-" and i > 0)):
            return False
    return True


def paren(text: str) -> str:
    return text if atomic(text) else f"({text})"
