"""Building an ONNX graph from the IR: what the ONNX lowerings (backends/onnx_backend.py) call.

`GraphCtx` is the context one lowering sees (its layer, its inputs as ONNX value names, and
the way to add nodes, constants and weight initializers); `build_graph` runs the lowering
table over the network in data-flow order and returns the graph's nodes and initializers.

Names. The node that computes a layer is named after the IR layer and its output value is
the layer's name too; a lowering's helper nodes (an Unsqueeze, a constant) are named
`layer/part`. Weight initializers are named as the torch module's state_dict keys
(`stage3.block2.conv1.conv.weight`: the ModuleTree path of the backend, and the tensor's
name in its `weights` table), so a `model.safetensors` written by `archc train` maps onto
them one to one. Non-weight operands (Clip bounds, Slice starts, axes) are Constant nodes,
so the initializers are exactly the weights.

Outputs. A network returning one tensor has one graph output, its layer's value; one with
named outputs has a graph output per name, in order, named after it (an Identity of the
layer's value where the layer is named otherwise).

Ranks follow the torch module (lowering.ranks): a value is N x C after flatten and
linear, NCHW otherwise; ops that need NCHW unsqueeze an N x C input. So the graph's output
has the torch module's shape.

BN folding (`fold_bn`): a BatchNormalization whose input is a conv or linear layer used by
nothing else is folded into that layer's weight and bias (computed in float64); the BN
layer then has no node (its consumers read the folded layer's output), or an Unsqueeze
where torch's BN would have made an N x C value NCHW.
"""
from __future__ import annotations

import numpy as np

from archc.compiler import ArchError, Network, ops

from . import lowering as L


class GraphCtx:
    """What one ONNX lowering sees and can do.

    op, name, attrs, shape   the IR layer (shape: C, H, W)
    x(i) / rank(i)           input i's value name and runtime rank (4: NCHW, 2: N x C)
    x4(i)                    input i as NCHW
    xs()                     all inputs, NCHW when any of them is
    const(part, value)       a Constant node `layer/part` holding `value`
    weight(tensor, shape)    the initializer of the registry tensor (None when the layer has
                             none: bias=false), checked to have `shape`
    node(op_type, inputs, part=None, **attrs)   add a node; part None: the layer's own node
                             (named after the layer, output = the layer's value)
    """

    def __init__(self, graph: "_Graph", name: str):
        d = graph.net.node(name)
        self.g, self.name, self.op = graph, name, d["op"]
        self.attrs, self.shape, self.in_shapes = d["attrs"], d["shape"], d["in_shapes"]
        self._inputs = [graph.values[i] for i in d["inputs"]]
        self._ranks = [graph.ranks[i] for i in d["inputs"]]
        self.output = None

    def a(self, key):
        return self.attrs[key]

    def x(self, i: int = 0) -> str:
        return self._inputs[i]

    def rank(self, i: int = 0) -> int:
        return self._ranks[i]

    def x4(self, i: int = 0) -> str:
        if self._ranks[i] == 4:
            return self._inputs[i]
        return self.node("Unsqueeze", [self._inputs[i], self.const(f"axes{i}", [2, 3])],
                         part=f"unsqueeze{i}")

    def xs(self) -> list:
        if len(set(self._ranks)) == 1:
            return list(self._inputs)
        return [self.x4(i) for i in range(len(self._inputs))]

    def const(self, part: str, value, dtype=None) -> str:
        from onnx import numpy_helper
        arr = np.asarray(value, dtype=dtype or (np.int64 if _is_int(value) else np.float32))
        out = self.g.fresh(f"{self.name}/{part}")
        self.g.add_node("Constant", [], out, out, value=numpy_helper.from_array(arr, out))
        return out

    def weight(self, tensor: str, shape: tuple) -> str | None:
        return self.g.weight(self.name, tensor, tuple(shape))

    def node(self, op_type: str, inputs: list, part: str | None = None, **attrs) -> str:
        if part is None:
            if self.output is not None:
                raise L.LoweringError(f"internal: the {op_type} lowering of '{self.name}' "
                                      "emits two layer nodes")
            self.output = out = self.g.fresh(self.name)
            doc = self.g.doc(self.name)
            if self.name in self.g.fold_into:
                doc += f" BatchNormalization '{self.g.fold_into[self.name]}' folded in."
        else:
            out, doc = self.g.fresh(f"{self.name}/{part}"), None
        self.g.add_node(op_type, inputs, out, out, doc=doc, **attrs)
        return out


def _is_int(value) -> bool:
    return np.asarray(value).dtype.kind in "iub"


class _Graph:
    """The nodes and initializers as they are built, and the names taken."""

    def __init__(self, net: Network, backend, tensors: dict, fold_bn: bool, ranks: dict,
                 doc):
        from onnx import helper
        self.net, self.backend, self.helper = net, backend, helper
        self.tree = L.module_tree(net, backend)
        self.tensors, self.ranks, self.doc = tensors, ranks, doc
        self.nodes: list = []
        self.initializers: list = []
        self.used: set = set()
        self.taken: set = {net.input}
        self.values: dict = {net.input: net.input}
        # a named output is a graph output of its name (an Identity of its layer's value,
        # unless the layer has that name): no other value may take it
        for key, node in net.outputs:
            if key == net.input:
                span = net.node(node).get("span")
                raise ArchError(f"the onnx backend names the graph's input '{key}', so no "
                                f"output can have that name (output '{key}', layer '{node}')",
                                span, hint="rename the output",
                                source=net.sources.get(span.file) if span else None)
            if key != node:
                self.taken.add(key)
        for layer in L.stateful_layers(net):   # weight names are never value names
            self.taken.update(self.key(layer, t) for t in _counts(net, layer))
        self.folded = _fold_pairs(net) if fold_bn else {}
        self.fold_into = {p: bn for bn, p in self.folded.items()}
        self.overrides: dict = {}
        for bn, p in self.folded.items():
            self.overrides[p] = _folded(self, p, bn)

    def fresh(self, name: str) -> str:
        """`name`, or `name_`, `name__` ... when a value or weight has it already (a layer
        `weight` in a block `eval_` beside a conv `eval`, whose torch path is `eval_`)."""
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def add_node(self, op_type, inputs, output, name, doc=None, **attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=name,
                                                doc_string=doc, **attrs))

    def key(self, layer: str, tensor: str) -> str:
        """The initializer's name: the torch state_dict key of the layer's tensor."""
        tname, perm = self.backend.weights[self.net.node(layer)["op"]][tensor]
        assert perm is None, "ONNX initializers use the torch layout"
        return f"{self.tree.path(layer)}.{tname}"

    def array(self, layer: str, tensor: str, shape: tuple):
        """The layer's tensor from the weights (or the folded one); None when it has none."""
        if tensor in self.overrides.get(layer, {}):
            return self.overrides[layer][tensor]
        counts = _counts(self.net, layer)
        if tensor not in counts:
            return None
        key = self.key(layer, tensor)
        if key not in self.tensors:
            raise ArchError(f"weights for layer '{layer}' are missing: no '{key}'",
                            hint="the weights must be the torch module's state_dict of this "
                                 "network with these parameters (as `archc train` writes)")
        arr = np.asarray(self.tensors[key])
        if tuple(arr.shape) != shape:
            raise ArchError(f"'{key}' has shape {tuple(arr.shape)}; layer '{layer}' needs "
                            f"{shape}", hint="were the weights trained with other parameters?")
        if arr.dtype.kind != "f":
            raise ArchError(f"'{key}' holds {arr.dtype} values; weights are floating point")
        assert arr.size == counts[tensor], (layer, tensor, arr.size, counts[tensor])
        self.used.add(key)
        return arr.astype(np.float32)

    def weight(self, layer: str, tensor: str, shape: tuple) -> str | None:
        arr = self.array(layer, tensor, shape)
        if arr is None:
            return None
        from onnx import numpy_helper
        key = self.key(layer, tensor)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), key))
        return key


def _counts(net: Network, layer: str) -> dict:
    """The registry's tensors of a layer: {name: element count} (params and buffers)."""
    d = net.node(layer)
    op = ops.get(d["op"])
    args = (d["in_shapes"], d["shape"], d["attrs"])
    return {**op.params(*args), **op.buffers(*args)}


def _consumers(net: Network) -> dict:
    uses: dict = {n: [] for n in net.graph.nodes}
    for n in net.layers():
        for i in net.node(n)["inputs"]:
            uses[i].append(n)
    return uses


def _fold_pairs(net: Network) -> dict:
    """BN layer -> the layer it folds into (its only input, an op whose registry entry says
    `folds_bn`, used only by it)."""
    uses = _consumers(net)
    outs = {node for _, node in net.output_list()}   # an output keeps its own value
    out = {}
    for n in net.layers():
        d = net.node(n)
        if d["op"] != "bn":
            continue
        p = d["inputs"][0]
        if ops.get(net.node(p)["op"]).folds_bn and uses[p] == [n] and p not in outs:
            out[n] = p
    return out


def _folded(g: _Graph, layer: str, bn: str) -> dict:
    """The weight and bias of `layer` with the BN layer `bn` folded in (float64 arithmetic)."""
    d, b = g.net.node(layer), g.net.node(bn)
    c = d["shape"][0]
    w_shape = _weight_shape(d)
    w = g.array(layer, "weight", w_shape).astype(np.float64)
    bias = g.array(layer, "bias", (c,))
    bias = np.zeros(c) if bias is None else bias.astype(np.float64)
    mean = g.array(bn, "running_mean", (c,)).astype(np.float64)
    var = g.array(bn, "running_var", (c,)).astype(np.float64)
    gamma = g.array(bn, "weight", (c,))
    beta = g.array(bn, "bias", (c,))
    gamma = np.ones(c) if gamma is None else gamma.astype(np.float64)
    beta = np.zeros(c) if beta is None else beta.astype(np.float64)
    scale = gamma / np.sqrt(var + b["attrs"]["eps"])
    w = w * scale.reshape((c,) + (1,) * (w.ndim - 1))
    bias = (bias - mean) * scale + beta
    return {"weight": w.astype(np.float32), "bias": bias.astype(np.float32)}


def _weight_shape(d: dict) -> tuple:
    """The torch layout's weight shape of a conv (O, I/g, kh, kw) or linear (out, in) layer."""
    if d["op"] == "conv":
        return (d["shape"][0], d["in_shapes"][0][0] // d["attrs"]["groups"]) + \
            tuple(d["attrs"]["kernel"])
    return (d["shape"][0], d["in_shapes"][0][0])


def build_graph(net: Network, backend, tensors: dict, fold_bn: bool, ranks: dict, doc):
    """Lower every layer: (nodes, initializers, {layer: value name}, folded {bn: layer}).

    tensors: {torch state_dict key: array}; doc(layer) -> the layer node's doc string.
    Every op of `net` has a lowering (lowering.check_lowerable)."""
    g = _Graph(net, backend, tensors, fold_bn, ranks, doc)
    for name in net.layers():
        if name in g.folded:
            g.values[name] = _after_fold(g, name)
            continue
        ctx = GraphCtx(g, name)
        backend.lower_op(ctx)
        if ctx.output is None:
            raise L.LoweringError(f"internal: the '{ctx.op}' lowering of '{name}' emits no "
                                  "layer node")
        g.values[name] = ctx.output
    from archc._checks import no_extra_tensors
    no_extra_tensors(tensors, g.used, net.name)
    return g.nodes, g.initializers, g.values, g.folded


def _after_fold(g: _Graph, bn: str) -> str:
    """A folded BN layer's value: the folded layer's, made NCHW where torch's BN made it so."""
    source = g.values[g.folded[bn]]
    if g.ranks[g.folded[bn]] == g.ranks[bn]:
        return source
    ctx = GraphCtx(g, bn)
    return ctx.node("Unsqueeze", [source, ctx.const("axes", [2, 3])])
