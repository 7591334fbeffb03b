"""The JAX / Flax NNX backend: one lowering per op, and the shape of an NNX module file.

    build_source(net, init=None, tap=False) -> str   the generated file (deterministic)
    compile_module(net, init=None, tap=None, seed=0) an instance, exec of that text
    write_source(net, path, init=None)                written atomically
    module_tree(net)                                  attribute paths (weights.py uses them)

Layout is NHWC with explicit paddings, so every layer's geometry equals the static analysis.
The generated module keeps PyTorch's semantics where they differ from Flax's defaults:
  - BatchNorm: momentum m updates running = (1 - m) * running + m * batch, and the running
    variance uses the unbiased batch variance (a small BatchNorm class is emitted);
  - flatten uses PyTorch's C, H, W element order, so linear weights transfer unchanged;
  - ceil-mode pooling and count_include_pad follow PyTorch exactly;
  - the default initialisation is PyTorch's (uniform +-1/sqrt(fan_in) for weights and
    biases of conv and linear layers).
Initial values are drawn on the host: layers start with numpy placeholders and every class's
init_weights draws them with numpy from one key of rngs.params() (a jax.pure_callback when
traced), so constructing the file's class compiles no XLA program (_jax_init.py).
Helpers (pooling, BN, LRN, flatten ...) are emitted only when the network uses them.
"""
from __future__ import annotations

from functools import partial

from archc.compiler import Network

from . import lowering as L
from ._jax_init import init_code
from .lower_ctx import Lowered, paren

# Every attribute name of an nnx.Module instance (tests/test_jax_backend.py checks this
# against the installed flax): a layer named like one gets a trailing '_'.
NNX_ATTRS = frozenset("""
__abstractmethods__ __annotations__ __class__ __deepcopy__ __delattr__ __dict__ __dir__ __doc__
__eq__ __format__ __ge__ __getattribute__ __getstate__ __gt__ __hash__ __init__
__init_subclass__ __le__ __lt__ __module__ __ne__ __new__ __nnx_repr__ __reduce__
__reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __slots__ __str__
__subclasshook__ __treescope_repr__ __weakref__ _abc_impl _check_valid_context _check_value
_graph_node_clear _graph_node_create_empty _graph_node_flatten _graph_node_init
_graph_node_pop_key _graph_node_set_key _object__nodes _object__state _pytree__flatten
_pytree__flatten_with_paths _pytree__has_int_keys _pytree__is_pytree _pytree__nodes
_pytree__state _pytree__unflatten _setattr eval iter_children iter_modules perturb
set_attributes sow train set_view view update split merge state graph tap_prefix order
""".split())
HELPERS = {
    "Conv": '''
def Conv(*args, **kwargs):   # nnx.Conv, its values drawn by init_weights
    return nnx.Conv(*args, kernel_init=placeholder, bias_init=placeholder, **kwargs)
''',
    "Linear": '''
def Linear(*args, **kwargs):   # nnx.Linear, its values drawn by init_weights
    return nnx.Linear(*args, kernel_init=placeholder, bias_init=placeholder, **kwargs)
''',
    "BatchNorm": '''
class BatchNorm(nnx.Module):
    """Batch normalisation over the last axis with PyTorch's semantics."""

    def __init__(self, num_features, *, eps=1e-5, momentum=0.1, affine=True):
        self.eps, self.momentum, self.affine = eps, momentum, affine
        if affine:
            self.scale = nnx.Param(np.ones(num_features, np.float32))
            self.bias = nnx.Param(np.zeros(num_features, np.float32))
        self.mean = nnx.BatchStat(np.zeros(num_features, np.float32))
        self.var = nnx.BatchStat(np.ones(num_features, np.float32))
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
''',
    "Scope": '''
class Scope(nnx.Module):
    """A named group of layers (a labelled loop iteration of the .arch file)."""
''',
    "Sequential": '''
class Sequential(nnx.Module):
    """Blocks applied in order, each under its own name (a labelled loop of the .arch file)."""

    def __init__(self, **blocks):
        self.order = tuple(blocks)
        for name, block in blocks.items():
            setattr(self, name, block)

    def __call__(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return x
''',
    "_ceil_extra": '''
def _ceil_extra(size, k, s, p, ceil_mode):
    """Extra right padding that makes lax.reduce_window produce PyTorch's ceil-mode length."""
    if not ceil_mode:
        return 0
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return max((out - 1) * s + k - (size + 2 * p), 0)
''',
    "max_pool": '''
def max_pool(x, kernel, stride, padding, ceil_mode=False):
    """PyTorch's max_pool2d on NHWC."""
    _, h, w, _ = x.shape
    eh = _ceil_extra(h, kernel[0], stride[0], padding[0], ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], padding[1], ceil_mode)
    pads = ((0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *kernel, 1), (1, *stride, 1), pads)
''',
    "avg_pool": '''
def avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """PyTorch's avg_pool2d on NHWC: the window is clipped to the padded input
    (count_include_pad) or to the input; the extra ceil-mode padding never counts."""
    _, h, w, _ = x.shape
    eh = _ceil_extra(h, kernel[0], stride[0], padding[0], ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], padding[1], ceil_mode)
    pads = ((0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew), (0, 0))
    window, strides = (1, *kernel, 1), (1, *stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1, h, w, 1), x.dtype)
    if count_include_pad:
        ones = jnp.pad(ones, ((0, 0), (padding[0], padding[0]), (padding[1], padding[1]), (0, 0)),
                       constant_values=1.0)
        pads = ((0, 0), (0, eh), (0, ew), (0, 0))
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
    return total / count
''',
    "lrn": '''
def lrn(x, size, alpha, beta, k):
    """PyTorch's LocalResponseNorm across the channel (last) axis."""
    sq = jnp.pad(jnp.square(x), ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
    s = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), "VALID")
    return x / jnp.power(k + alpha * s / size, beta)
''',
    "ConvTranspose": '''
class ConvTranspose(nnx.Module):
    """PyTorch's ConvTranspose2d on NHWC. kernel: kh x kw x (out / groups) x in, which is
    torch's weight (in x out/groups x kh x kw) transposed by (2, 3, 1, 0)."""

    def __init__(self, in_features, out_features, kernel_size, *, strides=(1, 1),
                 padding=(0, 0), output_padding=(0, 0), kernel_dilation=(1, 1),
                 feature_group_count=1, use_bias=True, rngs):
        self.strides, self.padding, self.output_padding = strides, padding, output_padding
        self.kernel_dilation, self.groups = kernel_dilation, feature_group_count
        shape = (*kernel_size, out_features // feature_group_count, in_features)
        self.kernel = nnx.Param(placeholder(None, shape))
        bias = placeholder(None, (out_features,))
        self.bias = nnx.Param(bias) if use_bias else nnx.data(None)

    def __call__(self, x):
        # the convolution of the stride-dilated input with the spatially flipped kernel,
        # regrouped to HWIO (in/groups x out)
        kh, kw, og, cin = self.kernel.shape
        g = self.groups
        k = self.kernel[...][::-1, ::-1].reshape(kh, kw, og, g, cin // g)
        k = jnp.transpose(k, (0, 1, 4, 3, 2)).reshape(kh, kw, cin // g, g * og)
        pads = [(d * (n - 1) - p, d * (n - 1) - p + o) for n, p, o, d in
                zip((kh, kw), self.padding, self.output_padding, self.kernel_dilation)]
        y = jax.lax.conv_general_dilated(
            x, k.astype(x.dtype), (1, 1), pads, lhs_dilation=self.strides,
            rhs_dilation=self.kernel_dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=g)
        return y if self.bias is None else y + self.bias[...].astype(x.dtype)
''',
    "upsample": '''
def upsample(x, scale=None, size=None, mode="nearest", align_corners=False):
    """PyTorch's F.interpolate (nearest, bilinear) on NHWC, one axis after the other, with
    its source coordinates computed in float32 as PyTorch's CPU kernels do."""
    if size is None:
        size = (x.shape[1] * scale[0], x.shape[2] * scale[1])
    for axis, out in ((1, size[0]), (2, size[1])):
        n = x.shape[axis]
        if out == n:
            continue
        dst = jnp.arange(out, dtype=jnp.float32)
        if mode == "nearest":
            src = jnp.floor(dst * (jnp.float32(n) / jnp.float32(out))).astype(jnp.int32)
            x = jnp.take(x, jnp.minimum(src, n - 1), axis=axis)
            continue
        if align_corners:
            src = dst * (jnp.float32(n - 1) / jnp.float32(out - 1) if out > 1 else 0.0)
        else:
            src = jnp.maximum((dst + 0.5) * (jnp.float32(n) / jnp.float32(out)) - 0.5, 0.0)
        i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), n - 1)
        lam = jnp.clip(src - i0, 0.0, 1.0).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
        x0 = jnp.take(x, i0, axis=axis)
        x1 = jnp.take(x, jnp.minimum(i0 + 1, n - 1), axis=axis)
        x = x0 * (1 - lam).astype(x.dtype) + x1 * lam.astype(x.dtype)
    return x
''',
    "adaptive_pool": '''
def adaptive_pool(x, size, reduce):
    """PyTorch's adaptive pooling on NHWC: output cell i of an axis of length n reduces
    [floor(i * n / out), ceil((i + 1) * n / out)); the two axes one after the other."""
    for axis, out in ((1, size[0]), (2, size[1])):
        n = x.shape[axis]
        if n % out == 0:
            x = reduce(x.reshape(x.shape[:axis] + (out, n // out) + x.shape[axis + 1:]),
                       axis=axis + 1)
        else:
            x = jnp.concatenate([reduce(jax.lax.slice_in_dim(x, i * n // out,
                                                             -(-(i + 1) * n // out), axis=axis),
                                        axis=axis, keepdims=True) for i in range(out)],
                                axis=axis)
    return x
''',
    "pixel_shuffle": '''
def pixel_shuffle(x, r):
    """PyTorch's pixel_shuffle on NHWC: channel c*r*r + i*r + j goes to (h*r + i, w*r + j)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, c // (r * r), r, r)
    return jnp.transpose(x, (0, 1, 4, 2, 5, 3)).reshape(n, h * r, w * r, c // (r * r))
''',
    "pixel_unshuffle": '''
def pixel_unshuffle(x, r):
    """PyTorch's pixel_unshuffle on NHWC, the inverse of pixel_shuffle."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // r, r, w // r, r, c)
    return jnp.transpose(x, (0, 1, 3, 5, 2, 4)).reshape(n, h // r, w // r, c * r * r)
''',
    "channel_shuffle": '''
def channel_shuffle(x, groups):
    """PyTorch's channel_shuffle on NHWC: channel i*(C/groups) + j goes to j*groups + i."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, groups, c // groups)
    return jnp.swapaxes(x, 3, 4).reshape(n, h, w, c)
''',
    "flatten": '''
def flatten(x):
    """PyTorch's flatten order (C, H, W) on NHWC; the result is N x 1 x 1 x (C*H*W)."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], 1, 1, -1)
''',
}


def _tuple(c, name: str, forward: bool = False) -> str:
    """A (h, w) attribute as a tuple (Flax's kernel_size and the pooling helpers need one)."""
    v = c.attrs[name]
    text = c.f(name) if forward else c.a(name)
    if not v.const and isinstance(v.raw, int) and not forward:
        return f"({text}, {text})"
    return text


def _opt(c, *specs) -> str:
    out = ""
    for name, default, key in specs:
        if not c.is_default(name, default):
            out += f", {key}={c.pair(name)}"
    return out


# ---- one lowering per op -----------------------------------------------------------------------
def _conv(c):
    ctor = (f"Conv({c.cin()}, {c.a('out')}, {_tuple(c, 'kernel')}"
            + _opt(c, ("stride", (1, 1), "strides"), ("dilation", (1, 1), "kernel_dilation"),
                   ("groups", 1, "feature_group_count"))
            + f", padding={c.pair('padding')}"
            + ("" if c.is_default("bias", True) else f", use_bias={c.a('bias')}")
            + ", rngs=rngs)")
    return Lowered(ctor, f"{c.path}({c.x()})")


def _linear(c):
    bias = "" if c.is_default("bias", True) else f", use_bias={c.a('bias')}"
    return Lowered(f"Linear({c.cin()}, {c.a('out')}{bias}, rngs=rngs)", f"{c.path}({c.x()})")


def _bn(c):
    opt = "".join(f", {k}={c.a(k)}" for k, d in (("eps", 1e-5), ("momentum", 0.1),
                                                 ("affine", True)) if not c.is_default(k, d))
    return Lowered(f"BatchNorm({c.cin()}{opt})", f"{c.path}({c.x()})")


def _fn(template: str, *attrs):
    def lower(c):
        return Lowered(None, template.format(*c.xs(), **{a: c.f(a) for a in attrs}))
    return lower


def _pool(fn: str, *extra):
    def lower(c):
        more = "".join(f", {k}={c.f(k)}" for k in extra)
        return Lowered(None, f"{fn}({c.x()}, {_tuple(c, 'kernel', True)}, "
                             f"{_tuple(c, 'stride', True)}, {_tuple(c, 'padding', True)}, "
                             f"ceil_mode={c.f('ceil_mode')}{more})")
    return lower


def _conv_transpose(c):
    ctor = (f"ConvTranspose({c.cin()}, {c.a('out')}, {_tuple(c, 'kernel')}"
            + "".join(f", {key}={_tuple(c, name)}" for name, key in (
                ("stride", "strides"), ("padding", "padding"),
                ("output_padding", "output_padding"), ("dilation", "kernel_dilation"))
                if not c.is_default(name, (1, 1) if name in ("stride", "dilation") else (0, 0)))
            + ("" if c.is_default("groups", 1) else f", feature_group_count={c.a('groups')}")
            + ("" if c.is_default("bias", True) else f", use_bias={c.a('bias')}")
            + ", rngs=rngs)")
    return Lowered(ctor, f"{c.path}({c.x()})")


def _upsample(c):
    how = "size" if c.value("scale") is None else "scale"
    more = "".join(f", {k}={c.f(k)}" for k, d in (("mode", "nearest"), ("align_corners", False))
                   if not c.is_default(k, d))
    return Lowered(None, f"upsample({c.x()}, {how}={_tuple(c, how, True)}{more})")


def _drop_path(c):
    # torchvision's StochasticDepth ("row"): one keep/drop draw per sample
    return Lowered(f"nnx.Dropout({c.a('p')}, broadcast_dims=(1, 2, 3), rngs=rngs)",
                   f"{c.path}({c.x()})")


LOWER = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "upsample": _upsample,
    "pixel_shuffle": _fn("pixel_shuffle({0}, {r})", "r"),
    "pixel_unshuffle": _fn("pixel_unshuffle({0}, {r})", "r"),
    "channel_shuffle": _fn("channel_shuffle({0}, {groups})", "groups"),
    "crop": lambda c: Lowered(None, f"{c.x()}[:, {L.crop_slices(c)}]"),
    "adaptive_avgpool": lambda c: Lowered(None, f"adaptive_pool({c.x()}, "
                                                f"{_tuple(c, 'size', True)}, jnp.mean)"),
    "adaptive_maxpool": lambda c: Lowered(None, f"adaptive_pool({c.x()}, "
                                                f"{_tuple(c, 'size', True)}, jnp.max)"),
    "drop_path": _drop_path,
    "linear": _linear,
    "bn": _bn,
    "dropout": lambda c: Lowered(f"nnx.Dropout({c.a('p')}, rngs=rngs)", f"{c.path}({c.x()})"),
    "relu": _fn("jax.nn.relu({0})"),
    "relu6": _fn("jax.nn.relu6({0})"),
    "elu": _fn("jax.nn.elu({0}, alpha={alpha})", "alpha"),
    "leaky_relu": _fn("jax.nn.leaky_relu({0}, negative_slope={slope})", "slope"),
    "sigmoid": _fn("jax.nn.sigmoid({0})"),
    "tanh": _fn("jnp.tanh({0})"),
    "swish": _fn("jax.nn.silu({0})"),
    "hswish": _fn("jax.nn.hard_swish({0})"),
    "hsigmoid": _fn("jax.nn.hard_sigmoid({0})"),
    "maxpool": _pool("max_pool"),
    "avgpool": _pool("avg_pool", "count_include_pad"),
    "global_avgpool": _fn("jnp.mean({0}, axis=(1, 2), keepdims=True)"),
    "global_maxpool": _fn("jnp.max({0}, axis=(1, 2), keepdims=True)"),
    "flatten": _fn("flatten({0})"),
    "lrn": _fn("lrn({0}, {size}, {alpha}, {beta}, {k})", "size", "alpha", "beta", "k"),
    "identity": _fn("{0}"),
    "slice": _fn("{0}[..., {start}:{stop}]", "start", "stop"),
    "concat": lambda c: Lowered(None, f"jnp.concatenate([{', '.join(c.xs())}], axis=-1)"),
    "add": lambda c: Lowered(None, " + ".join(c.xs())),
    "mul": _fn("{0} * {1}"),
}
IMPORTS = (("math.", "import math"), ("OrderedDict", "from collections import OrderedDict"),
           (None, None), ("jax.", "import jax"),
           ("jnp.", "import jax.numpy as jnp"), (None, "import numpy as np"),
           (None, "from flax import nnx"))
# what every file's initialisation code (_init_code) defines beside init_weights
INIT_GLOBALS = frozenset({"placeholder"})
RESERVED_GLOBALS = L.reserved_globals(HELPERS, IMPORTS) | INIT_GLOBALS
RESERVED_LOCALS = RESERVED_GLOBALS | {"self", "super", "rngs"}
# the classes init_weights initialises, by op (the ops whose registry entry has an init kind)
INIT_CLASSES = {"conv": "nnx.Conv", "conv_transpose": "ConvTranspose", "linear": "nnx.Linear"}


def _root_return(expr: str, shape: tuple) -> str:
    oc, oh, ow = shape
    return f"{paren(expr)}.reshape(-1, {oc})" if (oh, ow) == (1, 1) else expr


def _instance(cls: str, args: list) -> str:
    return f"{cls}({', '.join(args + ['rngs=rngs'])})"


def _instantiate(src: str, net: Network, cls: str, seed: int, scheme: str):
    """The generated class built as a user of the file builds it: its own init_weights
    draws the values on the host (well under a second, no XLA program compiled). Parameters
    come from seed `seed`, dropout streams from `seed + 1`."""
    from flax import nnx
    ns = L.exec_source(src, net, "jax")
    return ns[cls](rngs=nnx.Rngs(params=seed, dropout=seed + 1))


BACKEND = L.Backend(
    name="jax", lower=LOWER, reserved_attrs=NNX_ATTRS, reserved_globals=RESERVED_GLOBALS,
    reserved_locals=RESERVED_LOCALS, module_base="nnx.Module", forward_name="__call__",
    super_init=False, rngs=True, helpers=HELPERS, container="Scope()",
    sequence=lambda entries: "Sequential(" + ", ".join(f"{n}={c}" for n, c in entries) + ")",
    instance=_instance, init_code=partial(init_code, INIT_CLASSES), root_return=_root_return,
    ranks=lambda net: {n: 4 for n in net.graph.nodes},
    weights={"conv": {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)},
             "linear": {"weight": ("kernel", (1, 0)), "bias": ("bias", None)},
             "bn": {"weight": ("scale", None), "bias": ("bias", None),
                    "running_mean": ("mean", None), "running_var": ("var", None)},
             # kernel kh x kw x C_out/groups x C_in: torch's weight transposed (2, 3, 1, 0)
             "conv_transpose": {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)}},
    instantiate=_instantiate, title="Flax NNX module", layout="NHWC",
    modes=" Call .train() / .eval() to switch modes.", imports=IMPORTS)


def build_source(net: Network, init: str | None = None, tap: bool = False) -> str:
    """The Flax NNX module for `net` as Python source text (see backends/lowering.py)."""
    return L.build_source(BACKEND, net, init=init, tap=tap)


def compile_module(net: Network, init: str | None = None, tap=None, seed: int = 0):
    """An instance of the generated module (see lowering.compile_module), its initial values
    a deterministic function of `seed` with the distributions of the generated file's."""
    return L.compile_module(BACKEND, net, init=init, tap=tap, seed=seed)


def set_scan(module, on: bool) -> None:
    """Apply runs of identical blocks in every Sequential of a module built by compile_module
    with one jax.lax.scan (backends/_jax_scan.py), or one by one as the generated file does
    (the default). It changes the module's own generated class, not the file's text."""
    from flax import nnx

    from . import _jax_scan
    for _, m in nnx.iter_modules(module):
        cls = type(m)
        if cls.__name__ == "Sequential" and cls.__module__.startswith("archc_generated_"):
            _jax_scan.set_scan(cls, on)


def write_source(net: Network, path, init: str | None = None) -> str:
    return L.write_source(BACKEND, net, path, init=init)


def module_tree(net: Network):
    """The NNX attribute tree of the generated module (backends/weights.py uses it)."""
    return L.module_tree(net, BACKEND)
