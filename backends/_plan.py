"""The plan of a generated file: which classes it defines, and what each one holds.

Every block call of the .arch file is a scope of the IR with a trace of what its body did
(compiler/ir.py). `Plan(net, backend)` turns those scopes into classes:

- Each block call is rendered as a class body: its scalar statements become constructor
  code (backends/_pyexpr.py writes the .arch expressions as Python), its layers and the
  blocks it calls become members, and its data flow becomes the forward method.
- Calls of one block whose rendered bodies are equal share a class; calls that took other
  branches are merged into the class of a structure that has every step of theirs, each
  step they lack made optional under its `if` (_merge.py); others (another structure) get
  a class of their own, named after what differs (`SqnxtBlockWithShortcut`).
- An activation chosen by a string the class takes (`activation(y, act)`) is a function
  `__init__` stores from the file's table (`self.act = ACTIVATIONS[act]`, _activations.py),
  or the activation itself where every call chose one and the class has no `act` argument.
- A value a class cannot compute from its parameters is a *hole*: equal in every call, it
  is written as a literal; otherwise it becomes a constructor argument that the caller
  passes (the caller knows it).
- A labelled loop of block calls that feed each other (`stage: for ...`) becomes a sequence
  member; its entries keep their names, so parameter paths stay the IR's layer names.
- An argument keeps its .arch default only where the class's body, given it, takes the
  branches the class was built for (`_honest_defaults`); otherwise the caller passes it.
- The network class takes the network parameters _family.py verified (`symbolic`) as
  constructor arguments; its labelled loops of sequences are written as loops (_roll.py).

Backends supply the text of each op (their lowering table, through `LowerCtx`,
backends/lower_ctx.py) and the shape of classes (lowering.Backend); everything else is decided
here and in the modules beside it, once for all backends:

  _names.py    identifiers, class names, the module tree (`ModuleTree`): member paths
  _body.py     the pieces of a class body: values and holes, constructor entries, items
  _render.py   one call rendered as a class body (`Renderer`; with _render_args.py)
  _roll.py     a labelled loop of the network written as a Python loop
  _roll_block.py  a block class's loop written as loops in __init__ and forward()
  _family.py   which network parameters the network class takes (verified)
  _plan.py     calls grouped into classes, holes filled, sequences (this file)
  _merge.py    classes of one block merged where one has every step of the other
  _activations.py  the table of activations a class that takes `act` looks up
  _forward.py  forward()'s statements
  _source.py   the file's text, from the plan (with _wrap.py, its line wrapping)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import _pyexpr as P
from ._activations import TABLE
from ._body import (HOLE, Assign, Check, Code, Guard, Item, Member, OutChannels, Rendered,
                    Store, attributes, contains_tensor, names_in)
from ._forward import forward_lines
from ._merge import merge_optional
from ._names import ModuleTree, PlanError, class_names, identifier
from ._render import Renderer
from ._roll import roll_in
from ._roll_block import rolled_forward


@dataclass
class ClassPlan:
    """One class of the generated file: the calls that share it, and its body."""
    definition: str
    instances: list                  # Rendered, all with the same body
    name: str = ""
    params: list = field(default_factory=list)          # [(py name, archc name, default)]
    channel_params: list = field(default_factory=list)  # [(py name, archc tensor param)]
    forward_args: list = field(default_factory=list)
    forward_params: list = field(default_factory=list)
    hoisted: list = field(default_factory=list)         # [(py name, used in forward)]
    init: list = field(default_factory=list)            # Assign | Store | Member | Guard
    forward: list = field(default_factory=list)         # [(target | None, expr)]
    out_channels: list = field(default_factory=list)
    out_tuple: bool = False
    needs: set = field(default_factory=set)
    fill: dict = field(default_factory=dict)
    items: list = field(default_factory=list)           # the forward items (instance 0's)
    guarded: set = field(default_factory=set)           # Rendered.ifs indices made optional

    def positional(self, name: str) -> bool:
        """Leading parameters without defaults are passed by position."""
        for pname, _, default in self.params:
            if default is not None:
                return False
            if pname == name:
                return True
        return False


class Plan:
    """All classes of one generated file (callees before callers) and the network's body."""

    def __init__(self, net, backend, tap: bool = False, symbolic=()):
        self.net, self.backend, self.tap = net, backend, tap
        self.symbolic = frozenset(symbolic)   # network parameters the network class takes
        self.ranks = backend.ranks(net)
        self.tree = ModuleTree(net, backend.reserved_attrs)
        self.class_of: dict = {}         # block scope -> ClassPlan
        self.hoisted_args: dict = {}     # block scope -> {hoisted parameter: value}
        self.classes: list = []
        self.needs: set = set()
        by_def: dict = {}
        for s in net.scopes.values():
            if s.kind == "block":
                by_def.setdefault(s.definition, []).append(s.name)
        self.fixed = {d: _fixed(net, d, names) for d, names in by_def.items()}
        for d in _callees_first(net, by_def):
            self._classes_of(d, by_def[d])
        root = self._render("")
        self.needs |= root.needs
        fill, stored = {}, []
        taken = set(self.backend.reserved_locals) | {p[0] for p in root.params} | \
            {e.path[0] for e in root.init if isinstance(e, Member)}
        for k, hole in enumerate(root.holes):
            if hole.forward and hole.text is not None and P.literal(hole.value) != hole.text:
                name = identifier(hole.hint, taken)   # forward() reads what __init__ computed
                taken.add(name)
                fill[k] = f"self.{name}"
                stored.append(Store(name, hole.text))
                continue
            fill[k] = P.literal(hole.value)
            if fill[k] is None:
                raise PlanError(f"cannot write the value {hole.value!r} in Python")
        self.root_init = [_fill(e, fill) for e in root.init] + stored
        live = set()
        for e in self.root_init:
            live |= names_in(" ".join(str(v) for v in vars(e).values()
                                      if isinstance(v, str)))
            live |= {n for m in getattr(e, "members", ()) for n in names_in(m.ctor)}
            live |= {n for line in getattr(e, "lines", ()) for n in names_in(line.strip())}
        # the network's parameters the class takes: those its constructor reads
        self.root_params = [p for p in root.params if p[0] in live]
        self.unchecked = set(root.unchecked)
        self.root_forward = forward_lines(self, root, fill)
        self.root = root

    def _render(self, scope: str) -> Rendered | None:
        """One call rendered as a class body (backends/_render.py), its labelled loops of
        chained block calls made sequences."""
        r = Renderer(self, scope).run()
        if r is not None:
            self._sequences(r)
            for roll in r.rolls:
                roll_in(r, roll)
        return r

    def _sequences(self, r: Rendered):
        """A labelled loop iteration whose block calls feed each other, and nothing else,
        becomes one sequence member (`self.stage1`), called once in forward()."""
        for loop in self.net.scopes.values():
            if loop.kind != "loop" or loop.parent != r.scope:
                continue
            idx = [i for i, it in enumerate(r.items) if it.scope == loop.name]
            if not idx or idx != list(range(idx[0], idx[-1] + 1)):
                continue
            chain = [r.items[i] for i in idx]
            if not all(it.name in self.class_of and len(it.inputs) == 1 and
                       len(it.outputs) == 1 and not it.multi for it in chain):
                continue
            if any(b.inputs != a.outputs for a, b in zip(chain, chain[1:])):
                continue
            inner = {it.outputs[0] for it in chain[:-1]}
            if inner & set(r.outputs) or any(n in inner for it in r.items if it not in chain
                                             for n in it.inputs):
                continue
            lp = tuple(self.tree.path(loop.name, r.scope).split("."))
            mine = [e for e in r.init if isinstance(e, Member) and e.path[:len(lp)] == lp]
            if not all(e.kind == "block" and len(e.path) == len(lp) + 1 for e in mine):
                continue
            pos = r.init.index(mine[0])
            seq = Member(lp, self.backend.sequence([(e.path[-1], e.ctor) for e in mine]),
                         "sequential")
            r.init = r.init[:pos] + [seq] + [e for e in r.init[pos:] if e not in mine]
            r.items[idx[0]:idx[-1] + 1] = [Item(
                list(chain[0].inputs), list(chain[-1].outputs), f"self.{'.'.join(lp)}(\x010\x01)",
                loop.name, hint=chain[-1].hint, label=lp[-1])]

    def _key(self, r: Rendered) -> tuple:
        """Calls of one block with equal keys share a class: their bodies (holes shown as the
        constructor code they have, if any) and their parameters."""
        out = []
        for e in r.init:
            if isinstance(e, Assign):
                out.append(f"{', '.join(e.targets)} = {e.text}")
            elif isinstance(e, Code):
                out += e.lines
            else:
                out.append(f"{'.'.join(e.path)} = {e.ctor}")

        def rel(nodes):
            return [r.relative(n) for n in nodes]
        for it in r.items if r.forward_code is None else r.items[:r.loop_at]:
            out.append(f"{rel(it.inputs)} -> {rel(it.outputs)}: {it.expr} {it.hint} "
                       f"{it.multi} {[self.ranks.get(n, 4) for n in it.inputs]}")
        out += r.forward_code or []
        out.append(f"return {rel(r.outputs) if r.forward_code is None else ''} "
                   f"{r.out_tuple} {r.out_channels}")
        lines = [HOLE.sub(lambda m: f"\x00{r.holes[int(m.group(1))].text or ''}\x00", line)
                 for line in out]
        return (r.definition, tuple(lines), tuple(p[0] for p in r.params),
                tuple(c for c, _ in r.channel_params), tuple(r.forward_args))

    def _classes_of(self, definition: str, scopes: list):
        groups: dict = {}
        for s in scopes:
            r = self._render(s)
            if r is not None:
                groups.setdefault(self._key(r), []).append(r)
        plans = [ClassPlan(definition, rs) for rs in groups.values()]
        for cp in plans:
            self._holes(cp)
        plans = merge_optional(plans, set(self.backend.reserved_attrs))
        class_names(plans, set(self.backend.reserved_globals) | {c.name for c in self.classes} |
              {self.net.name})
        for cp in plans:
            self._finish(cp)
            for r in cp.instances:
                self.class_of[r.scope] = cp
            self.classes.append(cp)
            self.needs |= cp.needs

    def _holes(self, cp: ClassPlan):
        """Holes -> literals (one value in every call) or constructor arguments."""
        rs, r0 = cp.instances, cp.instances[0]
        fill, hoisted, stored, called = {}, [], [], []
        members = {e.path[0] for e in r0.init if isinstance(e, Member)}
        taken = {p[0] for p in r0.params} | {c for c, _ in r0.channel_params} | \
            set(r0.forward_args) | set(self.backend.reserved_locals) | members
        attrs = members | set(self.backend.reserved_attrs)
        for k, hole in enumerate(r0.holes):
            value, hint, forward, text, avail = \
                hole.value, hole.hint, hole.forward, hole.text, hole.names
            values = [r.holes[k].value for r in rs]
            lit = P.literal(value) if hole.literal is None else hole.literal
            if lit is not None and all(P.same_value(v, value) for v in values):
                fill[k] = lit
                continue
            if hole.call:   # an activation chosen by an argument: a function __init__ stores
                name = identifier(hint, attrs)
                attrs.add(name)
                taken.add(name)
                fill[k] = f"self.{name}(\x010\x01)"
                called.append((hole.at, Store(name, text, hole.tag)))
                continue
            # a name of the class that holds exactly these values in every call
            known = text or next((n for n in avail if len(set(map(repr, values))) > 1 and all(
                P.same_value(v, r.pyvalues.get(n)) for v, r in zip(values, rs))), None)
            if known is not None and not forward:
                fill[k] = known
                continue
            name = identifier(hint, taken)
            taken.add(name)
            attrs.add(name)
            fill[k] = f"self.{name}" if forward else name
            if known is not None:     # forward() reads it from self; __init__ computes it
                stored.append(Store(name, known, hole.tag))
            else:                     # the caller passes it
                hoisted.append((name, forward, k))
        for r in rs:
            self.hoisted_args[r.scope] = {name: r.holes[k].value for name, _, k in hoisted}
        cp.fill = fill
        cp.hoisted = [(name, forward) for name, forward, _ in hoisted]
        cp.init = [_fill(e, fill) for e in r0.init]
        for at, store in reversed(called):   # where the activation is
            cp.init.insert(at, store)
        cp.init += stored
        cp.items = list(r0.items)
        cp.params, cp.channel_params = list(r0.params), list(r0.channel_params)
        cp.forward_args, cp.forward_params = r0.forward_args, r0.forward_params
        cp.out_tuple, cp.needs = r0.out_tuple, r0.needs
        cp.out_channels = [oc if oc is not None else _match_output(cp, k)
                           for k, oc in enumerate(r0.out_channels)]

    def _finish(self, cp: ClassPlan):
        """Dishonest defaults dropped; dead constructor code removed; unused parameters
        dropped; forward() written."""
        self._honest_defaults(cp)
        live = _live(cp)
        if self._take_activations(cp, live):
            live = _live(cp)
        live |= {name for name, _ in cp.hoisted}
        cp.params = [p for p in cp.params if p[0] in live]
        cp.channel_params = [c for c in cp.channel_params if c[0] in live]
        r0 = cp.instances[0]
        cp.forward = forward_lines(self, r0, cp.fill, cp.items) if r0.forward_code is None \
            else rolled_forward(self, cp)

    def _take_activations(self, cp: ClassPlan, live: set) -> bool:
        """An activation written as one function (every call chose it) by a class that takes
        the argument that chose it anyway (an `if act != "none"` made optional reads it): the
        class applies the function its argument names (`self.act = ACTIVATIONS[act]`), so that
        its default means what it says. True when it changed the class."""
        r0, changed = cp.instances[0], False
        params = {p[0] for p in cp.params}
        for k, hole in enumerate(r0.holes):
            names = names_in(hole.text or "") - {TABLE}
            if not hole.call or cp.fill[k] != hole.literal or not names <= live & params:
                continue
            attrs = attributes(cp.init, cp.hoisted) | set(self.backend.reserved_attrs)
            name = identifier(hole.hint, attrs)
            cp.fill[k] = f"self.{name}(\x010\x01)"
            store = Store(name, hole.text, hole.tag)
            it = next(i for i in cp.items if f"\x00{k}\x00" in i.expr)
            g = next((e for e in cp.init if isinstance(e, Guard) and e.flag and
                      e.path[0] == it.optional), None)
            if g is not None:   # the flag becomes the function, None when absent
                cp.init[cp.init.index(g)] = Guard(g.cond, (store,), (name,), g.index)
                cp.items = [replace(i, optional=name, flag=False) if i.optional == g.path[0]
                            else i for i in cp.items]
            else:
                cp.init.append(store)
            changed = True
        return changed


    def _honest_defaults(self, cp: ClassPlan):
        """A parameter keeps its .arch default only where the class's body, given that
        default, computes its values and takes the branches the class was built for (its
        members are those of that structure); otherwise the caller must pass it. An `if`
        whose branch differs between the class's calls (a merged optional member) is a
        branch of the class and is not checked."""
        rs, r0 = cp.instances, cp.instances[0]
        fixed = [b for i, b in enumerate(r0.ifs)
                 if all(len(r.ifs) == len(r0.ifs) and r.ifs[i].taken == b.taken for r in rs)]
        env0 = {n: r0.pyvalues[n] for n, _, _ in cp.params if n in r0.pyvalues}
        env0.update({c: r0.pyvalues[c] for c, _ in cp.channel_params if c in r0.pyvalues})
        env0.update(self.hoisted_args.get(r0.scope, {}))
        for k, (name, archc, default) in enumerate(cp.params):
            if default is not None and not _takes(cp, fixed, env0, name, default):
                cp.params[k] = (name, archc, None)


def _takes(cp: ClassPlan, branches: list, env0: dict, name: str, default: str) -> bool:
    """The constructor code of `cp` computes its values with `name` = `default` and takes
    `branches` as the class's calls took them."""
    env = dict(env0)
    try:
        env[name] = P.python_value(default, {})
        for e in cp.init:
            if isinstance(e, Assign):
                value = P.python_value(e.text, env)
                env.update({e.targets[0]: value} if len(e.targets) == 1 else
                           dict(zip(e.targets, value)))
        for b in branches:
            for i, cond in enumerate(b.conditions):
                if cond is not None and (i <= b.taken or b.taken == -1) and \
                        bool(P.python_value(cond, env)) != (i == b.taken):
                    return False
    except (ValueError, TypeError):
        return False
    return True


def _match_output(cp: ClassPlan, k: int):
    """An output whose channel count the class cannot compute, named after the argument
    that has its value in every call (when the calls differ in it): the caller's text for
    that argument then stands for it (and the caller checks it against the IR)."""
    rs = cp.instances
    values = [r.out_channel_values[k] for r in rs]
    if len(set(values)) < 2:
        return None
    for name, _ in cp.channel_params:
        if all(r.pyvalues.get(name) == v for r, v in zip(rs, values)):
            return OutChannels(False, name)
    for name, _, _ in cp.params:
        if all(P.same_value(r.pyvalues.get(name), v) for r, v in zip(rs, values)):
            return OutChannels(False, name)
    return None


def _fixed(net, definition: str, scopes: list) -> set:
    """Parameters of a block that no call gives and that have one value in every call:
    the classes of the block hold them as constants instead of taking them as arguments."""
    out = set()
    for p in net.definitions[definition].params:
        values = [net.scopes[s].args[p.name] for s in scopes]
        if any(p.name in net.scopes[s].given for s in scopes) or contains_tensor(values[0]):
            continue
        if P.literal(values[0]) is not None and all(type(v) is type(values[0]) and
                                                    v == values[0] for v in values):
            out.add(p.name)
    return out


def _callees_first(net, by_def: dict) -> list:
    """Block definitions, each after every block its calls call."""
    calls: dict = {d: set() for d in by_def}
    for s in net.scopes.values():
        if s.kind != "block":
            continue
        p = s.parent
        while p:
            ps = net.scopes[p]
            if ps.kind == "block":
                calls[ps.definition].add(s.definition)
                break
            p = ps.parent
    out, seen = [], set()

    def visit(d):
        if d in seen:
            return
        seen.add(d)
        for c in sorted(calls[d]):
            visit(c)
        out.append(d)
    for d in by_def:
        visit(d)
    return out


def _fill(entry, fill: dict):
    def sub(t):
        return HOLE.sub(lambda m: fill[int(m.group(1))], t)
    if isinstance(entry, Assign):
        return Assign(entry.targets, sub(entry.text), entry.tag)
    if isinstance(entry, (Store, Check, Code)):
        return entry
    return Member(entry.path, sub(entry.ctor), entry.kind, entry.tag)


def _live(cp: ClassPlan) -> set:
    """The names the constructor code of `cp` reads; dead code (an assignment nothing
    reads) removed from it."""
    def backwards(entries, live):
        kept = []
        for e in reversed(entries):   # liveness, backwards through straight-line code
            if isinstance(e, Assign):
                if not set(e.targets) & live:
                    continue
                live = (live - set(e.targets)) | names_in(e.text)
            elif isinstance(e, Member):
                live |= names_in(e.ctor)
            elif isinstance(e, Store):
                live |= names_in(e.text)
            elif isinstance(e, Code):   # a loop (backends/_roll.py)
                live |= {n for line in e.lines for n in names_in(line.strip())}
            else:   # Guard: its entries run only when its condition holds
                members, inner = backwards(list(e.members), set(live))
                e = replace(e, members=tuple(members))
                live |= inner | names_in(e.cond)
            kept.append(e)
        return kept[::-1], live
    cp.init, live = backwards(cp.init, set())
    return live


