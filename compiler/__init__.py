"""archc.compiler: parse -> elaborate -> graph IR -> analysis. Imports neither torch nor jax.

Public entry points:
    load(target, **params) -> Network       parse a file or bundled name and elaborate it
    load_source(text, **params) -> Network  the same for source text
    analyze(network, bits=32) -> Analysis   per-layer costs and totals
    ops.REGISTRY                             every primitive op, its shape rule and costs
"""
from __future__ import annotations

from . import ops
from ._loader import Program, bundled_networks, library_dir, load_program, parse_define, resolve
from ._loader import build as _build
from .analysis import Analysis, LayerCost, analyze
from .errors import ArchError, Span
from .ir import Network


def load(target, /, **params) -> Network:
    """Compile a .arch file (a path, or the name of a bundled network) with parameter values
    (a network parameter may be called `target`: the file is positional only)."""
    return _build(load_program(target), params)


def load_source(text: str, /, filename: str = "<string>", **params) -> Network:
    """Compile .arch source text (positional only; `filename` names it in messages)."""
    return _build(load_program(source=text, filename=filename), params)


__all__ = ["Analysis", "ArchError", "LayerCost", "Network", "Program", "Span", "analyze",
           "bundled_networks", "library_dir", "load", "load_program", "load_source", "ops",
           "parse_define", "resolve"]
