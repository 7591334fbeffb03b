"""Lower the graph IR to PyTorch source: one `nn.Module` subclass in one Python file.

    build_source(net, init=None) -> str     the file's text (deterministic)
    compile_module(net, init=None)           an instance, built by exec of that text
    write_source(net, path, init=None)       write it atomically (temp file + rename)

Each op kind lowers in exactly one place: an entry of `LOWER` (op name -> function). A
lowering returns the layer's module constructor (source text, or None for a functional
op) and the expression its forward step evaluates. The generated file imports only torch.

Layout: the IR's shapes are (C, H, W); at run time a value is NCHW (rank 4) or, after
flatten/linear, (N, C) (rank 2) -- the IR's C x 1 x 1. Ops that need NCHW restore it with
`[:, :, None, None]`; linear flattens its input.
"""
from __future__ import annotations

import os
import textwrap

from archc.compiler import Network

from . import lowering as L
from archc._files import write_atomic
from .lowering import py_number as num
from .lowering import py_pair as pair

# Attribute names nn.Module uses; a layer named like one gets a trailing '_'.
_MODULE_ATTRS = frozenset({
    "add_module", "apply", "bfloat16", "buffers", "children", "cpu", "cuda", "double", "dump_patches",
    "eval", "extra_repr", "float", "forward", "get_buffer", "get_parameter", "get_submodule",
    "half", "ipu", "load_state_dict", "modules", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "register_buffer", "register_module",
    "register_parameter", "requires_grad_", "share_memory", "state_dict", "to", "to_empty",
    "train", "training", "type", "xpu", "zero_grad", "call_super_init", "compile", "mtia",
    "probe", "T_destination", "init_weights"})
_VAR_RESERVED = frozenset({"torch", "nn", "F", "self"})


class _Ctx:
    """What a lowering sees: the step, its input variables and their runtime ranks."""

    def __init__(self, step: L.Step, ranks: list, attr_path: str | None):
        self.step, self.a, self.ranks, self.path = step, step.attrs, ranks, attr_path

    def x(self, i: int = 0) -> str:
        """Input i as written, whatever its rank."""
        return self.step.inputs[i]

    def x4(self, i: int = 0) -> str:
        """Input i as NCHW."""
        v = self.step.inputs[i]
        return v if self.ranks[i] == 4 else f"{v}[:, :, None, None]"

    def cin(self, i: int = 0) -> str:
        return num(self.step.in_shapes[i][0])

    def xs4(self) -> list:
        """All inputs, as NCHW when any of them is NCHW (they are C x 1 x 1 otherwise)."""
        if all(r == self.ranks[0] for r in self.ranks):
            return list(self.step.inputs)
        return [self.x4(i) for i in range(len(self.ranks))]


def _kw(**kwargs) -> str:
    """Keyword arguments that differ from their defaults: name=(value, default, formatter)."""
    out = []
    for k, (v, default, f) in kwargs.items():
        if v != default:
            out.append(f"{k}={f(v)}")
    return "".join(", " + s for s in out)


# ---- lowerings: op name -> (ctx) -> (module constructor | None, forward expression, rank) ----
def _conv(c):
    a = c.a
    ctor = (f"nn.Conv2d({c.cin()}, {num(a['out'])}, {pair(a['kernel'])}"
            + _kw(stride=(a["stride"], (1, 1), pair), padding=(a["padding"], (0, 0), pair),
                  dilation=(a["dilation"], (1, 1), pair), groups=(a["groups"], 1, num),
                  bias=(a["bias"], True, num)) + ")")
    return ctor, f"self.{c.path}({c.x4()})", 4


def _linear(c):
    ctor = f"nn.Linear({c.cin()}, {num(c.a['out'])}" + _kw(bias=(c.a["bias"], True, num)) + ")"
    arg = c.x() if c.ranks[0] == 2 else f"torch.flatten({c.x()}, 1)"
    return ctor, f"self.{c.path}({arg})", 2


def _bn(c):
    a = c.a
    ctor = (f"nn.BatchNorm2d({c.cin()}" + _kw(eps=(a["eps"], 1e-5, num),
                                              momentum=(a["momentum"], 0.1, num),
                                              affine=(a["affine"], True, num)) + ")")
    return ctor, f"self.{c.path}({c.x4()})", 4


def _lrn(c):
    a = c.a
    return None, (f"F.local_response_norm({c.x4()}, {num(a['size'])}, alpha={num(a['alpha'])}, "
                  f"beta={num(a['beta'])}, k={num(a['k'])})"), 4


def _dropout(c):
    return f"nn.Dropout(p={num(c.a['p'])})", f"self.{c.path}({c.x()})", c.ranks[0]


def _act(template: str):
    def lower(c):
        return None, template.format(x=c.x()), c.ranks[0]
    return lower


def _pool(fn: str, extra: tuple = ()):
    def lower(c):
        a = c.a
        kw = _kw(stride=(a["stride"], a["kernel"], pair), padding=(a["padding"], (0, 0), pair),
                 ceil_mode=(a["ceil_mode"], False, num),
                 **{k: (a[k], d, num) for k, d in extra})
        return None, f"F.{fn}({c.x4()}, {pair(a['kernel'])}{kw})", 4
    return lower


def _concat(c):
    xs = c.xs4()
    return None, f"torch.cat([{', '.join(xs)}], dim=1)", max(c.ranks)


def _add(c):
    return None, " + ".join(c.xs4()), max(c.ranks)


def _mul(c):
    xs = c.xs4()
    return None, f"{xs[0]} * {xs[1]}", max(c.ranks)


def _slice(c):
    return None, f"{c.x()}[:, {num(c.a['start'])}:{num(c.a['stop'])}]", c.ranks[0]


LOWER = {
    "conv": _conv,
    "linear": _linear,
    "bn": _bn,
    "lrn": _lrn,
    "dropout": _dropout,
    "relu": _act("F.relu({x})"),
    "relu6": _act("F.relu6({x})"),
    "elu": lambda c: (None, f"F.elu({c.x()}{_kw(alpha=(c.a['alpha'], 1.0, num))})", c.ranks[0]),
    "leaky_relu": lambda c: (None, f"F.leaky_relu({c.x()}"
                                   f"{_kw(negative_slope=(c.a['slope'], 0.01, num))})", c.ranks[0]),
    "sigmoid": _act("torch.sigmoid({x})"),
    "tanh": _act("torch.tanh({x})"),
    "swish": _act("F.silu({x})"),
    "hswish": _act("F.hardswish({x})"),
    "hsigmoid": _act("F.hardsigmoid({x})"),
    "maxpool": _pool("max_pool2d"),
    "avgpool": _pool("avg_pool2d", (("count_include_pad", True),)),
    "global_avgpool": lambda c: (None, f"F.adaptive_avg_pool2d({c.x4()}, 1)", 4),
    "global_maxpool": lambda c: (None, f"F.adaptive_max_pool2d({c.x4()}, 1)", 4),
    "identity": lambda c: (None, c.x(), c.ranks[0]),
    "flatten": lambda c: (None, f"torch.flatten({c.x()}, 1)", 2),
    "slice": _slice,
    "concat": _concat,
    "add": _add,
    "mul": _mul,
}

# Ops whose layers are modules (they hold parameters, buffers or a train/eval mode).
STATEFUL = frozenset({"conv", "linear", "bn", "dropout"})

_INIT_CODE = {
    "xavier_uniform": "nn.init.xavier_uniform_(m.weight)",
    "xavier_normal": "nn.init.xavier_normal_(m.weight)",
    "kaiming_normal": 'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")',
    "kaiming_uniform": 'nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")',
}


def _docstring(net: Network, init: str) -> list:
    lines = [f"{net.name}, compiled by archc from {os.path.basename(net.file)}."]
    if net.doc:
        lines += [""] + textwrap.wrap(net.doc, width=88)
    lines += ["", "Parameters as used:"]
    lines += [f"    {k} = {L.value_text(v)}" for k, v in net.params.items()]
    c, h, w = net.input_shape
    oc, oh, ow = net.output_shape
    lines += ["", f"Input: N x {c} x {h} x {w} (NCHW). Output: N x {oc}"
              + ("" if (oh, ow) == (1, 1) else f" x {oh} x {ow}") + ".",
              f"Weight initialisation: {init}."]
    body = [L.doc_text(s) for s in lines]
    return ['    """' + body[0]] + [("    " + s) if s else "" for s in body[1:]] + ['    """']




def module_tree(net: Network) -> L.ModuleTree:
    """The nn.Module attribute tree of the generated module (also used by backends/weights.py)."""
    return L.ModuleTree(net, [n for n in net.layers() if net.node(n)["op"] in STATEFUL], _MODULE_ATTRS)


def build_source(net: Network, init: str | None = None, tap: bool = False) -> str:
    """The PyTorch module for `net` as Python source text.

    init: weight initialisation override (else the network's `init` parameter, else
    PyTorch's defaults). tap: pass every layer's output through `tap(layer_name, value)`
    (tap mode; tests check every layer's runtime shape with it).
    """
    L.check_lowerable(net, LOWER, "torch")
    scheme = L.init_scheme(net, init)
    cls = L.class_name(net)
    out_var, steps = L.forward_steps(net, _VAR_RESERVED)
    tree = module_tree(net)

    var_rank = {"x": 4}  # runtime rank of each variable: 4 (NCHW) or 2 (N x C)

    def lower(s):
        path = tree.path(s.name) if s.op in STATEFUL else None
        ctor, expr, r = LOWER[s.op](_Ctx(s, [var_rank[v] for v in s.inputs], path))
        assert (ctor is not None) == (s.op in STATEFUL), s.op
        var_rank[s.output] = r
        return ctor, expr

    ctors, body = L.emit_forward(steps, lower, tap)

    src = ['"""' + L.doc_text(f"{cls}: PyTorch module generated by archc from "
                              f"{os.path.basename(net.file)}.") ,
           "",
           "Do not edit: regenerate with `archc build --backend torch`.",
           '"""',
           "import torch",
           "import torch.nn.functional as F",
           "from torch import nn"] + (L.TAP_SOURCE.splitlines() if tap else []) + ["", "",
           f"class {cls}(nn.Module):"]
    src += _docstring(net, scheme)
    src += ["", "    def __init__(self):", "        super().__init__()"]
    for node in tree.walk():
        if node.layer is None:
            src.append(f"        self.{node.path} = nn.Module()")
        else:
            src += L.wrap_assign(f"self.{node.path}", ctors[node.layer], "        ")
    if scheme != "default":
        src.append("        self.init_weights()")
        src += ["", "    def init_weights(self):",
                f'        """{scheme} weights and zero biases for every convolution and linear layer."""',
                "        for m in self.modules():",
                "            if isinstance(m, (nn.Conv2d, nn.Linear)):",
                f"                {_INIT_CODE[scheme]}",
                "                if m.bias is not None:",
                "                    nn.init.zeros_(m.bias)"]
    src += ["", "    def forward(self, x):"] + body + [f"        return {out_var}", ""]
    return "\n".join(src)


def compile_module(net: Network, init: str | None = None, tap=None):
    """An instance of the generated module: exec of build_source's text (archc wrote it from
    validated IR: names are identifiers, numbers are repr of int/float).

    tap: build in tap mode, passing every layer's output through tap(layer_name, value) ->
    value in data-flow order (True: tap mode with no function yet; see lowering.set_tap)."""
    src = build_source(net, init=init, tap=tap is not None)
    namespace: dict = {"__name__": f"archc_generated_{net.name}"}
    exec(compile(src, f"<archc torch: {net.name}>", "exec"), namespace)  # noqa: S102
    module = namespace[L.class_name(net)]()
    if callable(tap):
        L.set_tap(module, tap)
    return module


def write_source(net: Network, path, init: str | None = None) -> str:
    """Write the module to `path` atomically (nothing half-written on error); returns the text."""
    src = build_source(net, init=init)
    write_atomic(path, src)
    return src
