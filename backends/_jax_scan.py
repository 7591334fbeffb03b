"""Runs of identical blocks applied by one jax.lax.scan: an option of the generated JAX
`Sequential` (jax_backend.set_scan), off by default.

A stage of N identical blocks (same graph definition -- classes, static attributes -- same
parameter shapes, and an output shaped like its input) is traced and compiled once instead of
N times: the blocks' states are stacked, `lax.scan` applies the block to the carried
activation, and the new batch statistics and RNG counts are written back to each block. The
blocks keep their names and their own parameters, so the NNX paths, checkpoints and weight
exchange are unchanged. Blocks that are not part of such a run are applied one by one.

Measured on this project's 2-core CPU (docs/benchmarks.md, "Compile time"), the scanned train
step of SqueezeNext compiles slower and runs slower under XLA:CPU than the unrolled one, so
scanning is off by default; bench/gpu.sh measures both on a GPU.
"""
from __future__ import annotations


def set_scan(cls, on: bool) -> None:
    """Make the generated Sequential class `cls` scan its runs (on) or not (its own loop).
    Set it before tracing: jax reuses the traces of functions it has already traced."""
    if on:
        if "_archc_unrolled_call" not in cls.__dict__:
            cls._archc_unrolled_call = cls.__call__
        cls.__call__ = scan_call
    elif "_archc_unrolled_call" in cls.__dict__:
        cls.__call__ = cls._archc_unrolled_call


def runs(blocks: list) -> list:
    """Consecutive blocks grouped by (graph definition, state shapes):
    [(graphdef, [state, ...], [block, ...]), ...]."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    out: list = []
    for block in blocks:
        graphdef, state = nnx.split(block)
        shapes = jax.tree.map(lambda a: (jnp.shape(a), a.dtype), state)
        if out and out[-1][0] == graphdef and out[-1][3] == shapes:
            out[-1][1].append(state)
            out[-1][2].append(block)
        else:
            out.append((graphdef, [state], [block], shapes))
    return [r[:3] for r in out]


def scan_call(self, x):
    """Sequential.__call__ with runs of identical blocks scanned."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    for graphdef, states, blocks in runs([getattr(self, name) for name in self.order]):

        def body(x, state, graphdef=graphdef):
            block = nnx.merge(graphdef, state)
            return block(x), nnx.state(block, nnx.Not(nnx.Param))

        if len(blocks) > 1:
            out = jax.eval_shape(body, x, states[0])[0]
        if len(blocks) == 1 or (out.shape, out.dtype) != (x.shape, x.dtype):
            for block in blocks:
                x = block(x)
            continue
        x, new = jax.lax.scan(body, x, jax.tree.map(lambda *s: jnp.stack(s), *states))
        for i, block in enumerate(blocks):   # batch statistics, RNG counts
            nnx.update(block, jax.tree.map(lambda s: s[i], new))
    return x
