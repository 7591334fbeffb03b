"""Static analysis over the IR: per-layer shapes, parameters, MACs, memory; totals.

Every number comes from the op registry (compiler/ops.py); this module only sums,
orders and folds them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from . import ops
from .ir import Network


@dataclass(frozen=True)
class LayerCost:
    name: str
    op: str
    inputs: tuple             # input shapes, (C, H, W) each
    output: tuple             # (C, H, W)
    attrs: dict
    params: int               # trainable parameters
    param_tensors: dict       # {"weight": n, "bias": n}
    buffers: int              # BN running statistics
    macs: int                 # multiply-accumulates (conv, linear, attention products)
    elementwise_ops: int      # every other arithmetic op
    activations: int          # elements of the output tensor

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def kernel(self):
        return self.attrs.get("kernel")

    @property
    def stride(self):
        return self.attrs.get("stride")

    @property
    def padding(self):
        return self.attrs.get("padding")

    @property
    def groups(self):
        return self.attrs.get("groups")


@dataclass(frozen=True)
class OutputCost:
    """One output of the network and what computing it alone needs: the parameters and
    MACs of the layers it depends on (itself included). For a network with auxiliary
    heads, the first output's numbers are its inference cost."""

    name: str | None          # None: the network returns one tensor
    layer: str
    shape: tuple              # (C, H, W)
    params: int
    macs: int


@dataclass
class Analysis:
    network: Network
    layers: list
    totals: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)   # OutputCost, in the network's order

    def layer(self, name: str) -> LayerCost:
        for lc in self.layers:
            if lc.name == name:
                return lc
        raise KeyError(name)


def layer_cost(net: Network, name: str) -> LayerCost:
    d = net.node(name)
    op = ops.get(d["op"])
    ins, out, a = list(d["in_shapes"]), d["shape"], d["attrs"]
    p = op.params(ins, out, a)
    b = op.buffers(ins, out, a)
    return LayerCost(name=name, op=d["op"], inputs=tuple(ins), output=out, attrs=a,
                     params=sum(p.values()), param_tensors=p, buffers=sum(b.values()),
                     macs=op.macs(ins, out, a), elementwise_ops=op.elementwise_ops(ins, out, a),
                     activations=ops.numel(out))


def peak_activations(net: Network) -> tuple[int, str]:
    """Largest number of tensor elements alive at once, executing in data-flow order.

    A tensor is alive from the op that produces it until its last consumer has run (the
    network's outputs stay alive to the end). No in-place reuse is assumed.
    """
    order = list(net.graph.nodes)
    pos = {n: i for i, n in enumerate(order)}
    last_use = {n: pos[n] for n in order}
    for n in order:
        for src in net.node(n)["inputs"]:
            last_use[src] = max(last_use[src], pos[n])
    for _, node in net.output_list():
        last_use[node] = len(order)
    live, peak, at = 0, 0, net.input
    dying: dict[int, int] = {}
    for i, n in enumerate(order):
        live += ops.numel(net.node(n)["shape"])
        if live > peak:
            peak, at = live, n
        dying.setdefault(last_use[n], 0)
        dying[last_use[n]] += ops.numel(net.node(n)["shape"])
        live -= dying.pop(i, 0)
    return peak, at


def analyze(net: Network, bits: int = 32) -> Analysis:
    layers = [layer_cost(net, n) for n in net.layers()]
    peak, at = peak_activations(net)
    params = sum(lc.params for lc in layers)
    buffers = sum(lc.buffers for lc in layers)
    totals = {
        "params": params,
        "buffers": buffers,
        "macs": sum(lc.macs for lc in layers),
        "flops": 2 * sum(lc.macs for lc in layers),
        # of which products of two activations (attention), the rest conv and linear
        "matmul_macs": sum(lc.macs for lc in layers if ops.get(lc.op).bitops.kind == "matmul"),
        "elementwise_ops": sum(lc.elementwise_ops for lc in layers),
        "activations": sum(lc.activations for lc in layers),
        "peak_activations": peak,
        "peak_activations_at": at,
        "layers": len(layers),
        "precision_bits": bits,
        "size_bytes": params * bits // 8,
        "size_bytes_with_buffers": (params + buffers) * bits // 8,
    }
    return Analysis(net, layers, totals, output_costs(net, layers))


def output_costs(net: Network, layers: list) -> list:
    by_name = {lc.name: lc for lc in layers}
    out = []
    for name, node in net.output_list():
        needed = [by_name[n] for n in nx.ancestors(net.graph, node) | {node} if n in by_name]
        out.append(OutputCost(name, node, net.node(node)["shape"],
                              sum(lc.params for lc in needed), sum(lc.macs for lc in needed)))
    return out


# ---- folding repeated blocks for tables -------------------------------------------------------
@dataclass
class Row:
    name: str                 # display name, e.g. "stage3.block[2-8].conv1"
    layer: LayerCost          # the first instance
    repeat: int

    @property
    def params(self) -> int:
        return self.layer.params * self.repeat

    @property
    def macs(self) -> int:
        return self.layer.macs * self.repeat


def _tree(layers):
    """Nested ordered scopes: list of ("leaf", LayerCost) / ("scope", name, children)."""
    root: list = []
    index: dict = {(): root}
    for lc in layers:
        parts = lc.name.split(".")
        for depth in range(1, len(parts)):
            key = tuple(parts[:depth])
            if key not in index:
                children: list = []
                index[key] = children
                index[key[:-1]].append(("scope", parts[depth - 1], children))
        index[tuple(parts[:-1])].append(("leaf", lc))
    return root


def _signature(children, prefix=""):
    sig = []
    for c in children:
        if c[0] == "leaf":
            lc = c[1]
            rel = lc.name.rsplit(".", 1)[-1]
            sig.append((prefix + rel, lc.op, repr(sorted(lc.attrs.items())), lc.inputs, lc.output))
        else:
            sig.extend(_signature(c[2], prefix + c[1] + "."))
    return tuple(sig)


_NUM = re.compile(r"^(.*?)(\d+)$")


def _run_name(names):
    if len(names) == 1:
        return names[0]
    m0, m1 = _NUM.match(names[0]), _NUM.match(names[-1])
    if m0 and m1 and m0.group(1) == m1.group(1):
        return f"{m0.group(1)}[{m0.group(2)}-{m1.group(2)}]"
    return f"{names[0]}..{names[-1]}"


def fold(layers, enabled: bool = True) -> list:
    """Rows for a layer table; consecutive sibling scopes with identical layers fold into one."""
    rows: list = []

    def walk(children, prefix, repeat):
        i = 0
        while i < len(children):
            c = children[i]
            if c[0] == "leaf":
                rows.append(Row(prefix + c[1].name.rsplit(".", 1)[-1], c[1], repeat))
                i += 1
                continue
            j = i + 1
            if enabled:
                sig = _signature(c[2])
                while j < len(children) and children[j][0] == "scope" and _signature(children[j][2]) == sig:
                    j += 1
            names = [children[k][1] for k in range(i, j)]
            walk(c[2], prefix + _run_name(names) + ".", repeat * (j - i))
            i = j

    walk(_tree(layers), "", 1)
    return rows
