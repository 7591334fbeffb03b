"""The initialisation code of a generated JAX file.

Eager `jax.random` initialisers compile one XLA program per distinct shape: constructing a
small network (se_sqnxt) in a fresh process took 40 s. A generated file therefore builds its
conv and linear layers with placeholder values (`placeholder`: a read-only numpy view of one
zero; the BatchNorm helper's constants are numpy too) and every class's `__init__` ends with
`init_weights(self, rngs)`, which draws the values of the layers still holding placeholders
with numpy, from one key of `rngs.params()`, and puts the module's arrays on the device in
one call. Traced (nnx.jit, nnx.eval_shape of the constructor), the same numpy draw runs as a
jax.pure_callback, so a traced build has the eager values. Distributions: PyTorch's default
U(-b, b), b = 1/sqrt(fan_in), for weights and biases; or lowering.INIT_SCHEMES's variance
scaling with flax's fans of a kernel (..., in, out) and zero biases
(tests/test_jax_init.py checks them layer by layer).
"""
from __future__ import annotations

import textwrap

from . import lowering as L


# the layers built with placeholder values: (op, the file's class: a partial of nnx's)
LAYERS = (("conv", "Conv"), ("linear", "Linear"))


def init_code(classes: dict, scheme: str, used: set):
    """(lines the network's __init__ ends with, the file's initialisation code): `placeholder`,
    the `Conv` / `Linear` the network uses (nnx's with placeholder values) and `init_weights`,
    which draws the scheme's values with numpy from one key of rngs.params(). classes: op ->
    the class init_weights initialises."""
    kinds = L.init_classes(classes, used)
    if scheme == "default":
        doc = ("PyTorch's default initialisation for every conv and linear layer: weights and "
               "biases uniform in +-1/sqrt(fan_in)")
        draw = """bound = np.float32(1 / math.sqrt(max(math.prod(m.kernel.shape[:-1]), 1)))
            for p in (m.kernel, m.bias):
                if p is not None:
                    values.append((rng.random(p.shape, np.float32) * 2 - 1) * bound)"""
        drawn = "[p for m in layers for p in (m.kernel, m.bias) if p is not None]"
    else:
        dist, fan, scale = L.INIT_SCHEMES[scheme]
        doc = (f"{scheme} weights (variance {scale} / {fan}) and zero biases of the conv and "
               "linear layers")
        fans = {"fan_in": "fan_in", "fan_out": "fan_out",
                "fan_avg": "(fan_in + fan_out) / 2"}[fan]
        value = ("(rng.random(shape, np.float32) * 2 - 1) * math.sqrt(3 * var)"
                 if dist == "uniform" else
                 "rng.standard_normal(shape, np.float32) * math.sqrt(var)")
        draw = f"""*receptive, fan_in, fan_out = shape = m.kernel.shape
            var = {scale} / max(1.0, {fans} * math.prod(receptive))
            values.append({value})"""
        drawn = "[m.kernel for m in layers]   # the biases keep their placeholders' zeros"
    doc = "\n".join(textwrap.wrap(
        f"{doc}, drawn with numpy (no XLA program per shape) from one key of "
        "rngs.params().", 88,
        subsequent_indent="    "))
    layers = "".join(f"\n{name} = functools.partial(nnx.{name}, kernel_init=placeholder, "
                     "bias_init=placeholder)" for op, name in LAYERS if op in used)
    layers += "\n\n" if layers else ""
    return ["init_weights(self, rngs)"], f'''
def placeholder(key, shape, dtype=np.float32):
    """A layer's values (a view of one zero) until init_weights draws them."""
    return np.broadcast_to(np.zeros((), dtype), shape)

{layers}
def init_weights(module, rngs):
    """{doc}"""
    kinds = ({kinds})
    layers = [m for _, m in nnx.iter_modules(module)   # those still holding placeholders
              if isinstance(m, kinds) and isinstance(m.kernel.get_value(), np.ndarray)]
    params = {drawn}

    def draw(key):
        rng, values = np.random.default_rng(np.asarray(key)), []
        for m in layers:
            {draw}
        return values
    key = jax.random.key_data(rngs.params())
    traced = isinstance(key, jax.core.Tracer)   # nnx.jit, nnx.eval_shape: draw in a callback
    shapes = [jax.ShapeDtypeStruct(p.shape, np.float32) for p in params]
    for p, value in zip(params, jax.pure_callback(draw, shapes, key) if traced else draw(key)):
        p.set_value(value)
    if not traced:
        nnx.update(module, jax.device_put(nnx.state(module)))
'''
