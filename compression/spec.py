"""The `.quant` spec of a compressed model (format: compiler/quant.py, docs/bitops.md) and
its score under the bit-op analysis.

One `default` line (weights, activations, accumulator and biases as used), then one line per
layer that differs: tensors left in floating point (act_bits = float_bits) and every pruned
conv/linear layer with its measured sparsity, written with repr() so the analysis reads back
exactly the fraction measured. Layer names are written as literal patterns (glob characters
escaped), so each line matches its layer only.
"""
from __future__ import annotations

from archc.compiler import Network

from .plan import Plan


def literal(name: str) -> str:
    """A fnmatch pattern matching exactly `name`."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def spec_text(net: Network, plan: Plan, sparsity: dict, *, weight_bits: int, act_bits: int,
              bias_bits: int, acc_bits: int, float_bits: int, header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append(f"default weight_bits={weight_bits} act_bits={act_bits} acc_bits={acc_bits} "
                 f"bias_bits={bias_bits} sparsity=0")
    width = max([len(n) for n in net.layers()] + [5])
    for n in net.layers():
        settings = []
        if not plan.scored[n]:
            settings.append(f"act_bits={float_bits}")
        s = sparsity.get(n, 0.0)
        if s:
            settings.append(f"sparsity={float(s)!r}")
        if settings and (float_bits != act_bits or s):
            lines.append(f"{literal(n):<{width}} " + " ".join(settings))
    return "\n".join(lines) + "\n"


def score(net: Network, text: str, rules: str = "table1", baseline: str = "imagenet",
          filename: str = "<spec>"):
    """The bit-op report (compiler.bitops.BitReport) of `net` under a spec's text."""
    from archc.compiler.bitops import bitops
    from archc.compiler.quant import parse_quant
    return bitops(net, rules, parse_quant(text, filename) if text else None, baseline)
