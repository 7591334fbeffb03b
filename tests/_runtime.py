"""Shared by the backend tests: the parameters at which runtime checks (a forward pass in
torch and in JAX) build the bundled networks that are slow at their default input -- their
static checks (tests/test_library_c.py, the golden costs) use the defaults, and the input
size is not what a runtime check tests -- and a network's outputs as a list."""
from __future__ import annotations

SMALL = {
    "shufflenet_v2": {"resolution": 64}, "efficientnet": {"resolution": 64},
    "densenet": {"resolution": 32}, "regnet": {"resolution": 64},
    "mnasnet": {"resolution": 64}, "convnext": {"resolution": 64},
    "fcn": {"resolution": 64, "aux": True}, "deeplabv3": {"resolution": 64, "aux": True},
    "lraspp": {"resolution": 64},
    "mobilevit": {"resolution": 64}, "mobilenet_v4": {"resolution": 64},
    "unet": {"resolution": 188},          # the smallest input near 572 with Fig. 1's crops
}


def runtime_params(name: str) -> dict:
    return dict(SMALL.get(name, {}))


def outputs(value) -> list:
    """The module's outputs in order: an OrderedDict's values, or the one tensor."""
    return list(value.values()) if isinstance(value, dict) else [value]


def jax_with_weights(net, tensors: dict, tap=None):
    """The generated JAX module with torch-layout `tensors` loaded: built abstractly
    (nnx.eval_shape), so that no initial values are drawn, since every weight and BN
    statistic comes from `tensors`; the dropout RNG state (no torch counterpart) is a
    fixed key. The same values as compile_module + load_into_jax (weights.jax_module_from)."""
    from archc.backends import weights
    return weights.jax_module_from(net, tensors, tap=tap)
