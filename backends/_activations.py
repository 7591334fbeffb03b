"""The table of activations a generated file holds when one of its classes takes its activation
as an argument (`activation(y, act)` in a block, `act` a parameter: torchvision's
`activation_layer`): archc's activation names -> the backend's functions, each written from the
backend's own lowering of that activation with its default attributes (the lowering stays the
one source of what an activation means). The class stores `ACTIVATIONS[act]` (a function: no
module, no state) and forward() calls it; backends/_render.py makes the hole that asks for it.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

from archc.compiler import ops

from . import _pyexpr as P
from ._body import ARG, Val
from .lower_ctx import LowerCtx

TABLE = "ACTIVATIONS"


class _Literals:
    """Stands in for the Renderer when lowering an activation alone: every attribute is a
    literal (the activation's defaults: activation(x, kind) gives no attribute), the value
    a 4-D map."""

    def __init__(self, backend):
        self.backend = backend
        self.plan = SimpleNamespace(ranks={"x": 4})

    @staticmethod
    def text(v: Val, forward: bool) -> str:
        return v.text


def function_text(backend, name: str) -> str:
    """The backend's function for activation `name` with its default attributes: the callable
    its lowering applies (`F.relu`), or a lambda where the lowering passes more arguments
    (`lambda x: jax.nn.gelu(x, approximate=False)`)."""
    op = ops.get(name)
    attrs = {a.name: Val.literal(a.default, a.name) for a in op.args if a.kind != "tensor"}
    data = {"op": name, "in_shapes": ((1, 1, 1),), "shape": (1, 1, 1), "inputs": ("x",)}
    low = backend.lower_op(LowerCtx(_Literals(backend), "x", data, [4], attrs, [Val.literal(1)], None))
    expr = ARG.sub("x", low.expr)
    m = re.fullmatch(r"([A-Za-z_][\w.]*)\(x\)", expr)
    return m.group(1) if m else f"lambda x: {expr}"


def table_source(backend) -> str:
    """The table's source: every activation archc knows, so that a class takes any of them."""
    lines = ["# the functions of archc's activations (classes that take `act` look it up)",
             f"{TABLE} = {{"]
    lines += [f"    {P.literal(n)}: {function_text(backend, n)}," for n in ops.ACTIVATIONS]
    return "\n" + "\n".join(lines + ["}"]) + "\n"
