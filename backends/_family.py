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

from . import _source
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

# The verification's cost, bounded before and while it runs, in trace events (statements,
# iterations, layers and calls the elaborator recorded; rendering a file walks each once):
# a network recording more than BASE_EVENTS, or whose builds for the verification would
# walk more than BUDGET_EVENTS in all, keeps its parameters fixed (the largest bundled
# network records 1,690; SqueezeNext's verification walks about 14,000).
BASE_EVENTS = 20_000
BUDGET_EVENTS = 200_000


class _OverBudget(Exception):
    pass


def _events(net) -> int:
    return sum(len(s.trace) for s in net.scopes.values())


def _exposed(backend, net, tap: bool) -> tuple:
    if _events(net) > BASE_EVENTS:
        return ()
    try:
        return _Verifier(backend, net, tap).run()
    except _OverBudget:
        return ()


class _Verifier:
    """Finds the parameters whose other values give the same code, within BUDGET_EVENTS."""

    def __init__(self, backend, net, tap: bool):
        self.backend, self.net, self.tap, self.spent = backend, net, tap, 0

    def run(self) -> tuple:
        net = self.net
        names = [p for p, v in net.params.items() if alternatives(v)]
        while names:
            base, unchecked = self._code(net, names)
            bad = set(unchecked)
            if not bad and all(self._same(names, base, {p: alternatives(
                    net.params[p])[k] for p in names}) for k in range(2)):
                return tuple(names)
            for p in names:   # together they differ: find which ones (the next round
                if p not in bad and not self._same(     # checks both values)
                        names, base, {p: alternatives(net.params[p])[0]}):
                    bad.add(p)
            if not bad:   # each verified alone, not together: drop one and try again
                bad = {names[-1]}
            names = [p for p in names if p not in bad]
        return ()

    def _code(self, net, names) -> tuple:
        from .lowering import init_scheme  # lowering imports this module
        self.spent += _events(net)
        if self.spent > BUDGET_EVENTS:
            raise _OverBudget
        plan = Plan(net, self.backend, self.tap, symbolic=names)
        text = _source.file_text(self.backend, net, plan, net.name, init_scheme(net, None),
                                 self.tap, doc=False)
        return text, plan.unchecked

    def _same(self, names, base: str, values: dict) -> bool:
        """The file written from `values` (other values of some parameters) is `base`'s
        code (False when those values are not valid for the network)."""
        net = self.net
        overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in net.params.items()}
        overrides.update(values)
        try:
            other = _rebuild(net.program, overrides)
            text, unchecked = self._code(other, names)
        except (ArchError, PlanError):
            return False
        return text == base and not unchecked
