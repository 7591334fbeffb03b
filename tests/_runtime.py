"""Shared by the backend tests: the parameters at which runtime checks (a forward pass in
torch and in JAX) build the bundled networks that are slow at their default input -- their
static checks (tests/test_library.py, the golden costs) use the defaults, and the input
size is not what a runtime check tests -- and a network's outputs as a list."""
from __future__ import annotations

import pytest

SMALL = {
    "shufflenet_v2": {"resolution": 64}, "efficientnet": {"resolution": 64},
    "densenet": {"resolution": 32}, "regnet": {"resolution": 64},
    "mnasnet": {"resolution": 64}, "convnext": {"resolution": 64},
    "fcn": {"resolution": 64, "aux": True}, "deeplabv3": {"resolution": 64, "aux": True},
    "lraspp": {"resolution": 64},
    "mobilevit": {"resolution": 64}, "mobilenet_v4": {"resolution": 64},
    "repvgg": {"resolution": 64}, "mobileone": {"resolution": 64},
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


# The development loop, `pytest -m "not slow"` (pyproject.toml registers the marker;
# docs/benchmarks.md, "Test suite"): a runtime check over every bundled network runs there
# on the CIFAR-10 SqueezeNexts, the project's own small networks; the ImageNet-size and
# segmentation networks' cases are marked slow, and run in the full suite.
DEV_LOOP_NETWORKS = frozenset({"sqnxt", "se_sqnxt", "shallow_sqnxt"})


def slow_unless(cases: list, keep) -> list:
    """`cases` for pytest.mark.parametrize (one argument each), every case for which
    keep(case) is false marked slow."""
    return [c if keep(c) else pytest.param(c, marks=pytest.mark.slow) for c in cases]
