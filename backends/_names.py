"""Python names for archc names: `identifier`, and the module tree of attribute paths.

Every name the generated code takes from the .arch file (a parameter, a variable, a layer or a
block call) passes through `identifier`; `ModuleTree` gives each member of the generated module
(stateful layers and the scopes that hold them) its attribute path, for code generation
(backends/_plan.py) and weight exchange (backends/weights.py) alike.
"""
from __future__ import annotations

import unicodedata

from . import _pyexpr as P
from ._body import Member


class PlanError(Exception):
    """A network the generated code cannot express; lowering.py positions it."""

    def __init__(self, message, span=None, hint=None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


def identifier(name: str, reserved=frozenset()) -> str:
    """A Python identifier for an archc name, meaning the same to Python: NFKC-normalised
    (as Python normalises identifiers: `ﬁ` is `fi`), a leading `__` turned into `m__`
    (Python would mangle it inside a class body), keywords and reserved names with a
    trailing '_'. Callers keep the results of one namespace apart with `reserved`."""
    name = unicodedata.normalize("NFKC", name)
    if not name.isidentifier():
        raise PlanError(f"'{name}' is not a Python identifier")
    if name.startswith("__"):
        name = "m" + name
    name = P.identifier(name)
    while name in reserved:
        name += "_"
    return name


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) or "Block"


# ---- the module tree: attribute paths ----------------------------------------------------------
class ModuleTree:
    """Attribute paths of the generated module's members, from the IR's hierarchical names.

    Members are the stateful layers (ops.Op.stateful) and the scopes that hold them (block
    calls, labelled loop iterations). Each name component becomes an attribute, made a
    Python identifier that the framework does not reserve; siblings that would collide
    get trailing '_'. The same tree serves code generation and weight exchange."""

    def __init__(self, net, reserved=frozenset()):
        self.reserved = reserved
        self._attr: dict = {}       # IR name (layer or scope) -> attribute component
        self._taken: dict = {}      # parent IR name -> {attribute}
        self._parent: dict = {}
        members = [n for n in net.layers() if net.op(n).stateful]
        scoped = {d.get("scope") for _, d in net.graph.nodes(data=True)}
        members += [s.name for s in net.scopes.values() if s.kind == "block"
                    and any(n == s.name or n.startswith(s.name + ".") for n in scoped if n)]
        needed = set()
        for n in members:
            parts = n.split(".")
            for i in range(1, len(parts) + 1):
                needed.add(".".join(parts[:i]))
        for name in _ordered(net, needed):
            self._add(net, name)

    def _add(self, net, name: str):
        parent, _, comp = name.rpartition(".")
        taken = self._taken.setdefault(parent, set())
        try:
            attr = identifier(comp, self.reserved)
        except PlanError as err:
            raise PlanError(err.message, _span(net, name)) from None
        while attr in taken:
            attr += "_"
        taken.add(attr)
        self._attr[name] = attr
        self._parent[name] = parent

    def path(self, name: str, base: str = "") -> str:
        """Attribute path of a layer or scope, from the network or from scope `base`."""
        parts = []
        while name != base and name:
            if name not in self._attr:
                raise KeyError(name)
            parts.append(self._attr[name])
            name = self._parent[name]
        if name != base:
            raise KeyError(base)
        return ".".join(reversed(parts))

    def __contains__(self, name: str) -> bool:
        return name in self._attr


def _ordered(net, names: set) -> list:
    """Scope and layer names in first-use order (parents before children)."""
    order = {n: i for i, n in enumerate(net.graph.nodes)}
    first: dict = {}
    for n in net.graph.nodes:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            first.setdefault(".".join(parts[:i]), order[n])
    return sorted(names, key=lambda n: (first.get(n, 0), n.count(".")))


def _span(net, name):
    if name in net.graph:
        return net.node(name).get("span")
    s = net.scopes.get(name)
    return s.span if s is not None else None


def class_names(plans: list, taken: set) -> None:
    """Class names: CamelCase of the block; other structures of it named by what differs."""
    if not plans:
        return
    base = camel(plans[0].definition)
    members = [{e.path[0] for e in cp.init if isinstance(e, Member)} for cp in plans]
    order = sorted(range(len(plans)), key=lambda i: (len(members[i]), -len(plans[i].instances)))
    plans[:] = [plans[i] for i in order]
    members = [members[i] for i in order]
    names: list = []
    for i, cp in enumerate(plans):
        name = base
        if i:
            extra = sorted(members[i] - members[0])
            missing = sorted(members[0] - members[i])
            name = base + ("With" + "".join(map(camel, extra)) if extra else "") + \
                ("No" + "".join(map(camel, missing)) if missing else "")
            if name == base or len(extra) + len(missing) > 2 or name in names:
                name = f"{base}{i + 1}"
        while name in taken or name in names:
            name += "_"
        names.append(name)
    for cp, name in zip(plans, names):
        cp.name = name
        taken.add(name)
