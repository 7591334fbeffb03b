"""`archc sweep`: the static costs of every combination of a grid of network parameters.

    archc sweep se_sqnxt --grid 'width=[0.5, 1.0, 2.0]' --grid 'stages=[[1,2,4,1],[1,2,8,1]]'

Each `--grid name=LIST` is a list literal of the language (the -D syntax); the sweep is their
cartesian product, in the order given (the last grid varies fastest), with the -D values
fixed. The program is parsed once and elaborated per combination (`_loader.build` with
overrides), so a 100-combination sweep takes about a second (docs/sweep.md).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from archc.compiler import _syntax as S
from archc.compiler._loader import Program, _literal, build
from archc.compiler._parser import parse_expression
from archc.compiler._values import show
from archc.compiler.analysis import analyze
from archc.compiler.errors import ArchError, Span, did_you_mean

MAX_COMBINATIONS = 10_000
GRID_FILE = "<--grid>"

# metric -> (column title, True when smaller is better)
METRICS = {
    "params": ("params", True),
    "macs": ("MACs", True),
    "size_mb": ("size MB", True),
    "peak_activations": ("peak activations", True),
    "score": ("bit-op score", True),
    "storage_mb": ("bit-op storage MB", True),
    "acc": ("accuracy %", False),
}


@dataclass
class Grid:
    name: str
    values: list          # language values (lists are tuples)
    spans: list           # Span of each value inside `text`
    text: str             # "--grid name=[...]" as errors show it


def grid_text(text: str) -> str:
    if "=" not in text:
        return "--grid " + text.strip()
    name, value = text.split("=", 1)
    return f"--grid {name.strip()}={value.strip()}"


def parse_grid(text: str) -> Grid:
    """`name=[v1, v2, ...]` -> Grid; errors point into `--grid name=...` (file <--grid>)."""
    display = grid_text(text)

    def err(msg, col, end=None, hint=None):
        return ArchError(msg, Span(GRID_FILE, 1, col, 1, end or col + 1), hint=hint,
                         source=display)

    if "=" not in text:
        name = text.strip()
        raise err(f"--grid expects name=[values], got '{name}'", 8, 8 + max(len(name), 1),
                  hint=f"e.g. --grid '{name if name.isidentifier() else 'width'}=[0.5, 1.0, 2.0]'")
    name, value = (part.strip() for part in text.split("=", 1))
    if not name.isidentifier():
        raise err(f"'{name}' is not a parameter name", 8, 8 + max(len(name), 1))
    offset = len("--grid ") + len(name) + 2          # column of the value's first character
    if not value:
        raise err(f"--grid {name}= has no values", offset - 1, offset,
                  hint=f"e.g. --grid '{name}=[1, 2]'")
    try:
        expr = parse_expression(value, GRID_FILE)
    except ArchError as e:
        col = offset + ((e.span.column - 1) if e.span else 0)
        raise err(e.message, col) from None
    if not isinstance(expr, S.ListLit):
        raise err(f"--grid {name}: the values must be a [list], got '{value}'", offset,
                  offset + len(value), hint=f"a single value is -D {name}={value}; a grid "
                                            f"is --grid '{name}=[{value}, ...]'")
    if not expr.items:
        raise err(f"--grid {name}: the list of values is empty", offset, offset + len(value))
    values, spans = [], []
    for item in expr.items:
        s = item.span
        span = Span(GRID_FILE, 1, offset + s.column - 1, 1,
                    offset + (s.end_column or s.column + 1) - 1)
        try:
            values.append(_literal(item))
        except ArchError as e:
            raise ArchError(e.message, span, source=display,
                            hint="grid values are not evaluated; give each value itself") from None
        spans.append(span)
    return Grid(name, values, spans, display)


def combinations(grids: list[Grid], fixed: dict) -> list[dict]:
    """The cartesian product: [{name: (value, span)}], the last grid varying fastest."""
    seen = {}
    for g in grids:
        if g.name in seen:
            raise ArchError(f"--grid {g.name} is given twice", g.spans[0], source=g.text)
        if g.name in fixed:
            raise ArchError(f"{g.name} is both swept (--grid) and fixed (-D)", g.spans[0],
                            source=g.text, hint=f"drop -D {g.name}=... or the grid")
        seen[g.name] = g
    count = math.prod(len(g.values) for g in grids) if grids else 1
    if count > MAX_COMBINATIONS:
        raise ArchError(f"the grid has {count:,} combinations; the limit is {MAX_COMBINATIONS:,}",
                        hint="sweep fewer values, or split the sweep with -D")
    out = []
    for combo in itertools.product(*[list(zip(g.values, g.spans)) for g in grids]):
        out.append({g.name: vs for g, vs in zip(grids, combo)})
    return out


@dataclass
class Sweep:
    network: str
    file: str
    grids: list                      # Grid
    fixed: dict                      # name -> value
    bits: int
    rows: list = field(default_factory=list)   # dict per combination
    rules: str | None = None         # bit-op rules, when scored
    seconds: float = 0.0


def run(program: Program, grids: list[Grid], fixed: dict | None = None, bits: int = 32,
        rules: str | None = None, spec=None, baseline: str = "imagenet") -> Sweep:
    """Elaborate and analyse every combination. fixed: {name: value | (value, span)}."""
    from archc.compiler.bitops import bitops
    fixed = dict(fixed or {})
    t0 = time.perf_counter()
    known = [p.name for p in program.network_def.params]
    for g in grids:
        if g.name not in known:
            col = len("--grid ") + 1
            raise ArchError(f"network '{program.network_def.name}' has no parameter '{g.name}'",
                            Span(GRID_FILE, 1, col, 1, col + len(g.name)), source=g.text,
                            hint=did_you_mean(g.name, known) or "parameters: " + ", ".join(known))
    combos = combinations(grids, fixed)
    sweep = Sweep(program.network_def.name, program.main.file, grids,
                  {k: (v[0] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], Span)
                       else v) for k, v in fixed.items()}, bits, rules=rules)
    for k, combo in enumerate(combos, 1):
        try:
            net = build(program, {**fixed, **combo})
        except ArchError as e:
            where = ", ".join(f"{n}={show(v)}" for n, (v, _) in combo.items())
            e.message = f"combination {k} of {len(combos)} ({where}): {e.message}"
            if e.span is not None and e.span.file == GRID_FILE:
                e.source = next((g.text for g in grids if e.span in g.spans), e.source)
            raise
        totals = analyze(net, bits=bits).totals
        row = {"values": {n: v for n, (v, _) in combo.items()},
               "network_params": dict(net.params),
               "params": totals["params"], "buffers": totals["buffers"], "macs": totals["macs"],
               "size_bytes": totals["size_bytes"], "size_mb": totals["size_bytes"] / 1e6,
               "size_mb_with_buffers": totals["size_bytes_with_buffers"] / 1e6,
               "peak_activations": totals["peak_activations"]}
        if rules:
            t = bitops(net, rules, spec, baseline).totals
            row["score"] = t["score"]
            row["storage_mb"] = t["storage_bits"] / 8e6
        sweep.rows.append(row)
    sweep.seconds = time.perf_counter() - t0
    return sweep


def pareto_front(points: list, smaller_better: tuple = (True, True)) -> list[int]:
    """Indices (ascending) of the 2-D points that no other point dominates: none is at least as
    good in both coordinates and better in one. Equal points are all on the front or all off
    it; a point with a None coordinate never is. O(n log n)."""
    keyed = sorted((tuple(v if small else -v for v, small in zip(p, smaller_better)), i)
                   for i, p in enumerate(points) if len(p) == 2 and None not in p)
    front, best, last = [], math.inf, None
    for k, i in keyed:
        if k[1] < best:
            front.append(i)
            best, last = k[1], k
        elif k == last:
            front.append(i)
    return sorted(front)
