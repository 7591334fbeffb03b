"""The graph IR: one networkx.DiGraph node per primitive op.

Node key: the layer's hierarchical name (e.g. "stage3.block2.conv1").
Node data (all plain, JSON-friendly values except `span`):
    op        op kind, a key of compiler.ops.REGISTRY ("conv", "bn", "add", ...)
    attrs     normalised attributes (kernel/stride/padding as (h, w) tuples, ...)
    inputs    input node names in argument order (duplicates kept: add(x, x))
    in_shapes input shapes, (C, H, W) each
    shape     output shape (C, H, W)
    span      compiler.errors.Span of the call that created it
Edges run producer -> consumer. Insertion order is a topological (data-flow) order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import ops


@dataclass
class Network:
    name: str                 # network definition name, e.g. "SESqueezeNext"
    file: str                 # file it was defined in
    params: dict              # the network parameters as used (defaults + overrides)
    graph: nx.DiGraph
    input: str                # name of the input node
    output: str               # name of the node whose output is the network's output
    sources: dict = field(default_factory=dict, repr=False)  # file -> text
    doc: str = ""

    def layers(self) -> list:
        """Node names in data-flow order, input excluded."""
        return [n for n in self.graph.nodes if n != self.input]

    def node(self, name: str) -> dict:
        return self.graph.nodes[name]

    @property
    def input_shape(self) -> tuple:
        return self.graph.nodes[self.input]["shape"]

    @property
    def output_shape(self) -> tuple:
        return self.graph.nodes[self.output]["shape"]

    def op(self, name: str) -> ops.Op:
        return ops.get(self.graph.nodes[name]["op"])

    def param_counts(self, name: str) -> dict:
        d = self.graph.nodes[name]
        return self.op(name).params(d["in_shapes"], d["shape"], d["attrs"])
