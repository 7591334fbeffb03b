"""XLA:CPU settings for the tests (see conftest.py): compile quickly rather than well."""
from __future__ import annotations

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
