"""The graph IR: one networkx.DiGraph node per primitive op.

Node key: the layer's hierarchical name (e.g. "stage3.block2.conv1").
Node data (all plain, JSON-friendly values except `span`):
    op        op kind, a key of compiler.ops.REGISTRY ("conv", "bn", "add", ...)
    attrs     normalised attributes (kernel/stride/padding as (h, w) tuples, ...)
    inputs    input node names in argument order (duplicates kept: add(x, x))
    in_shapes input shapes, (C, H, W) each
    shape     output shape (C, H, W)
    span      compiler.errors.Span of the call that created it
    scope     name of the innermost Scope the layer belongs to ("" for the network's own)
    exprs     attribute name -> (the caller's expression (compiler._syntax), its value as
              given, before normalisation) for the attributes the call gave explicitly
Edges run producer -> consumer. Insertion order is a topological (data-flow) order.

Scopes (`Network.scopes`, name -> Scope, parents before children) keep the structure of the
source: every block call, labelled loop iteration and split() is one, with the values it was
called with; block calls and the network also keep a trace of what their body did (see
Scope), which the backends use to emit one class per block.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import ops


@dataclass
class Scope:
    """A named group of layers: a block call, a labelled loop iteration, a split(), or the
    network itself (name "").

    Block calls and the network are *frames* (they have their own variables); loop
    iterations and splits only name layers inside their frame. A frame's `trace` records
    its body's evaluation in order, as tuples:
        ("assign", S.Assign, value)          after the value was computed
        ("for", S.For, k, item)              iteration k (from 1) binds item
        ("end", S.For)                       after the loop's last iteration
        ("if", S.If, branch)                 branch index taken, -1 when none
        ("assert", S.Assert)                 an assertion that held
        ("layer", node)                      a layer created directly in this frame
        ("scope", name)                      a child scope created directly in this frame
        ("return", S.Return, value)
    Values keep tensors as compiler._values.Tensor (node name and shape).
    """

    name: str                 # the common prefix of its layers, without the final "."
    kind: str                 # "network" | "block" | "loop" | "split"
    parent: str | None        # enclosing scope (None for the network)
    frame: str                # the block call or network whose variables it uses
    span: object              # the call, the loop statement, or the network definition
    definition: str | None = None            # block or network name
    args: dict = field(default_factory=dict)     # parameter -> value, as bound
    given: dict = field(default_factory=dict)    # parameter -> the caller's expression
    output: object = None                    # the value returned (frames)
    trace: list = field(default_factory=list)
    label: object = None      # a block call's label as written (None, str or _syntax.Label)


@dataclass
class Network:
    name: str                 # network definition name, e.g. "SESqueezeNext"
    file: str                 # file it was defined in
    params: dict              # the network parameters as used (defaults + overrides)
    graph: nx.DiGraph
    input: str                # name of the input node
    output: str               # the node whose value the network returns (its first output)
    sources: dict = field(default_factory=dict, repr=False)  # file -> text
    doc: str = ""
    scopes: dict = field(default_factory=dict, repr=False)   # name -> Scope
    definitions: dict = field(default_factory=dict, repr=False)  # block name -> S.Definition
    # ((name, node), ...) when the network returns outputs(name=tensor, ...); `output` is
    # then the first of them. Empty when it returns one tensor.
    outputs: tuple = ()
    # notes for the user ("file:line:col: ..."), e.g. a block that shadows a built-in
    notes: tuple = ()
    # the compiler._loader.Program it was elaborated from (None after a transform such as
    # compiler.reparam.deploy): backends elaborate it again with other parameter values
    program: object = field(default=None, repr=False, compare=False)

    def output_list(self) -> list:
        """[(name, node)] of every output, in order; the name is None for a network that
        returns one tensor."""
        return list(self.outputs) or [(None, self.output)]

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
