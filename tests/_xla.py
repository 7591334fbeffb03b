"""XLA:CPU settings for the tests (see conftest.py): compile quickly rather than well."""
from __future__ import annotations

import os
import subprocess
import sys

FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                "--xla_cpu_use_fusion_emitters=false")


def fast_compile(flags: str) -> str:
    """XLA_FLAGS `flags` with FAST_COMPILE added (a flag already set there is kept)."""
    have = {f.split("=")[0] for f in flags.split()}
    return " ".join([*flags.split(), *(f for f in FAST_COMPILE if f.split("=")[0] not in have)])


def default_xla_env(env: dict) -> dict:
    """The process environment `env` with XLA's default compiler settings (FAST_COMPILE out)."""
    return dict(env, XLA_FLAGS=" ".join(f for f in env.get("XLA_FLAGS", "").split()
                                        if f not in FAST_COMPILE))


def understood(flags: str) -> bool:
    """Whether this jaxlib's XLA accepts XLA_FLAGS `flags` (it aborts the process on a flag it
    does not know, and flags come and go between releases): one tiny computation in a child
    process, about a second."""
    code = "import jax, jax.numpy as jnp; jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(2)))"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
