"""Zeng et al.'s compression pipeline: prune, quantize and score a trained network
(docs/compression.md).

    >>> from archc.compress import calibration_step
    >>> calibration_step(values, precision=8, method="kl", symmetric=False)   # the step s

`calibration_step` needs numpy only; `compress` (the whole pipeline, or one step) needs the
training dependencies (`pip install 'archc[train]'`).
"""
from __future__ import annotations

from archc.compression.calibration import (
    calibration_step,
    channel_max_steps,
    int_range,
    kl_step_from_histogram,
    max_step,
)
from archc.compression.settings import Settings

STEPS = ("sensitivity", "prune", "finetune", "quantize", "qat", "score")


def compress(target, run: str, data: str, out: str, step: str = "all", *,
             train_per_class: int | None = None, test_per_class: int | None = None,
             cache: bool = True, progress: bool = True, log=print, **settings) -> dict:
    """Compress the finished `archc train` run in `run` (trained on `data`) into `out`.

    target: the trained Network (or a bundled name / .arch file at its defaults).
    step: "all" (the five steps in order, then the score; resumes where it stopped) or one of
    STEPS. settings: the fields of archc.compression.settings.Settings (e.g.
    target_sparsity=0.4, finetune_epochs=10, act_bits=8). Returns the last step's result."""
    import archc
    archc._require_training("jax")
    from archc.compression.pipeline import compress as run_pipeline
    net = target if isinstance(target, archc.Network) else archc.load(target)
    return run_pipeline(net, run, data, out, step, train_per_class=train_per_class,
                        test_per_class=test_per_class, cache=cache, progress=progress, log=log,
                        **settings)


__all__ = ["STEPS", "Settings", "calibration_step", "channel_max_steps", "compress", "int_range",
           "kl_step_from_histogram", "max_step"]
