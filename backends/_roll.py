"""Loops of the network body written as Python loops in the network class's constructor.

The trace (compiler/ir.py) holds every iteration of a loop; the renderer writes them one after
another. For the network class, whose constructor takes the network's parameters
(backends/_family.py), a labelled loop of sequences (`stage: for s in range(4) { for b in
range(stages[s]) { x = "block{b + 1}": blk(x, ...) } }`) is better written as the loop itself,
so that `stages` can be an argument:

    x_channels = int(64 * width)
    for s in range(4):
        stage = OrderedDict()
        for b in range(stages[s]):
            stride = 2 if b == 0 and s > 0 else 1
            stage[f"block{b + 1}"] = Block(x_channels, ..., stride=stride)
            x_channels = ...
        setattr(self, f"stage{s + 1}", nn.Sequential(stage))

`Roller.loop` renders each iteration with the loop variables as Python names (the channel
count of a tensor the loop carries as a variable) and keeps the loop only when every
iteration is the same code, every expression of it checked as the renderer checks them
(evaluated with that iteration's values). Anything else — a hole, an `if`, a layer of its own,
a block without a label template — leaves the loop unrolled. Plan puts the loop in place of
the iterations' sequence members (`Plan._rolls`); forward() is unchanged (it calls
`self.stage1` ... as before), and _family.py's check that other parameter values give the same
code decides whether the loop's bounds become arguments.
"""
from __future__ import annotations

from dataclasses import dataclass

from archc.compiler import _syntax as S
from archc.compiler._values import Tensor

from . import _pyexpr as P
from ._body import Assign, Check, Code, Member, Val, contains_tensor


class NoRoll(Exception):
    """This loop stays unrolled."""


@dataclass
class Roll:
    """A labelled loop written as a loop: `code` builds the sequences `names`."""
    names: tuple        # the iterations' scope names (stage1, stage2, ...), each a sequence
    entries: list       # the constructor entries the unrolled iterations made
    code: Code


def end_of(events: list, i: int, st) -> int | None:
    """The index of the ("end", st) event closing the loop whose first iteration is at i."""
    for j in range(i + 1, len(events)):
        if events[j][0] == "end" and events[j][1] is st:
            return j
    return None


def iterations(events: list, st) -> list:
    """[(item, events)] of each iteration of `st` (events between its "for" markers)."""
    out = []
    for ev in events:
        if ev[0] == "for" and ev[1] is st:
            out.append((ev[3], []))
        elif ev[0] == "end" and ev[1] is st:
            break
        elif out:
            out[-1][1].append(ev)
    return out


def roll(rd, st, events: list) -> None:
    """The labelled loop `st` (its events, "end" excluded): walked unrolled as ever, and, where
    it can be, also written as a loop (kept in `rd.r.rolls` for Plan)."""
    r = rd.r
    before = rd.snapshot()
    start = len(r.init)
    rd.events(events)
    unrolled = list(r.init[start:])
    after = rd.snapshot()
    rd.restore(before)
    saved = r.init, r.items, len(r.holes), len(r.ifs)
    r.init, r.items = [], []
    rd.rolling = Roller(rd)
    try:
        lines = rd.rolling.loop(st, events, labelled=True)
        if len(r.holes) != saved[2]:
            raise NoRoll
        n = len(iterations(events, st))
        names = tuple(f"{st.label}{k}" for k in range(1, n + 1))
        r.rolls.append(Roll(names, unrolled, Code(tuple(lines))))
    except NoRoll:
        pass
    finally:
        rd.rolling = None
        r.init, r.items = saved[0], saved[1]
        del r.holes[saved[2]:]
        del r.ifs[saved[3]:]
        rd.restore(after)


class Roller:
    """Writes one loop (and the loops inside it) as Python, or raises NoRoll."""

    def __init__(self, rd):
        self.rd = rd
        self.names: dict = {}       # (statement, variable) -> its Python name in the loop
        self.carried: dict = {}     # archc tensor variable -> Python name of its channels
        self.container = None       # (Python name, scope name of this iteration)
        self.member_scope: dict = {}  # member path -> the block call's scope

    def name_for(self, st, target: str) -> str:
        key = (id(st), target)
        if key not in self.names:
            self.names[key] = self.rd.fresh(target)
        return self.names[key]

    def loop(self, st, events: list, labelled: bool) -> list:
        rd = self.rd
        iters = iterations(events, st)
        if not iters or (labelled and self.container is not None):
            raise NoRoll
        items = tuple(item for item, _ in iters)
        if any(contains_tensor(v) for v in items):
            raise NoRoll
        seq = self._iterable(st.iterable, items)
        py = [self.name_for(st, n) for n in st.names]
        pre, carried = [], {}
        assigned = _tensor_targets(events)
        for t in assigned:
            if t in self.carried or not isinstance(rd.names.get(t, (0, None))[1], Tensor):
                continue
            v = rd.tchan.get(rd.names[t][1].node)
            if v is None or v.hole:
                raise NoRoll
            carried[t] = self.name_for(st, f"{t}_channels")
            pre.append(f"{carried[t]} = {v.text}")
        self.carried.update(carried)
        key = None
        if labelled:
            cname = self.name_for(st, st.label)
            it = st.iterable
            if len(py) == 1 and isinstance(it, S.Call) and it.func == "range" and \
                    len(it.args) == 1 and not it.kwargs:
                key = f'f"{st.label}{{{py[0]} + 1}}"'
                header = f"for {py[0]} in {seq}:"
            else:
                k = self.name_for(st, "k")
                key = f'f"{st.label}{{{k}}}"'
                targets = py[0] if len(py) == 1 else f"({', '.join(py)})"
                header = f"for {k}, {targets} in enumerate({seq}, start=1):"
        else:
            header = f"for {', '.join(py) if len(py) > 1 else py[0]} in {seq}:"
        bodies = []
        for k, (item, evs) in enumerate(iters, start=1):
            values = (item,) if len(st.names) == 1 else item
            for n, p, v in zip(st.names, py, values):
                rd.names[n] = (p, v, False)
                rd.deps[n] = rd.deps_of(st.iterable)
            self._carry(self.carried)
            if labelled:
                self.container = (cname, f"{st.label}{k}")
            outer, rd.r.init = rd.r.init, []
            rd.events(evs)
            body, rd.r.init = self._lines(rd.r.init), outer
            for t in assigned:   # the carried channel counts, at the iteration's end
                c = self.carried.get(t)
                v = rd.tchan.get(rd.names[t][1].node) if c else None
                if c and (v is None or v.hole):
                    raise NoRoll
                if c and v.text != c:
                    body.append(f"{c} = {v.text}")
            bodies.append(body)
        # after the loop, the carried counts are in their variables (however many iterations)
        self._carry({t: c for t, c in self.carried.items() if t in assigned})
        if any(b != bodies[0] for b in bodies):
            raise NoRoll
        body = bodies[0]
        if labelled:
            self.container = None
            body = [f"{cname} = {rd.backend.sequence_dict}"] + body + \
                [f"setattr(self, {key}, {rd.backend.sequence_from(cname)})"]
        for t in carried:
            del self.carried[t]
        return pre + [header] + ["    " + line for line in body]

    def _iterable(self, it, items: tuple) -> str:
        """The loop's iterable as Python, checked to give its items (range() is written as
        range() of its checked arguments)."""
        rd = self.rd
        if isinstance(it, S.Call) and it.func == "range" and 1 <= len(it.args) <= 3 and \
                not it.kwargs and not it.label:
            scope, texts, values = P.Scope(rd.names, rd._channels_text), [], []
            for a in it.args:
                t = P.translate(a, scope)
                try:
                    v = None if t is None else P.python_value(t, rd.pyenv())
                except ValueError:
                    v = None
                if not isinstance(v, int) or isinstance(v, bool):
                    raise NoRoll
                texts.append(t)
                values.append(v)
            if tuple(range(*values)) != items:
                raise NoRoll
            rd.r.needs |= scope.needs
            return f"range({', '.join(texts)})"
        seq = rd.translate(it, items, "items")
        if seq.hole:
            raise NoRoll
        return seq.text

    def _carry(self, carried: dict):
        """The channel counts of the tensors the loops carry are their Python variables."""
        for t, c in carried.items():
            tensor = self.rd.names.get(t, (0, None))[1]
            if not isinstance(tensor, Tensor):
                raise NoRoll
            self.rd.tchan[tensor.node] = Val(tensor.shape[0], c, hint=c)

    def _lines(self, entries: list) -> list:
        out = []
        for e in entries:
            if isinstance(e, Assign):
                out.append(f"{', '.join(e.targets)} = {e.text}")
            elif isinstance(e, Check):
                cond = e.cond if e.cond.isidentifier() else f"({e.cond})"
                out += [f"if not {cond}:", f"    raise ValueError({P.literal(e.message)})"]
            elif isinstance(e, Code):
                out += list(e.lines)
            elif isinstance(e, Member) and e.kind == "block" and self.container and \
                    len(e.path) == 2 and e.path[0] == self.container[1]:
                out.append(f"{self.container[0]}[{self._label(e.path)}] = {e.ctor}")
            else:
                raise NoRoll
        return out

    def _label(self, path: tuple) -> str:
        """The block call's label template as a Python f-string, checked to give its name."""
        sc = self.member_scope.get(path)
        lab = None if sc is None else sc.label
        if not isinstance(lab, S.Label):
            raise NoRoll
        scope = P.Scope(self.rd.names, self.rd._channels_text)
        text, name = "", ""
        for part in lab.parts:
            if isinstance(part, str):
                text += part.replace("{", "{{").replace("}", "}}")
                name += part
                continue
            t = P.translate(part, scope)
            if t is None or any(c in t for c in "{}'\"\\"):
                raise NoRoll
            try:
                v = P.python_value(t, self.rd.pyenv())
            except ValueError:
                raise NoRoll from None
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise NoRoll
            text += "{" + t + "}"
            name += str(v)
        if name != path[-1]:
            raise NoRoll
        return f'f"{text}"'


def _tensor_targets(events: list) -> list:
    """The variables the loop body assigns tensors to, in order."""
    out = []
    for ev in events:
        if ev[0] == "assign" and contains_tensor(ev[2]):
            for t in ev[1].targets:
                if t not in out:
                    out.append(t)
    return out
