"""The deploy transform (structural re-parameterisation, docs/reparam.md): a training-form
Network in, the single-branch Network it deploys as out, with the same function in eval mode.

No marking is needed in the .arch file: the compiler recognises what is linear and merges it.

- A *merge*: an `add` whose every input is a linear branch of one tensor X -- a conv (no
  dilation, odd kernel, centred padding (k - 1) / 2) optionally followed by a BN, a BN of X
  (identity BN), or X itself -- with at least one conv, one stride and one group count among
  the convs, each branch used by the add alone. It becomes one conv with a bias: the largest kernel, every
  smaller kernel padded into it (1 x 1 into 3 x 3), identity branches as a centred identity
  kernel (grouped and depthwise included), every BN folded into its branch, the branches
  summed. RepVGG's 3x3 + 1x1 + identity, MobileOne's k over-parameterised branches.
- A *fold*: any other conv followed by a BN that is its only consumer (and whose only input
  it is) becomes that conv with a bias (BN folding); the BN's place is taken by an `identity`
  (free), so that the blocks keep their structure.

`fusions(net)` lists them (backends/reparam_weights.py carries weights through the same
list); `deploy(net)` applies them. Pure graph work: no torch or jax here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import networkx as nx

from ._values import Tensor
from .ir import Network


@dataclass(frozen=True)
class Branch:
    """One linear branch of a fusion: conv then BN, a conv alone, a BN alone (identity BN)
    or neither (the input itself)."""
    conv: str | None
    bn: str | None


@dataclass(frozen=True)
class Fusion:
    """Branches of one input summed (or one conv + BN) -> one conv with a bias named `name`.
    `replaces` is the node whose value the new conv takes over (the add, or the BN)."""
    name: str
    replaces: str
    source: str
    branches: tuple
    out: int
    kernel: tuple
    stride: tuple
    groups: int


def _only_consumer(net: Network, node: str, consumer: str) -> bool:
    succ = list(net.graph.successors(node))
    uses = sum(1 for i in net.node(consumer)["inputs"] if i == node)
    return succ == [consumer] and uses == 1 and node not in _outputs(net)


def _outputs(net: Network) -> set:
    return {n for _, n in net.output_list()}


def _centred(a: dict) -> bool:
    k, p = a["kernel"], a["padding"]
    return (a["dilation"] == (1, 1) and len(p) == 2 and all(x % 2 for x in k)
            and tuple(p) == ((k[0] - 1) // 2, (k[1] - 1) // 2))


def _branch(net: Network, node: str, add: str):
    """(Branch, its input) for an input of `add`."""
    d = net.node(node)
    if d["op"] == "bn" and _only_consumer(net, node, add):
        (src,) = d["inputs"]
        if net.node(src)["op"] == "conv" and _only_consumer(net, src, node):
            return Branch(src, node), net.node(src)["inputs"][0]
        return Branch(None, node), src
    if d["op"] == "conv" and _only_consumer(net, node, add):
        return Branch(node, None), d["inputs"][0]
    return Branch(None, None), node


def _merge(net: Network, add: str, taken: set, used: set) -> Fusion | None:
    d = net.node(add)
    if len(d["inputs"]) < 2:
        return None
    pairs = [_branch(net, i, add) for i in d["inputs"]]
    sources = {s for _, s in pairs}
    if len(sources) != 1:
        return None
    (src,) = sources
    convs = [net.node(b.conv)["attrs"] for b, _ in pairs if b.conv]
    if not convs or not all(_centred(a) for a in convs):   # BNs and X alone: no conv to make
        return None
    strides = {a["stride"] for a in convs}
    groups = {a["groups"] for a in convs}
    if len(strides) != 1 or len(groups) != 1:
        return None
    cin, cout = net.node(src)["shape"][0], d["shape"][0]
    identity = any(b.conv is None for b, _ in pairs)
    if identity and (strides != {(1, 1)} or cin != cout):
        return None
    names = {n for b, _ in pairs for n in (b.conv, b.bn) if n}
    if names & taken:
        return None
    kernel = (max(a["kernel"][0] for a in convs), max(a["kernel"][1] for a in convs))
    scope = d.get("scope", "")
    name = f"{scope}.reparam_conv" if scope else "reparam_conv"
    if name in net.graph or name in used:
        name = f"{add}_conv"
    while name in net.graph or name in used:
        name += "_"
    return Fusion(name, add, src, tuple(b for b, _ in pairs), cout, kernel, strides.pop(),
                  groups.pop())


def fusions(net: Network) -> list:
    """The merges and folds the deploy transform makes, in data-flow order."""
    out, taken = [], set()
    for n in net.layers():
        if net.node(n)["op"] == "add":
            f = _merge(net, n, taken, {g.name for g in out})
            if f is not None:
                out.append(f)
                taken |= {x for b in f.branches for x in (b.conv, b.bn) if x}
    for n in net.layers():
        d = net.node(n)
        if d["op"] != "bn" or n in taken:
            continue
        (conv,) = d["inputs"]
        if net.node(conv)["op"] == "conv" and conv not in taken and \
                _only_consumer(net, conv, n):
            a = net.node(conv)["attrs"]
            out.append(Fusion(conv, n, net.node(conv)["inputs"][0], (Branch(conv, n),),
                              a["out"], a["kernel"], a["stride"], a["groups"]))
            taken |= {conv, n}
    order = {n: i for i, n in enumerate(net.graph.nodes)}
    return sorted(out, key=lambda f: order[f.replaces])


def _rename(value, renamed: dict):
    """`value` with every Tensor of a replaced node pointing at its replacement."""
    if isinstance(value, Tensor):
        return Tensor(renamed[value.node], value.shape) if value.node in renamed else value
    if isinstance(value, list):
        return [_rename(v, renamed) for v in value]
    if isinstance(value, tuple):
        return tuple(_rename(v, renamed) for v in value)
    if isinstance(value, dict):
        return {k: _rename(v, renamed) for k, v in value.items()}
    return value


def deploy(net: Network) -> Network:
    """The deployed form of `net`: every fusion applied (the input is not changed). A network
    with nothing to fuse comes back equal to itself."""
    fs = fusions(net)
    merges = [f for f in fs if len(f.branches) > 1]
    folded = {f.name for f in fs if len(f.branches) == 1}
    passed = {f.replaces for f in fs if len(f.branches) == 1}
    removed, renamed, at = set(), {}, {}
    for f in merges:
        for b in f.branches:
            removed |= {x for x in (b.conv, b.bn) if x}
        removed.add(f.replaces)
        renamed[f.replaces] = f.name
        at[f.replaces] = f
    g = nx.DiGraph()
    for n, d in net.graph.nodes(data=True):
        if n in at:
            f = at[n]
            source = renamed.get(f.source, f.source)
            g.add_node(f.name, op="conv", inputs=(source,),
                       in_shapes=(net.node(f.source)["shape"],), shape=d["shape"],
                       span=d["span"], scope=d.get("scope", ""), exprs={},
                       attrs={"out": f.out, "kernel": f.kernel, "stride": f.stride,
                              "padding": ((f.kernel[0] - 1) // 2, (f.kernel[1] - 1) // 2),
                              "dilation": (1, 1), "groups": f.groups, "bias": True})
            g.add_edge(source, f.name)
            continue
        if n in removed:
            continue
        data = dict(d, inputs=tuple(renamed.get(i, i) for i in d["inputs"]))
        if n in folded:     # a fold: the conv takes the BN's bias, the BN passes through
            data["attrs"] = {**d["attrs"], "bias": True}
            data["exprs"] = {k: v for k, v in d.get("exprs", {}).items() if k != "bias"}
        elif n in passed:
            data.update(op="identity", attrs={}, exprs={})
        g.add_node(n, **data)
        for i in data["inputs"]:
            g.add_edge(i, n)
    scopes = {}
    for name, s in net.scopes.items():
        trace = []
        for ev in s.trace:
            if ev[0] == "layer" and ev[1] in at:
                ev = ("layer", at[ev[1]].name)
            elif ev[0] == "layer" and ev[1] in removed:
                continue
            elif ev[0] in ("assign", "return"):
                ev = (*ev[:-1], _rename(ev[-1], renamed))
            trace.append(ev)
        scopes[name] = dataclasses.replace(s, trace=trace, output=_rename(s.output, renamed))
    # a block call left without layers (a conv + BN branch merged away) is no longer a scope
    held = {d.get("scope", "") for _, d in g.nodes(data=True)}
    live = {name for name in scopes
            if any(h == name or h.startswith(name + ".") for h in held) or name == ""}
    for name in list(scopes):
        if name not in live:
            del scopes[name]
    for s in scopes.values():
        s.trace = [ev for ev in s.trace if not (ev[0] == "scope" and ev[1] not in live)]
    return dataclasses.replace(
        net, graph=g, scopes=scopes, program=None, output=renamed.get(net.output, net.output),
        outputs=tuple((k, renamed.get(v, v)) for k, v in net.outputs))
