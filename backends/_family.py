"""Which network parameters the generated network class takes as constructor arguments.

A generated file is one model family: `SESqueezeNext(width=0.5, classes=100)` builds what
`archc build se_sqnxt -D width=0.5 -D classes=100` builds. The network class's constructor
is the network body written as Python (backends/_render.py, with the parameters as names
instead of their values); a parameter becomes an argument only where that code is *verified*
to build the network for other values too:

- the network is elaborated again with other values of the parameter (two per parameter,
  `alternatives`), and the file written from each must be the same code as the file written
  from the values given (only the network class's docstring, which states the values, may
  differ). A value the body could not write in terms of the parameter (a literal that
  changes with it), a loop or branch that the parameter changes, or a block class chosen by
  it, changes the code: the parameter then stays fixed in the file;
- every expression of that code was checked (by evaluating it) to compute the value archc
  computed, in each of those builds;
- an assertion of the network over the parameter is written as a check in the constructor;
  one that cannot be written keeps the parameters it reads fixed.

Strings (variant names, activation kinds, initialisation schemes) stay fixed: they select
structures, and a file holds the structure it was built for. So does every parameter of a
network not compiled from a program (archc.deploy's transform).
"""
from __future__ import annotations

import hashlib

from archc.compiler import ArchError
from archc.compiler._loader import build as _rebuild

from ._names import PlanError
from ._plan import Plan


def alternatives(v) -> list:
    """Two other values of a parameter to verify its code with; [] when it stays fixed."""
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [v + 1, 2 * v + 3]
    if isinstance(v, float):
        return [v * 0.5, v * 0.75] if v else [0.25, 0.5]
    if isinstance(v, tuple) and v and all(isinstance(x, (int, float)) and
                                          not isinstance(x, bool) for x in v):
        out = []
        for k in range(2):
            out.append([x + 1 + k if isinstance(x, int) else x * (0.5 + k / 4) for x in v])
        return out
    return []


def exposed(backend, net, tap: bool = False) -> tuple:
    """The network parameters `net`'s class takes as constructor arguments (verified)."""
    program = getattr(net, "program", None)
    if program is None:
        return ()
    key = hashlib.sha256(repr((backend.name, tap, sorted(net.sources.items()), net.file,
                               net.name, sorted(net.params.items()))).encode()).hexdigest()
    if key not in _CACHE:
        if len(_CACHE) >= 256:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _exposed(backend, net, tap)
    return _CACHE[key]


_CACHE: dict = {}   # sha256 of (backend, tap, sources, network, values) -> exposed()


def _exposed(backend, net, tap: bool) -> tuple:
    names = [p for p, v in net.params.items() if alternatives(v)]
    while names:
        base, unchecked = _code(backend, net, names, tap)
        bad = set(unchecked)
        if not bad and all(_same(backend, net, names, tap, base, {p: alternatives(
                net.params[p])[k] for p in names}) for k in range(2)):
            return tuple(names)
        for p in names:   # together they differ: find which ones (the next round checks
            if p not in bad and not _same(backend, net, names, tap, base,   # both values)
                                          {p: alternatives(net.params[p])[0]}):
                bad.add(p)
        if not bad:   # each verified alone, not together: drop one and try again
            bad = {names[-1]}
        names = [p for p in names if p not in bad]
    return ()


def _code(backend, net, names, tap) -> tuple:
    from .lowering import init_scheme  # lowering imports this module
    plan = Plan(net, backend, tap, symbolic=names)
    from . import _source
    text = _source.file_text(backend, net, plan, net.name, init_scheme(net, None), tap,
                             doc=False)
    return text, plan.unchecked


def _same(backend, net, names, tap, base: str, values: dict) -> bool:
    """The file written from `values` (other values of some parameters) is `base`'s code
    (False when those values are not valid for the network)."""
    overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in net.params.items()}
    overrides.update(values)
    try:
        other = _rebuild(net.program, overrides)
        text, unchecked = _code(backend, other, names, tap)
    except (ArchError, PlanError):
        return False
    return text == base and not unchecked
