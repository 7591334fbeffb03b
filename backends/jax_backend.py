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
    after flatten or linear a value is N x C, as in torch (lowering.ranks; a global pool
    that only flatten or linear reads is N x C too), and ops that need NHWC restore it with
    `[:, None, None, :]` (LowerCtx.x4);
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

from archc.compiler import Network, ops

from . import lowering as L
from ._jax_init import LAYERS, init_code
from ._jax_helpers import HELPERS
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


def _padding(c) -> str:
    """nnx.Conv's padding: (h, w) on both sides, or (low, high) pairs from a (top, left,
    bottom, right) padding ("tf_same")."""
    if len(c.value("padding")) == 2:
        return c.pair("padding")
    if c.attrs["padding"].const:
        top, left, bottom, right = c.value("padding")
        return f"(({top}, {bottom}), ({left}, {right}))"
    p = c.a("padding")
    return f"(({p}[0], {p}[2]), ({p}[1], {p}[3]))"


# ---- one lowering per op -----------------------------------------------------------------------
def _conv(c):
    ctor = (f"Conv({c.cin()}, {c.a('out')}, {_tuple(c, 'kernel')}"
            + _opt(c, ("stride", (1, 1), "strides"), ("dilation", (1, 1), "kernel_dilation"),
                   ("groups", 1, "feature_group_count"))
            + f", padding={_padding(c)}"
            + ("" if c.is_default("bias", True) else f", use_bias={c.a('bias')}")
            + ", rngs=rngs)")
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _flat(c) -> str:
    """Input 0 as N x C: an N x 1 x 1 x C input without its 1 x 1 axes."""
    return c.x() if c.ranks[0] == 2 else f"{c.x()}[:, 0, 0]"


def _linear(c):
    bias = "" if c.is_default("bias", True) else f", use_bias={c.a('bias')}"
    return Lowered(f"Linear({c.cin()}, {c.a('out')}{bias}, rngs=rngs)", f"{c.path}({_flat(c)})")


def _flatten(c):
    """N x C; a larger map in PyTorch's (C, H, W) order (the `flatten` helper), so that the
    weights of a linear layer after it transfer unchanged."""
    return Lowered(None, _flat(c) if c.in_shapes[0][1:] == (1, 1) else f"flatten({c.x()})")


def _global_pool(reduce: str):
    def lower(c):   # N x C where only flatten or linear reads it (lowering.ranks)
        keep = ", keepdims=True" if c.rank == 4 else ""
        return Lowered(None, f"{reduce}({c.x4()}, axis=(1, 2){keep})")
    return lower


def _kwargs(c, *specs) -> str:
    """`, name=value` for the attributes (name, default) that differ from the default."""
    return "".join(f", {k}={c.a(k)}" for k, d in specs if not c.is_default(k, d))


def _bn(c):
    opt = _kwargs(c, ("eps", 1e-5), ("momentum", 0.1), ("affine", True))
    return Lowered(f"BatchNorm({c.cin()}{opt})", f"{c.path}({c.x4()})")


def _fn(template: str, *attrs):
    def lower(c):   # NHWC inputs for an op of rank 4; for a merge, where ranks mix
        xs = [c.x4(i) for i in range(c.n_inputs)] if ops.get(c.op).rank == 4 else c.xs4()
        return Lowered(None, template.format(*xs, **{a: c.f(a) for a in attrs}))
    return lower


def _pool(fn: str, *extra):
    def lower(c):
        more = "".join(f", {k}={c.f(k)}" for k in extra)
        return Lowered(None, f"{fn}({c.x4()}, {_tuple(c, 'kernel', True)}, "
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
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _upsample(c):
    how = "size" if c.value("scale") is None else "scale"
    more = "".join(f", {k}={c.f(k)}" for k, d in (("mode", "nearest"), ("align_corners", False))
                   if not c.is_default(k, d))
    return Lowered(None, f"upsample({c.x4()}, {how}={_tuple(c, how, True)}{more})")


def _gelu(c):
    """jax.nn.gelu's default is the tanh form; PyTorch's (and archc's) the exact one."""
    v = c.attrs["approximate"]
    tanh = str(c.value("approximate") == "tanh") if v.const else f'{c.f("approximate")} == "tanh"'
    return Lowered(None, f"jax.nn.gelu({c.x()}, approximate={tanh})")


def _drop_path(c):
    # torchvision's StochasticDepth ("row"): one keep/drop draw per sample
    dims = "(1, 2, 3)" if c.ranks[0] == 4 else "(1,)"
    return Lowered(f"nnx.Dropout({c.a('p')}, broadcast_dims={dims}, rngs=rngs)",
                   f"{c.path}({c.x()})")


LOWER = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "upsample": _upsample,
    "pixel_shuffle": _fn("pixel_shuffle({0}, {r})", "r"),
    "pixel_unshuffle": _fn("pixel_unshuffle({0}, {r})", "r"),
    "channel_shuffle": _fn("channel_shuffle({0}, {groups})", "groups"),
    "crop": lambda c: Lowered(None, f"center_crop({c.x4()}, {c.f('size')})"),
    "adaptive_avgpool": lambda c: Lowered(None, f"adaptive_pool({c.x4()}, "
                                                f"{_tuple(c, 'size', True)}, jnp.mean)"),
    "adaptive_maxpool": lambda c: Lowered(None, f"adaptive_pool({c.x4()}, "
                                                f"{_tuple(c, 'size', True)}, jnp.max)"),
    "drop_path": _drop_path,
    "linear": _linear,
    "bn": _bn,
    "layer_norm": lambda c: Lowered(
        f"LayerNorm({c.cin()}{_kwargs(c, ('eps', 1e-5), ('affine', True))})",
        f"{c.path}({c.x()})"),
    "group_norm": lambda c: Lowered(f"GroupNorm({c.a('groups')}, {c.cin()}"
                                    f"{_kwargs(c, ('eps', 1e-5), ('affine', True))})",
                                    f"{c.path}({c.x4()})"),
    "layer_scale": lambda c: Lowered(f"LayerScale({c.cin()}{_kwargs(c, ('init', 1e-6))})",
                                     f"{c.path}({c.x()})"),
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
    "gelu": _gelu,
    "maxpool": _pool("max_pool"),
    "avgpool": _pool("avg_pool", "count_include_pad"),
    "global_avgpool": _global_pool("jnp.mean"),
    "global_maxpool": _global_pool("jnp.max"),
    "flatten": _flatten,
    "lrn": _fn("lrn({0}, {size}, {alpha}, {beta}, {k})", "size", "alpha", "beta", "k"),
    "identity": _fn("{0}"),
    "slice": _fn("{0}[..., {start}:{stop}]", "start", "stop"),
    "concat": lambda c: Lowered(None, f"jnp.concatenate([{', '.join(c.xs4())}], axis=-1)"),
    "add": lambda c: Lowered(None, " + ".join(c.xs4())),
    "mul": _fn("{0} * {1}"),
    "attention": _fn("multihead_attention({0}, {1}, {2}, {heads}, {patch})", "heads", "patch"),
}
IMPORTS = (("functools.", "import functools"), ("math.", "import math"),
           ("OrderedDict", "from collections import OrderedDict"), (None, None),
           ("jax.", "import jax"), ("jnp.", "import jax.numpy as jnp"),
           (None, "import numpy as np"), (None, "from flax import nnx"))
# what every file's initialisation code (_jax_init.init_code) defines beside init_weights:
# placeholder and the Conv / Linear partials
INIT_GLOBALS = frozenset({"placeholder"} | {name for _, name in LAYERS})
RESERVED_GLOBALS = L.reserved_globals(HELPERS, IMPORTS) | INIT_GLOBALS
RESERVED_LOCALS = RESERVED_GLOBALS | {"self", "super", "rngs"}
# the classes init_weights initialises, by op (the ops whose registry entry has an init kind)
INIT_CLASSES = {"conv": "nnx.Conv", "conv_transpose": "ConvTranspose", "linear": "nnx.Linear"}


def _root_return(expr: str, shape: tuple, rank: int) -> str:
    """An N x 1 x 1 x C output is returned as N x C (as the torch module's after flatten)."""
    return f"{paren(expr)}[:, 0, 0]" if rank == 4 and shape[1:] == (1, 1) else expr


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
    sequence_dict="{}", sequence_from=lambda name: f"Sequential(**{name})",
    instance=_instance, init_code=partial(init_code, INIT_CLASSES), root_return=_root_return,
    ranks=partial(L.ranks, flat_pools=frozenset({"global_avgpool", "global_maxpool"})),
    weights={"conv": {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)},
             "linear": {"weight": ("kernel", (1, 0)), "bias": ("bias", None)},
             "bn": {"weight": ("scale", None), "bias": ("bias", None),
                    "running_mean": ("mean", None), "running_var": ("var", None)},
             # kernel kh x kw x C_out/groups x C_in: torch's weight transposed (2, 3, 1, 0)
             "conv_transpose": {"weight": ("kernel", (2, 3, 1, 0)), "bias": ("bias", None)},
             "layer_norm": {"weight": ("scale", None), "bias": ("bias", None)},
             "group_norm": {"weight": ("scale", None), "bias": ("bias", None)},
             "layer_scale": {"gamma": ("gamma", None)}},
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
