"""The source text of the helpers a generated JAX file may hold (backends/jax_backend.py's
lowerings name them): PyTorch-semantics BatchNorm, LayerNorm, GroupNorm, pooling with
ceil mode and count_include_pad, attention, ConvTranspose, resampling ... Each is emitted
once, only where the network uses it; initial values are numpy constants or placeholders
that the file's init_weights draws (backends/_jax_init.py), so constructing a module
compiles no XLA program.
"""
from __future__ import annotations

import re

HELPERS = {
    "multihead_attention": '''
def multihead_attention(q, k, v, heads, patch=1):
    """softmax(q k^T / sqrt(d_k)) v per head between the positions of NHWC maps. Heads are
    consecutive channel blocks; k and v hold g heads, each serving heads / g query heads;
    with patch p a position attends only to those at its offset inside p x p patches."""
    p, dk = patch, q.shape[-1] // heads
    g = k.shape[-1] // dk

    def tokens(t, groups, per):   # N x H x W x C -> N x p*p x groups x per x H*W/p^2 x d
        n, h, w, c = t.shape
        d = c // (groups * per)
        t = t.reshape(n, h // p, p, w // p, p, groups, per, d).transpose(0, 2, 4, 5, 6, 1, 3, 7)
        return t.reshape(n, p * p, groups, per, (h // p) * (w // p), d)

    attn = (tokens(q, g, heads // g) * dk ** -0.5) @ jnp.swapaxes(tokens(k, g, 1), -1, -2)
    out = jax.nn.softmax(attn, axis=-1) @ tokens(v, g, 1)
    n, h, w, _ = q.shape
    out = out.reshape(n, p, p, heads, h // p, w // p, -1).transpose(0, 4, 1, 5, 2, 3, 6)
    return out.reshape(n, h, w, -1)
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
        else:   # the batch's statistics; the running variance takes the unbiased one
            xf, axes = x.astype(jnp.float32), tuple(range(x.ndim - 1))
            mean, var = jnp.mean(xf, axis=axes), jnp.var(xf, axis=axes)
            n, m = xf.size // xf.shape[-1], self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * mean
            self.var[...] = (1 - m) * self.var[...] + m * var * (n / max(n - 1, 1))
        y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + self.eps).astype(x.dtype)
        if self.affine:
            y = y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
        return y
''',
    "LayerNorm": '''
class LayerNorm(nnx.Module):
    """PyTorch's LayerNorm over the last (channel) axis: biased variance, eps inside the root."""

    def __init__(self, num_features, *, eps=1e-5, affine=True):
        self.eps, self.affine = eps, affine
        if affine:
            self.scale = nnx.Param(np.ones(num_features, np.float32))
            self.bias = nnx.Param(np.zeros(num_features, np.float32))

    def __call__(self, x):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
        return y
''',
    "GroupNorm": '''
class GroupNorm(nnx.Module):
    """PyTorch's GroupNorm on NHWC: each group's channels normalised over them and H, W."""

    def __init__(self, groups, num_features, *, eps=1e-5, affine=True):
        self.groups, self.eps, self.affine = groups, eps, affine
        if affine:
            self.scale = nnx.Param(np.ones(num_features, np.float32))
            self.bias = nnx.Param(np.zeros(num_features, np.float32))

    def __call__(self, x):
        n, h, w, c = x.shape
        g = x.reshape(n, h, w, self.groups, c // self.groups)
        mean = jnp.mean(g, axis=(1, 2, 4), keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=(1, 2, 4), keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(n, h, w, c)
        if self.affine:
            y = y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)
        return y
''',
    "LayerScale": '''
class LayerScale(nnx.Module):
    """A learned per-channel multiplier gamma (layer scale) on the last (channel) axis."""

    def __init__(self, channels, init=1e-6):
        self.gamma = nnx.Param(np.full(channels, init, np.float32))

    def __call__(self, x):
        return x * self.gamma[...].astype(x.dtype)
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
    """PyTorch's max_pool2d on NHWC; padding (h, w) or (top, left, bottom, right)."""
    _, h, w, _ = x.shape
    top, left, bottom, right = tuple(padding) * (2 if len(padding) == 2 else 1)
    eh = _ceil_extra(h, kernel[0], stride[0], top, ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], left, ceil_mode)
    pads = ((0, 0), (top, bottom + eh), (left, right + ew), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *kernel, 1), (1, *stride, 1), pads)
''',
    "avg_pool": '''
def avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """PyTorch's avg_pool2d on NHWC: the window is clipped to the padded input
    (count_include_pad) or to the input; the extra ceil-mode padding never counts. padding
    (h, w) or (top, left, bottom, right)."""
    _, h, w, _ = x.shape
    top, left, bottom, right = tuple(padding) * (2 if len(padding) == 2 else 1)
    eh = _ceil_extra(h, kernel[0], stride[0], top, ceil_mode)
    ew = _ceil_extra(w, kernel[1], stride[1], left, ceil_mode)
    pads = ((0, 0), (top, bottom + eh), (left, right + ew), (0, 0))
    window, strides = (1, *kernel, 1), (1, *stride, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1, h, w, 1), x.dtype)
    if count_include_pad:
        ones = jnp.pad(ones, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=1.0)
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
    "center_crop": '''
def center_crop(x, size):
    """The centre size[0] x size[1] window of x's H x W (NHWC): rows from (H - h) // 2."""
    top, left = (x.shape[1] - size[0]) // 2, (x.shape[2] - size[1]) // 2
    return x[:, top:top + size[0], left:left + size[1]]
''',
    "flatten": '''
def flatten(x):
    """N x H x W x C -> N x (C*H*W) in PyTorch's order (C, H, W)."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
''',
}


def _always_affine(source: str) -> str:
    """A norm helper without its `affine` option: always a learned scale and bias."""
    out = re.sub(r", affine=True\)", ")", source)
    out = re.sub(r", self\.affine = (.*), affine\n", r" = \1\n", out)
    out = re.sub(r"\n( +)if affine:\n\1    (.*)\n\1    (.*)\n", r"\n\1\2\n\1\3\n", out)
    out = re.sub(r"\n( +)if self\.affine:\n\1    y = (.*)\n\1return y\n", r"\n\1return \2\n", out)
    if "affine" in out:
        raise AssertionError("a norm helper's affine option no longer has the expected form")
    return out


def _calls_pass(name: str, keyword: str, text: str) -> bool:
    """Whether a call of `name` in `text` passes `keyword=` (its arguments to the matching
    parenthesis)."""
    for m in re.finditer(rf"\b{name}\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        if re.search(rf"\b{keyword}=", text[m.end():i]):
            return True
    return False


def _affine_where_used(name: str):
    """The helper's source for a file: with its `affine` option only where a call passes it."""
    full, plain = HELPERS[name], _always_affine(HELPERS[name])
    return lambda text: full if _calls_pass(name, "affine", text) else plain


HELPERS.update({name: _affine_where_used(name) for name in ("BatchNorm", "LayerNorm", "GroupNorm")})
