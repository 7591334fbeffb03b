"""Building the graph IR: hierarchical layer names, scopes, and one node per primitive op.

The elaborator asks `GraphBuilder.add_layer` for every op call; the builder computes the
output shape with the op's own rule (compiler/ops.py), names the layer inside the current
naming scope, and records it in the frame's trace. Scopes (block calls, labelled loop
iterations, splits) are opened with `open_scope`.
"""
from __future__ import annotations

import networkx as nx

from . import limits, ops
from ._values import Tensor, check_int
from .errors import ArchError, Span
from .ir import Scope


class Names:
    """Hierarchical naming: one instance per scope (block call, labelled loop iteration,
    split, or the network)."""

    def __init__(self, scope: Scope, frame: Scope):
        self.scope = scope      # the naming scope
        self.frame = frame      # the block call or network whose trace records events
        self.prefix = f"{scope.name}." if scope.name else ""
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

    def record(self, event: tuple) -> None:
        self.frame.trace.append(event)


class GraphBuilder:
    def __init__(self):
        self.graph = nx.DiGraph()
        self.scopes: dict[str, Scope] = {}
        self.input_node: str | None = None

    def root(self, definition: str, span: Span) -> Names:
        scope = Scope("", "network", None, "", span, definition=definition)
        self.scopes[""] = scope
        return Names(scope, scope)

    def open_scope(self, names: Names, label: str | None, base: str, kind: str, span: Span,
                   definition: str | None = None) -> Names:
        """A child scope of `names` (a block call, loop iteration or split); returns its Names."""
        local = names.claim(label, base, span)
        name = names.prefix + local
        parent = names.scope
        scope = Scope(name, kind, parent.name, names.frame.name, span, definition=definition)
        if kind == "block":
            scope.frame = name
        self.scopes[name] = scope
        names.record(("scope", name))
        return Names(scope, scope if kind == "block" else names.frame)

    def add_layer(self, op: ops.Op, tensors: list, attrs: dict, label: str | None, span: Span,
                  names: Names, arg_spans: dict | None = None, exprs: dict | None = None) -> Tensor:
        """Add one node for `op` applied to `tensors`; errors point at the offending argument."""
        in_shapes = [t.shape for t in tensors]
        try:
            attrs = op.normalize(dict(attrs), in_shapes)
            shape = op.shape(in_shapes, attrs)
        except ops.OpError as err:
            where = (arg_spans or {}).get(err.arg, span) if err.arg else span
            raise ArchError(err.message, where, hint=err.hint) from None
        for v in shape:
            check_int(v)
        name = names.prefix + names.claim(label, op.name, span)
        if self.graph.number_of_nodes() >= limits.MAX_NODES:
            raise ArchError(f"the network has more than {limits.MAX_NODES} layers", span)
        self.graph.add_node(name, op=op.name, attrs=attrs, inputs=tuple(t.node for t in tensors),
                            in_shapes=tuple(in_shapes), shape=tuple(shape), span=span,
                            scope=names.scope.name, exprs=dict(exprs or {}))
        for t in tensors:
            self.graph.add_edge(t.node, name)
        if op.name == "input":
            self.input_node = name
        names.record(("layer", name))
        return Tensor(name, tuple(shape))
