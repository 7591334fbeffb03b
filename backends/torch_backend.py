"""The PyTorch backend: one lowering per op, and the shape of a torch module file.

    build_source(net, init=None, tap=False) -> str   the generated file (deterministic)
    compile_module(net, init=None, tap=None)          an instance, exec of that text
    write_source(net, path, init=None)                written atomically
    module_tree(net)                                  attribute paths (weights.py uses them)

Layout: the IR's shapes are (C, H, W); at run time a value is NCHW (rank 4) or, after
flatten/linear, (N, C) (rank 2) -- the IR's C x 1 x 1 (lowering.ranks). Ops that need NCHW
restore it with `[:, :, None, None]` (LowerCtx.x4); linear flattens its input. Everything
else is backends/lowering.py's.
"""
from __future__ import annotations

from archc.compiler import Network

from . import lowering as L
from .lower_ctx import Lowered

# Every attribute name of an nn.Module instance (dir(nn.Module()) of torch 2.13;
# tests/test_torch_backend.py checks it against the installed torch): a layer named like
# one gets a trailing '_' (`eval` -> `eval_`, `_modules` -> `_modules_`).
MODULE_ATTRS = frozenset("""
T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__ __eq__
__format__ __ge__ __getattr__ __getattribute__ __getstate__ __gt__ __hash__ __init__
__init_subclass__ __le__ __lt__ __module__ __ne__ __new__ __reduce__ __reduce_ex__ __repr__
__setattr__ __setstate__ __sizeof__ __str__ __subclasshook__ __weakref__ _apply
_backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl _forward_hooks
_forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
_forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks
_load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook _modules _named_members
_non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook
_register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict _slow_forward
_state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl add_module apply bfloat16
buffers call_super_init children compile cpu cuda double dump_patches eval extra_repr float
forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict
modules mtia named_buffers named_children named_modules named_parameters parameters
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook
requires_grad_ set_extra_state set_submodule share_memory state_dict to to_empty train
training type xpu zero_grad tap_prefix
""".split())
RESERVED_ATTRS = MODULE_ATTRS


def _kw(c, *specs, forward: bool = False) -> str:
    """`, keyword=value` for the attributes that differ from torch's defaults:
    specs are (attribute, default, torch keyword)."""
    out = ""
    for name, default, key in specs:
        if c.is_default(name, default):
            continue
        text = c.pair(name, forward) if isinstance(default, tuple) else \
            (c.f(name) if forward else c.a(name))
        out += f", {key}={text}"
    return out


# ---- one lowering per op -----------------------------------------------------------------------
def _asymmetric(c) -> bool:
    """The padding is (top, left, bottom, right) ("tf_same"): padded by pad4 before the layer."""
    return len(c.value("padding")) == 4


def _conv(c):
    pad = () if _asymmetric(c) else (("padding", (0, 0), "padding"),)
    ctor = (f"nn.Conv2d({c.cin()}, {c.a('out')}, {c.pair('kernel')}"
            + _kw(c, ("stride", (1, 1), "stride"), *pad,
                  ("dilation", (1, 1), "dilation"), ("groups", 1, "groups"),
                  ("bias", True, "bias")) + ")")
    if _asymmetric(c):
        return Lowered(ctor, f"{c.path}(pad4({c.x4()}, {c.f('padding')}))")
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _linear(c):
    ctor = f"nn.Linear({c.cin()}, {c.a('out')}" + _kw(c, ("bias", True, "bias")) + ")"
    arg = c.x() if c.ranks[0] == 2 else f"torch.flatten({c.x()}, 1)"
    return Lowered(ctor, f"{c.path}({arg})")


def _bn(c):
    ctor = (f"nn.BatchNorm2d({c.cin()}" + _kw(c, ("eps", 1e-5, "eps"),
                                              ("momentum", 0.1, "momentum"),
                                              ("affine", True, "affine")) + ")")
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _lrn(c):
    return Lowered(None, f"F.local_response_norm({c.x4()}, {c.f('size')}, alpha={c.f('alpha')}, "
                         f"beta={c.f('beta')}, k={c.f('k')})")


def _layer_norm(c):
    ctor = (f"LayerNorm2d({c.cin()}" + _kw(c, ("eps", 1e-5, "eps"),
                                           ("affine", True, "elementwise_affine")) + ")")
    return Lowered(ctor, f"{c.path}({c.x()})")


def _group_norm(c):
    ctor = (f"nn.GroupNorm({c.a('groups')}, {c.cin()}" + _kw(c, ("eps", 1e-5, "eps"),
                                                             ("affine", True, "affine")) + ")")
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _dropout(c):
    return Lowered(f"nn.Dropout(p={c.a('p')})", f"{c.path}({c.x()})")


def _act(template: str, *specs):
    def lower(c):
        return Lowered(None, template.format(x=c.x()) + _kw(c, *specs, forward=True) + ")")
    return lower


def _pool(fn: str, *extra):
    def lower(c):
        if _asymmetric(c):
            return _pool_padded(c, fn)
        kw = _kw(c, ("stride", c.value("kernel"), "stride"), ("padding", (0, 0), "padding"),
                 ("ceil_mode", False, "ceil_mode"), *extra, forward=True)
        return Lowered(None, f"F.{fn}({c.x4()}, {c.pair('kernel', True)}{kw})")
    return lower


def _pool_padded(c, fn: str):
    """A pool with (top, left, bottom, right) padding: max pooling pads with -inf (padding
    never wins); average pooling pads with zeros, which count_include_pad counts, and
    otherwise divides the window sums by the count of real positions."""
    pads = c.f("padding")
    kw = f"{c.pair('kernel', True)}" + _kw(c, ("stride", c.value("kernel"), "stride"),
                                          forward=True)
    x = c.x4()
    if fn == "max_pool2d":
        return Lowered(None, f"F.max_pool2d(pad4({x}, {pads}, float(\"-inf\")), {kw})")
    mean = f"F.avg_pool2d(pad4({x}, {pads}), {kw})"
    if c.value("count_include_pad"):
        return Lowered(None, mean)
    return Lowered(None, f"{mean} / F.avg_pool2d(pad4(torch.ones_like({x}[:, :1]), {pads}), "
                         f"{kw})")


def _conv_transpose(c):
    ctor = (f"nn.ConvTranspose2d({c.cin()}, {c.a('out')}, {c.pair('kernel')}"
            + _kw(c, ("stride", (1, 1), "stride"), ("padding", (0, 0), "padding"),
                  ("output_padding", (0, 0), "output_padding"), ("groups", 1, "groups"),
                  ("bias", True, "bias"), ("dilation", (1, 1), "dilation")) + ")")
    return Lowered(ctor, f"{c.path}({c.x4()})")


def _upsample(c):
    how = "size" if c.value("scale") is None else "scale"
    kw = f", {'scale_factor' if how == 'scale' else 'size'}={c.pair(how, True)}"
    kw += _kw(c, ("mode", "nearest", "mode"), forward=True)
    if not c.is_default("align_corners", False):   # None (not False) for nearest
        ac = c.f("align_corners")
        kw += f", align_corners={ac}" if ac == "True" else f", align_corners={ac} or None"
    return Lowered(None, f"F.interpolate({c.x4()}{kw})")


HELPERS = {
    "multihead_attention": '''
def multihead_attention(q, k, v, heads, patch=1):
    """softmax(q k^T / sqrt(d_k)) v per head between the positions of NCHW maps. Heads are
    consecutive channel blocks; k and v hold g heads, each serving heads / g query heads;
    with patch p a position attends only to those at its offset inside p x p patches."""
    p, dk = patch, q.shape[1] // heads
    g = k.shape[1] // dk

    def tokens(t, groups, per):   # N x C x H x W -> N x p*p x groups x per x H*W/p^2 x d
        n, c, h, w = t.shape
        d = c // (groups * per)
        t = t.reshape(n, groups, per, d, h // p, p, w // p, p).permute(0, 5, 7, 1, 2, 4, 6, 3)
        return t.reshape(n, p * p, groups, per, (h // p) * (w // p), d)

    attn = (tokens(q, g, heads // g) * dk ** -0.5) @ tokens(k, g, 1).transpose(-1, -2)
    out = attn.softmax(dim=-1) @ tokens(v, g, 1)
    n, _, h, w = q.shape
    out = out.reshape(n, p, p, heads, h // p, w // p, -1).permute(0, 3, 6, 4, 1, 5, 2)
    return out.reshape(n, -1, h, w)
''',
    "center_crop": '''
def center_crop(x, size):
    """The centre size[0] x size[1] window of x's H x W: rows from (H - h) // 2."""
    top, left = (x.shape[2] - size[0]) // 2, (x.shape[3] - size[1]) // 2
    return x[:, :, top:top + size[0], left:left + size[1]]
''',
    "pad4": '''
def pad4(x, pads, value=0.0):
    """F.pad with a (top, left, bottom, right) padding (TensorFlow's SAME, "tf_same")."""
    return F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=value)
''',
    "LayerNorm2d": '''
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position: of N x C x H x W (timm's LayerNorm2d),
    or of N x C."""

    def forward(self, x):
        if x.ndim == 2:
            return super().forward(x)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)
''',
    "LayerScale": '''
class LayerScale(nn.Module):
    """A learned per-channel multiplier gamma (layer scale), on N x C x ... values."""

    def __init__(self, channels, init=1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x):
        return x * self.gamma.view(-1, *([1] * (x.ndim - 2)))
''',
    "DropPath": '''
class DropPath(nn.Module):
    """Stochastic depth (torchvision's StochasticDepth, mode "row"): in training, each
    sample is zeroed with probability p and the others are scaled by 1 / (1 - p)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(keep).div_(keep)
''',
}


LOWER = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "upsample": _upsample,
    "pixel_shuffle": lambda c: Lowered(None, f"F.pixel_shuffle({c.x4()}, {c.f('r')})"),
    "pixel_unshuffle": lambda c: Lowered(None, f"F.pixel_unshuffle({c.x4()}, {c.f('r')})"),
    "channel_shuffle": lambda c: Lowered(None, f"F.channel_shuffle({c.x4()}, {c.f('groups')})"),
    "crop": lambda c: Lowered(None, f"center_crop({c.x4()}, {c.f('size')})"),
    "adaptive_avgpool": lambda c: Lowered(None, f"F.adaptive_avg_pool2d({c.x4()}, "
                                                f"{c.pair('size', True)})"),
    "adaptive_maxpool": lambda c: Lowered(None, f"F.adaptive_max_pool2d({c.x4()}, "
                                                f"{c.pair('size', True)})"),
    "drop_path": lambda c: Lowered(f"DropPath({c.a('p')})", f"{c.path}({c.x()})"),
    "linear": _linear,
    "bn": _bn,
    "lrn": _lrn,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "layer_scale": lambda c: Lowered(f"LayerScale({c.cin()}"
                                     + ("" if c.is_default("init", 1e-6) else f", {c.a('init')}")
                                     + ")", f"{c.path}({c.x()})"),
    "dropout": _dropout,
    "relu": _act("F.relu({x}"),
    "relu6": _act("F.relu6({x}"),
    "elu": _act("F.elu({x}", ("alpha", 1.0, "alpha")),
    "leaky_relu": _act("F.leaky_relu({x}", ("slope", 0.01, "negative_slope")),
    "sigmoid": _act("torch.sigmoid({x}"),
    "tanh": _act("torch.tanh({x}"),
    "swish": _act("F.silu({x}"),
    "hswish": _act("F.hardswish({x}"),
    "hsigmoid": _act("F.hardsigmoid({x}"),
    "gelu": _act("F.gelu({x}", ("approximate", "none", "approximate")),
    "maxpool": _pool("max_pool2d"),
    "avgpool": _pool("avg_pool2d", ("count_include_pad", True, "count_include_pad")),
    "global_avgpool": lambda c: Lowered(None, f"F.adaptive_avg_pool2d({c.x4()}, 1)"),
    "global_maxpool": lambda c: Lowered(None, f"F.adaptive_max_pool2d({c.x4()}, 1)"),
    "identity": lambda c: Lowered(None, c.x()),
    "flatten": lambda c: Lowered(None, f"torch.flatten({c.x()}, 1)"),
    "slice": lambda c: Lowered(None, f"{c.x()}[:, {c.f('start')}:{c.f('stop')}]"),
    "concat": lambda c: Lowered(None, f"torch.cat([{', '.join(c.xs4())}], dim=1)"),
    "add": lambda c: Lowered(None, " + ".join(c.xs4())),
    "mul": lambda c: Lowered(None, " * ".join(c.xs4())),
    "attention": lambda c: Lowered(None, f"multihead_attention({c.x4(0)}, {c.x4(1)}, "
                                         f"{c.x4(2)}, {c.f('heads')}, {c.f('patch')})"),
}

IMPORTS = (("math.", "import math"), ("OrderedDict", "from collections import OrderedDict"),
           (None, None), ("torch.", "import torch"),
           ("F.", "import torch.nn.functional as F"), (None, "from torch import nn"))
RESERVED_GLOBALS = L.reserved_globals(HELPERS, IMPORTS)
RESERVED_LOCALS = RESERVED_GLOBALS | {"self", "super"}
# the classes init_weights initialises, by op (the ops whose registry entry has an init kind)
INIT_CLASSES = {"conv": "nn.Conv2d", "conv_transpose": "nn.ConvTranspose2d",
                "linear": "nn.Linear"}


def _init_code(scheme: str, used: set):
    if scheme == "default":
        return [], ""
    dist, fan, scale = L.INIT_SCHEMES[scheme]
    gain = "relu" if scale == 2.0 else "linear"    # variance scale / fan: gain 2 or 1
    call = f"nn.init.xavier_{dist}_(m.weight)" if fan == "fan_avg" else \
        f'nn.init.kaiming_{dist}_(m.weight, mode="{fan}", nonlinearity="{gain}")'
    kinds = L.init_classes(INIT_CLASSES, used)
    return ["init_weights(self)"], f'''
def init_weights(module):
    """{scheme} weights and zero biases for every convolution and linear layer."""
    for m in module.modules():
        if isinstance(m, ({kinds})):
            {call}
            if m.bias is not None:
                nn.init.zeros_(m.bias)
'''


def _sequence(entries: list) -> str:
    inner = ", ".join(f"{name}={ctor}" for name, ctor in entries)
    return f"nn.Sequential(OrderedDict({inner}))"


def _instantiate(src: str, net: Network, cls: str, seed: int, scheme: str):
    # the generated constructor initialises itself (the scheme is in its text)
    return L.exec_source(src, net, "torch")[cls]()


BACKEND = L.Backend(
    name="torch", lower=LOWER, reserved_attrs=RESERVED_ATTRS,
    reserved_globals=RESERVED_GLOBALS, reserved_locals=RESERVED_LOCALS,
    module_base="nn.Module", forward_name="forward", super_init=True, rngs=False,
    helpers=HELPERS, container="nn.Module()", sequence=_sequence,
    instance=lambda cls, args: f"{cls}({', '.join(args)})", init_code=_init_code,
    root_return=lambda expr, shape, rank: expr, ranks=L.ranks,
    weights={"conv": {"weight": ("weight", None), "bias": ("bias", None)},
             "linear": {"weight": ("weight", None), "bias": ("bias", None)},
             "bn": {"weight": ("weight", None), "bias": ("bias", None),
                    "running_mean": ("running_mean", None), "running_var": ("running_var", None)},
             # weight C_in x C_out/groups x kh x kw (torch's ConvTranspose2d layout)
             "conv_transpose": {"weight": ("weight", None), "bias": ("bias", None)},
             "layer_norm": {"weight": ("weight", None), "bias": ("bias", None)},
             "group_norm": {"weight": ("weight", None), "bias": ("bias", None)},
             "layer_scale": {"gamma": ("gamma", None)}},
    instantiate=_instantiate, title="PyTorch module", layout="NCHW", imports=IMPORTS)


def build_source(net: Network, init: str | None = None, tap: bool = False) -> str:
    """The PyTorch module for `net` as Python source text (see backends/lowering.py)."""
    return L.build_source(BACKEND, net, init=init, tap=tap)


def compile_module(net: Network, init: str | None = None, tap=None):
    """An instance of the generated module (see lowering.compile_module)."""
    return L.compile_module(BACKEND, net, init=init, tap=tap)


def write_source(net: Network, path, init: str | None = None) -> str:
    return L.write_source(BACKEND, net, path, init=init)


def module_tree(net: Network):
    """The nn.Module attribute tree of the generated module (backends/weights.py uses it)."""
    return L.module_tree(net, BACKEND)
