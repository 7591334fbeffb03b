"""Seed 002's compression pipeline (prune, quantize, score), in JAX, from the same .arch file.

    calibration.py  quantization steps: MaxValue and KL-divergence calibration (numpy only)
    plan.py         where activations are quantized, from the graph IR (sec. 3.5 rules)
    sensitivity.py  per-layer sensitivity curves and the sparsity they give (sec. 2)
    masks.py        magnitude masks, mask files, the masked optimizer for finetuning
    fold.py         BatchNorm folded into the conv/linear layer before it
    fakequant.py    fake quantization with a straight-through estimator (QAT)
    observe.py      activation maxima and histograms through the tap API
    spec.py         the .quant spec of the result and its bit-op score
    state.py        model state by layer, safetensors in and out
    settings.py     every option, its default and its source
    job.py          the trained run, network and data a job starts from
    steps.py        the steps, one function each
    pipeline.py     the driver: checks, order, resume

The public entry points are in archc/compress.py; the CLI in archc/_cli_compress.py.
"""
