"""Precision and sparsity specs (`.quant` files) for the bit-op analysis (docs/bitops.md).

A spec is a network-wide default plus per-layer overrides chosen by glob patterns over the
hierarchical layer names (`fnmatch`: `*` also crosses dots, `?`, `[0-9]`). One rule a line:

    # comment
    default weight_bits=8 act_bits=8 acc_bits=16 bias_bits=16 sparsity=0
    conv1 sparsity=0.45
    *.se.* act_bits=16

Later lines win over earlier ones. Keys:
    weight_bits  bits per weight of conv/linear layers
    act_bits     bits of the layer's *output* activations (a layer's input bits are the
                 act_bits of the layers feeding it; `input` names the network input)
    acc_bits     accumulator width: every add is counted at this width
    bias_bits    bits per bias (own bias or a folded BatchNorm)
    sparsity     fraction of pruned weights, 0 <= s < 1 (weighted layers only)
Unknown keys, bad values and patterns that match no layer are positioned errors.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

from .errors import ArchError, Span, did_you_mean, source_lines

KEYS = {"weight_bits": int, "act_bits": int, "acc_bits": int, "bias_bits": int,
        "sparsity": float}
# No spec: float32 everywhere, dense.
FLOAT32 = {"weight_bits": 32, "act_bits": 32, "acc_bits": 32, "bias_bits": 32, "sparsity": 0.0}


@dataclass(frozen=True)
class Precision:
    weight_bits: int
    act_bits: int
    acc_bits: int
    bias_bits: int
    sparsity: float


@dataclass
class Rule:
    pattern: str            # "default" for the default line
    values: dict            # key -> value
    span: Span              # the pattern's position


@dataclass
class QuantSpec:
    file: str
    source: str
    rules: list = field(default_factory=list)

    def resolve(self, names) -> dict:
        """Precision per layer name; every non-default pattern must match some layer."""
        names = list(names)
        base = dict(FLOAT32)
        for r in self.rules:
            if r.pattern == "default":
                base.update(r.values)
        out = {n: dict(base) for n in names}
        for r in self.rules:
            if r.pattern == "default":
                continue
            hit = [n for n in names if fnmatch.fnmatchcase(n, r.pattern)]
            if not hit:
                close = did_you_mean(r.pattern, names)
                raise ArchError(f"pattern '{r.pattern}' matches no layer of the network", r.span,
                                hint=close or "patterns are globs over hierarchical layer names "
                                "such as 'conv4_1.dwconv.*'; `archc analyze FILE` lists them",
                                source=self.source)
            for n in hit:
                out[n].update(r.values)
        return {n: Precision(**v) for n, v in out.items()}


_INT = r"[0-9]+"
_FLOAT = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"


def _err(msg, file, source, line, col, length=1, hint=None):
    span = Span(file, line, col, line, col + max(length, 1))
    return ArchError(msg, span, hint=hint, source=source)


def parse_quant(text: str, filename: str = "<quant>") -> QuantSpec:
    spec = QuantSpec(filename, text)
    seen_default = None
    for ln, raw in enumerate(source_lines(text), start=1):
        line = raw.split("#", 1)[0]
        toks, col = [], 0
        while col < len(line):
            if line[col].isspace():
                col += 1
                continue
            start = col
            while col < len(line) and not line[col].isspace():
                col += 1
            toks.append((line[start:col], start + 1))
        if not toks:
            continue
        pattern, pcol = toks[0]
        if "=" in pattern:
            raise _err("a rule starts with a layer pattern or 'default', not a setting",
                       filename, text, ln, pcol, len(pattern),
                       hint="e.g. `conv1 sparsity=0.45` or `default weight_bits=8`")
        if pattern == "default":
            if seen_default:
                raise _err(f"a second 'default' line (the first is line {seen_default})",
                           filename, text, ln, pcol, len(pattern))
            seen_default = ln
        if len(toks) == 1:
            raise _err(f"'{pattern}' sets nothing", filename, text, ln, pcol, len(pattern),
                       hint="add key=value settings: " + ", ".join(KEYS))
        values = {}
        for tok, tcol in toks[1:]:
            key, eq, val = tok.partition("=")
            if key not in KEYS:
                raise _err(f"unknown setting '{key}'", filename, text, ln, tcol, len(key),
                           hint=did_you_mean(key, KEYS) or "settings: " + ", ".join(KEYS))
            if not eq or not val:
                raise _err(f"'{key}' needs a value, e.g. {key}=8", filename, text, ln, tcol,
                           len(tok))
            if key in values:
                raise _err(f"'{key}' is set twice on this line", filename, text, ln, tcol, len(key))
            vcol = tcol + len(key) + 1
            try:
                # plain ASCII digits only: Python's int() and float() also take 1_6, ２ and nan
                if not re.fullmatch(_INT if KEYS[key] is int else _FLOAT, val):
                    raise ValueError
                v = KEYS[key](val)
            except ValueError:
                kind = "a whole number of bits" if KEYS[key] is int else "a number"
                raise _err(f"'{key}' must be {kind}, got '{val}'", filename, text, ln, vcol,
                           len(val)) from None
            if key == "sparsity" and not 0.0 <= v < 1.0:
                raise _err(f"sparsity must be in [0, 1), got {val}", filename, text, ln, vcol,
                           len(val))
            if key != "sparsity" and not 1 <= v <= 64:
                raise _err(f"'{key}' must be between 1 and 64 bits, got {val}", filename, text,
                           ln, vcol, len(val))
            values[key] = v
        spec.rules.append(Rule(pattern, values, Span(filename, ln, pcol, ln, pcol + len(pattern))))
    return spec


def load_quant(path: str) -> QuantSpec:
    """Read a spec file: a path, or the name of a bundled spec in archs/ (e.g. int8.quant)."""
    from ._loader import library_dir
    candidates = [path]
    if not os.path.isabs(path):
        candidates.append(os.path.join(str(library_dir()), path))
        if not path.endswith(".quant"):
            candidates.append(os.path.join(str(library_dir()), path + ".quant"))
    from pathlib import Path

    from ._loader import _read
    for c in candidates:
        if os.path.isfile(c):   # bounded, decoded with positioned errors (as .arch files are)
            return parse_quant(_read(Path(c), None), c)
    raise ArchError(f"--quant: no such spec file '{path}'", None,
                    hint="give a path, or a bundled spec: profitablenet.quant, int8.quant, "
                         "int8_sparse50.quant")
