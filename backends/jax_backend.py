"""Lowering the IR to JAX / Flax NNX source code.

`build_source(net)` returns the text of one Python module that imports only jax, jax.numpy and
flax.nnx and defines an `nnx.Module` subclass named after the network. Layout is NHWC with
explicit paddings, so every layer's geometry equals the static analysis. The module keeps
PyTorch's semantics where they differ from Flax's defaults:
  - BatchNorm: momentum m updates running = (1 - m) * running + m * batch, and the running
    variance uses the unbiased batch variance (a small BatchNorm class is emitted);
  - flatten uses PyTorch's C, H, W element order, so linear weights transfer unchanged;
  - ceil-mode pooling and count_include_pad follow PyTorch exactly;
  - default initialisation equals PyTorch's (uniform +-1/sqrt(fan_in) for weights and
    biases of conv and linear); init "xavier_uniform" gives Xavier weights and zero biases.
Each IR op kind lowers in exactly one function of `_LOWER`; an op without one is a clear
ArchError naming the op and the layer.
"""
from __future__ import annotations

import os

from archc.compiler import Network

from . import lowering as L
from archc._files import write_atomic
from .lowering import py_number as num

HEADER = '''"""{doc}

Do not edit: regenerate with `archc build --backend jax` (from {file}).
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

'''

PRELUDE = '''
def _torch_uniform(fan_in):
    """PyTorch's default init for conv/linear weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def _inits(scheme, fan_in):
    """kernel_init / bias_init for an init scheme (see the class docstring)."""
    if scheme == "default":  # PyTorch's defaults for conv and linear
        return {"kernel_init": _torch_uniform(fan_in), "bias_init": _torch_uniform(fan_in)}
    kernel = {
        "xavier_uniform": nnx.initializers.xavier_uniform(),
        "xavier_normal": nnx.initializers.xavier_normal(),
        "kaiming_normal": nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        "kaiming_uniform": nnx.initializers.variance_scaling(2.0, "fan_in", "uniform"),
    }[scheme]
    return {"kernel_init": kernel, "bias_init": nnx.initializers.zeros_init()}


class Scope(nnx.Module):
    """A named group of layers (a block call or loop iteration of the .arch file)."""


class BatchNorm(nnx.Module):
    """Batch normalisation over the last axis with PyTorch's semantics."""

    def __init__(self, num_features, *, eps=1e-5, momentum=0.1, affine=True):
        self.eps, self.momentum, self.affine = eps, momentum, affine
        if affine:
            self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
            self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.float32)
            mean = jnp.mean(xf, axis=axes)
            var = jnp.mean(jnp.square(xf - mean), axis=axes)
            n = xf.size // xf.shape[-1]
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * mean
            self.var[...] = (1 - m) * self.var[...] + m * var * (n / max(n - 1, 1))
        y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + self.eps).astype(x.dtype)
        if self.affine:
            y = y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
        return y


def _ceil_extra(size, k, s, p, d, ceil_mode):
    """Extra right padding that makes lax.reduce_window produce PyTorch's ceil-mode length."""
    eff = d * (k - 1) + 1
    if not ceil_mode:
        return 0
    out = -(-(size + 2 * p - eff) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return max((out - 1) * s + eff - (size + 2 * p), 0)


def max_pool(x, kernel, stride, padding, ceil_mode=False):
    _, h, w, _ = x.shape
    eh = _ceil_extra(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    pads = ((0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *kernel, 1), (1, *stride, 1), pads)


def avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    _, h, w, _ = x.shape
    eh = _ceil_extra(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    pads = ((0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew), (0, 0))
    window, strides = (1, *kernel, 1), (1, *stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    # PyTorch divides by the window clipped to the padded input (count_include_pad) or to
    # the real input; the extra ceil-mode padding never counts.
    ones = jnp.ones((1, h, w, 1), x.dtype)
    if count_include_pad:
        ones = jnp.pad(ones, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1]), (0, 0)),
                       constant_values=1.0)
        cpads = ((0, 0), (0, eh), (0, ew), (0, 0))
    else:
        cpads = pads
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, cpads)
    return total / count


def lrn(x, size, alpha, beta, k):
    """PyTorch's LocalResponseNorm across the channel (last) axis."""
    sq = jnp.square(x)
    sq = jnp.pad(sq, ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
    s = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), "VALID")
    return x / jnp.power(k + alpha * s / size, beta)


def flatten(x):
    """PyTorch's flatten order (C, H, W) on an NHWC tensor; result N x 1 x 1 x (C*H*W)."""
    n = x.shape[0]
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(n, 1, 1, -1)

'''



# Attribute names nnx.Module uses; a layer named like one gets a trailing '_'
# (tests/test_jax_backend.py checks this list against flax's nnx.Module).
NNX_ATTRS = frozenset({
    "eval", "train", "set_attributes", "sow", "perturb", "iter_modules", "iter_children",
    "set_view", "view", "probe", "update", "split", "merge", "state", "graph"})
_VAR_RESERVED = frozenset({"jax", "jnp", "nnx", "math", "self", "max_pool", "avg_pool", "lrn",
                           "flatten", "BatchNorm", "Scope"})
STATEFUL = frozenset({"conv", "linear", "bn", "dropout"})

class _Ctx:
    def __init__(self, step: L.Step, path: str | None, init: str):
        self.step, self.a, self.path, self.init = step, step.attrs, path, init

    def x(self, i: int = 0) -> str:
        return self.step.inputs[i]

    def cin(self, i: int = 0) -> int:
        return self.step.in_shapes[i][0]

    def inits(self, fan_in: int) -> str:
        return f"**_inits({self.init!r}, {num(fan_in)})"


def _t(v) -> str:
    return "(" + ", ".join(num(i) for i in v) + ")"


# ---- one lowering per op kind: (module constructor or None, forward expression) ---------------
def _conv(c):
    a = c.a
    kh, kw = a["kernel"]
    ph, pw = a["padding"]
    opt = ""
    if tuple(a["stride"]) != (1, 1):
        opt += f", strides={_t(a['stride'])}"
    if tuple(a["dilation"]) != (1, 1):
        opt += f", kernel_dilation={_t(a['dilation'])}"
    if a["groups"] != 1:
        opt += f", feature_group_count={num(a['groups'])}"
    if not a["bias"]:
        opt += ", use_bias=False"
    ctor = (f"nnx.Conv({num(c.cin())}, {num(a['out'])}, {_t(a['kernel'])}{opt}, "
            f"padding=(({num(ph)}, {num(ph)}), ({num(pw)}, {num(pw)})), "
            f"{c.inits(c.cin() // a['groups'] * kh * kw)}, rngs=rngs)")
    return ctor, f"self.{c.path}({c.x()})"


def _linear(c):
    a = c.a
    opt = "" if a["bias"] else ", use_bias=False"
    ctor = f"nnx.Linear({num(c.cin())}, {num(a['out'])}{opt}, {c.inits(c.cin())}, rngs=rngs)"
    return ctor, f"self.{c.path}({c.x()})"


def _bn(c):
    a = c.a
    opt = "" if a["eps"] == 1e-5 else f", eps={num(float(a['eps']))}"
    opt += "" if a["momentum"] == 0.1 else f", momentum={num(float(a['momentum']))}"
    opt += "" if a["affine"] else ", affine=False"
    ctor = f"BatchNorm({num(c.cin())}{opt})"
    return ctor, f"self.{c.path}({c.x()})"


def _dropout(c):
    return f"nnx.Dropout({num(float(c.a['p']))}, rngs=rngs)", f"self.{c.path}({c.x()})"


def _fn(template: str, **fmt):
    def lower(c):
        vals = {k: f(c.a) for k, f in fmt.items()}
        return None, template.format(*c.step.inputs, **vals)
    return lower


def _pool(fn: str, extra: tuple = ()):
    def lower(c):
        a = c.a
        more = "".join(f", {k}={num(a[k])}" for k in extra)
        return None, (f"{fn}({c.x()}, {_t(a['kernel'])}, {_t(a['stride'])}, {_t(a['padding'])}, "
                      f"ceil_mode={num(a['ceil_mode'])}{more})")
    return lower


LOWER = {
    "conv": _conv,
    "linear": _linear,
    "bn": _bn,
    "dropout": _dropout,
    "relu": _fn("jax.nn.relu({0})"),
    "relu6": _fn("jax.nn.relu6({0})"),
    "elu": _fn("jax.nn.elu({0}, alpha={alpha})", alpha=lambda a: num(float(a["alpha"]))),
    "leaky_relu": _fn("jax.nn.leaky_relu({0}, negative_slope={slope})",
                      slope=lambda a: num(float(a["slope"]))),
    "sigmoid": _fn("jax.nn.sigmoid({0})"),
    "tanh": _fn("jnp.tanh({0})"),
    "swish": _fn("jax.nn.silu({0})"),
    "hswish": _fn("jax.nn.hard_swish({0})"),
    "hsigmoid": _fn("jax.nn.hard_sigmoid({0})"),
    "maxpool": _pool("max_pool"),
    "avgpool": _pool("avg_pool", ("count_include_pad",)),
    "global_avgpool": _fn("jnp.mean({0}, axis=(1, 2), keepdims=True)"),
    "global_maxpool": _fn("jnp.max({0}, axis=(1, 2), keepdims=True)"),
    "flatten": _fn("flatten({0})"),
    "lrn": _fn("lrn({0}, {size}, {alpha}, {beta}, {k})", size=lambda a: num(a["size"]),
               alpha=lambda a: num(float(a["alpha"])), beta=lambda a: num(float(a["beta"])),
               k=lambda a: num(float(a["k"]))),
    "identity": _fn("{0}"),
    "slice": _fn("{0}[..., {start}:{stop}]", start=lambda a: num(a["start"]),
                 stop=lambda a: num(a["stop"])),
    "concat": lambda c: (None, f"jnp.concatenate([{', '.join(c.step.inputs)}], axis=-1)"),
    "add": lambda c: (None, " + ".join(c.step.inputs)),
    "mul": _fn("{0} * {1}"),
}


def module_tree(net: Network) -> L.ModuleTree:
    """The NNX attribute tree of the generated module (also used by backends/weights.py)."""
    return L.ModuleTree(net, [n for n in net.layers() if net.node(n)["op"] in STATEFUL], NNX_ATTRS)


def build_source(net: Network, init: str | None = None, tap: bool = False) -> str:
    """The Flax NNX module for `net` as Python source text (deterministic).

    init: weight initialisation override (else the network's `init` parameter, else
    PyTorch's default scheme). tap: pass every layer's output through `tap(layer_name, value)`.
    """
    L.check_lowerable(net, LOWER, "jax")
    scheme = L.init_scheme(net, init)
    cls = L.class_name(net)
    out_var, steps = L.forward_steps(net, _VAR_RESERVED)
    tree = module_tree(net)
    ctors, body = L.emit_forward(
        steps, lambda s: LOWER[s.op](_Ctx(s, tree.path(s.name) if s.op in STATEFUL else None,
                                          scheme)), tap)
    params = "; ".join(f"{k} = {L.value_text(v)}" for k, v in net.params.items())
    c, h, w = net.input_shape
    oc, oh, ow = net.output_shape
    doc = [f"{cls}: Flax NNX module generated by archc from {os.path.basename(net.file)}.", "",
           f"Parameters as used: {params}.",
           f"Input: N x {h} x {w} x {c} (NHWC). Output: N x {oc}"
           + ("" if (oh, ow) == (1, 1) else f" x {oh} x {ow} x {oc} (NHWC)") + ".",
           f"Weight initialisation: {scheme}. Call .train() / .eval() to switch modes."]
    doc = [L.doc_text(d) for d in doc]
    src = [HEADER.format(doc=doc[0], file=L.doc_text(os.path.basename(net.file))), PRELUDE,
           L.TAP_SOURCE if tap else "",
           f"\nclass {cls}(nnx.Module):", '    """' + doc[0]] + \
          [("    " + d) if d else "" for d in doc[1:]] + ['    """', "",
           "    def __init__(self, *, rngs: nnx.Rngs):"]
    nodes = list(tree.walk())
    for node in nodes:
        if node.layer is None:
            src.append(f"        self.{node.path} = Scope()")
        else:
            src += L.wrap_assign(f"self.{node.path}", ctors[node.layer], "        ")
    if not nodes:
        src.append("        pass")
    src += ["", "    def __call__(self, x):"] + body
    if (oh, ow) == (1, 1):
        src.append(f"        return {out_var}.reshape({out_var}.shape[0], {num(oc)})")
    else:
        src.append(f"        return {out_var}")
    return "\n".join(src) + "\n"


def compile_module(net: Network, init: str | None = None, tap=None, seed: int = 0):
    """An instance of the generated module: exec of build_source()'s text (archc wrote it from
    validated IR: names are identifiers, numbers are repr of int/float).

    tap: build in tap mode, passing every layer's output through tap(layer_name, value) ->
    value in data-flow order (True: tap mode with no function yet; see lowering.set_tap)."""
    from flax import nnx
    src = build_source(net, init=init, tap=tap is not None)
    namespace: dict = {"__name__": f"archc_generated_jax_{net.name}"}
    exec(compile(src, f"<archc jax: {net.name}>", "exec"), namespace)  # noqa: S102
    cls = namespace[L.class_name(net)]
    # Initialise inside one jit: the same values as eager initialisation (the same random
    # bits), but one XLA compilation instead of one per initializer call.
    module = nnx.jit(lambda: cls(rngs=nnx.Rngs(params=seed, dropout=seed + 1)))()
    if callable(tap):
        L.set_tap(module, tap)
    return module


def write_source(net: Network, path, init: str | None = None) -> str:
    """Write the module to `path` atomically (nothing half-written on error); returns the text."""
    src = build_source(net, init=init)
    write_atomic(path, src)
    return src
