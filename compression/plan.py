"""Where activations are quantized (seed 002, sec. 3.5), worked out from the graph IR.

The seed quantizes "after each convolution": the output of a conv -> BN -> activation unit,
asymmetrically (unsigned) when the activation's output is non-negative (ReLU, sigmoid),
symmetrically otherwise; the network input symmetrically. Its special cases:
  - residual blocks: nothing is quantized right after the last conv of a branch; the sum is
    quantized instead. archc: a unit whose output flows only into merges (add, concat) is
    not quantized; the merge's own unit is (merge -> activation, one shared step);
  - SE modules: none of their tensors are quantized. archc: the gate of a channel scale,
    every layer between the global pool and the `mul` on a 1 x 1 tensor, stays float; the
    scaled tensor is the `mul` unit's output and is quantized like any other unit.
archc's rules for what the seed does not cover:
  - a unit starts at conv, linear, add, concat and mul, and runs on through BN, activations
    and identity while each has the previous layer as its only consumer and input (dropout
    ends a unit: it is the identity at inference and keeps its input's grid);
  - the network's output (the logits) stays float: no layer consumes it, so its precision
    costs nothing in the score;
  - average pools (global too) of a quantized tensor round back onto that tensor's grid
    (same step and range), as integer inference does; max pool, slice, flatten, dropout,
    identity and ReLU keep their input's grid; any other layer outside a unit gives float.

Scoring (the .quant spec) follows Table 1's convention: every tensor inside a quantized unit
counts at the activation precision (the activation runs fused into the requantization), so
do grid-keeping layers; float tensors count at `float_bits`.

Which ops start a unit, continue one, merge, keep or requantize a grid, keep or make the
sign non-negative, and have weights compression handles, is each op's `quant`
(compiler/ops.py's QuantRule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from archc.compiler import Network, ops


@dataclass
class Plan:
    """points: quantized tensor -> symmetric? (data-flow order; the network input first).
    requant: layer -> the point whose grid its output is rounded to (average pools).
    grid: layer -> the point whose grid its output lies on, or None (float).
    scored: layer -> True when the spec counts it at the activation precision."""
    input: str
    points: dict = field(default_factory=dict)
    requant: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    scored: dict = field(default_factory=dict)
    gates: frozenset = frozenset()
    weighted: tuple = ()


def _rule(net: Network, layer: str) -> ops.QuantRule:
    return ops.get(net.node(layer)["op"]).quant


def weighted_layers(net: Network) -> list:
    return [n for n in net.layers() if _rule(net, n).weights]


def gate_layers(net: Network) -> frozenset:
    """Layers computing the 1 x 1 gate of a channel scale (`mul`), back to the global pool."""
    out = set()
    for n in net.layers():
        d = net.node(n)
        if d["op"] != "mul" or _hw(d["shape"]) <= 1:
            continue
        stack = [i for i, s in zip(d["inputs"], d["in_shapes"]) if _hw(s) == 1]
        while stack:
            m = stack.pop()
            if m in out or m == net.input or _hw(net.node(m)["shape"]) != 1:
                continue
            out.add(m)
            stack.extend(i for i, s in zip(net.node(m)["inputs"], net.node(m)["in_shapes"])
                         if _hw(s) == 1)
    return frozenset(out)


def _hw(shape) -> int:
    return shape[1] * shape[2]


def nonnegative(net: Network) -> dict:
    """Whether each layer's output is >= 0 by construction of its op."""
    out = {net.input: False}
    for n in net.layers():
        d = net.node(n)
        sign = _rule(net, n).sign
        if sign == "nonneg":
            out[n] = True
        elif sign == "keep":
            out[n] = all(out[i] for i in d["inputs"])
        else:
            out[n] = False
    return out


def unit_end(net: Network, head: str) -> list:
    """The layers of the unit starting at `head`, in order."""
    members = [head]
    cur = head
    while True:
        consumers = list(net.graph.successors(cur))
        if cur == net.output or len(consumers) != 1:
            return members
        nxt = consumers[0]
        d = net.node(nxt)
        if _rule(net, nxt).unit != "chain" or len(d["inputs"]) != 1:
            return members
        members.append(nxt)
        cur = nxt


def make_plan(net: Network) -> Plan:
    gates = gate_layers(net)
    sign = nonnegative(net)
    plan = Plan(net.input, gates=gates, weighted=tuple(weighted_layers(net)))
    plan.points[net.input] = True
    plan.grid[net.input] = net.input
    unit_of: dict = {}
    for n in net.layers():
        if _rule(net, n).unit == "head" and n not in unit_of:
            members = unit_end(net, n)
            for m in members:
                unit_of[m] = members
    for n in net.layers():
        d = net.node(n)
        grid = _rule(net, n).grid
        members = unit_of.get(n)
        if members is not None:
            end = members[-1]
            quantized = (end not in gates and n not in gates and end != net.output
                         and not _only_merges(net, end))
            if n == end:
                if quantized:
                    plan.points[n] = not sign[n]
                    plan.grid[n] = n
                else:
                    plan.grid[n] = None
            else:
                plan.grid[n] = None
            plan.scored[n] = quantized
            continue
        src = plan.grid.get(d["inputs"][0]) if d["inputs"] else None
        if n in gates:
            plan.grid[n] = None
        elif grid == "requant" and src is not None:
            plan.requant[n] = src
            plan.grid[n] = src
        elif grid == "keep" and src is not None and all(plan.grid.get(i) == src
                                                        for i in d["inputs"]):
            plan.grid[n] = src
        else:
            plan.grid[n] = None
        plan.scored[n] = plan.grid[n] is not None
    return plan


def _only_merges(net: Network, layer: str) -> bool:
    if layer == net.output:
        return False
    consumers = list(net.graph.successors(layer))
    return bool(consumers) and all(_rule(net, c).merge for c in consumers)
