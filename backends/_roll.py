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

A block class's loop that is the rest of the block's data flow (DenseNet's dense block,
ConvNeXt's stage) is written as loops in `__init__` and in `forward()`
(backends/_roll_block.py, with `Roller._forward` here).

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

from contextlib import contextmanager
from dataclasses import dataclass

from archc.compiler import _syntax as S
from archc.compiler._values import Tensor

from . import _pyexpr as P
from ._names import identifier
from ._body import Assign, Check, Code, Member, Val, contains_tensor, names_in


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
    with _attempt(rd, before, after) as (roller, holes):
        lines = roller.loop(st, events, labelled=True)
        if len(r.holes) != holes:
            raise NoRoll
        n = len(iterations(events, st))
        names = tuple(f"{st.label}{k}" for k in range(1, n + 1))
        r.rolls.append(Roll(names, unrolled, Code(tuple(lines))))


@contextmanager
def _attempt(rd, before: tuple, after: tuple, own: bool = False):
    """A loop rendered again as a loop, from the renderer's state `before` the loop, with a
    Roller (and the count of holes so far); whatever happens (NoRoll: it stays unrolled),
    the state `after` the unrolled walk, its entries, items, holes and branches come back."""
    r = rd.r
    rd.restore(before)
    saved = r.init, r.items, len(r.holes), len(r.ifs)
    r.init, r.items = [], []
    rd.rolling = Roller(rd)
    rd.rolling.own = own
    try:
        yield rd.rolling, saved[2]
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
        self.own = False            # a block class's loop: members are the class's own
        self.forward = None         # a block class's loop: forward()'s body lines
        self.keys: dict = {}        # member path -> its name as a Python f-string
        self.after_steps = False    # a block class's loop after steps of its own
        self.fvar = None            # the variable forward()'s loop carries
        self.entry = None           # the node the loop starts from

    def name_for(self, st, target: str, role: str = "") -> str:
        """One Python name per (statement, variable, role), the same in every iteration and
        distinct from every other name of the class."""
        key = (id(st), target, role)
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
            carried[t] = self.name_for(st, f"{t}_channels", "channels")
            pre.append(f"{carried[t]} = {v.text}")
        self.carried.update(carried)
        key = None
        if not seq.startswith("range(") and not seq.isidentifier():   # a table: named first
            table = self.name_for(st, st.iterable.name if isinstance(st.iterable, S.Var)
                                  else "items", "iterable")
            pre.append(f"{table} = {seq}")
            seq = table
        if labelled:
            cname = self.name_for(st, st.label, "container")
            it = st.iterable
            if len(py) == 1 and isinstance(it, S.Call) and it.func == "range" and \
                    len(it.args) == 1 and not it.kwargs:
                key = f'f"{st.label}{{{py[0]} + 1}}"'
                header = f"for {py[0]} in {seq}:"
            else:
                k = self.name_for(st, "index", "counter")
                key = f'f"{st.label}{{{k}}}"'
                targets = py[0] if len(py) == 1 else f"({', '.join(py)})"
                header = f"for {k}, {targets} in enumerate({seq}, start=1):"
        else:
            header = f"for {', '.join(py) if len(py) > 1 else py[0]} in {seq}:"
        bodies, forwards = [], []
        for k, (item, evs) in enumerate(iters, start=1):
            values = (item,) if len(st.names) == 1 else item
            for n, p, v in zip(st.names, py, values):
                rd.names[n] = (p, v, False)
                rd.deps[n] = rd.deps_of(st.iterable)
            self._carry(self.carried)
            if labelled:
                self.container = (cname, f"{st.label}{k}")
            outer, rd.r.init = rd.r.init, []
            outer_items, rd.r.items = rd.r.items, []
            entry = {t: rd.names[t][1] for t in self.carried}
            rd.events(evs)
            body, rd.r.init = self._lines(rd.r.init), outer
            items, rd.r.items = rd.r.items, outer_items
            if self.own:
                forwards.append(self._forward(items, entry))
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
        if any(b != bodies[0] for b in bodies) or any(f != forwards[0] for f in forwards):
            raise NoRoll
        body = bodies[0]
        if self.own:   # forward()'s loop, over the members this loop made
            if len(py) != 1 or not seq.startswith("range(") or labelled:
                raise NoRoll
            self.forward = (py[0], seq, forwards[0])
        if labelled:
            self.container = None
            body = [f"{cname} = {rd.backend.sequence_dict}"] + body + \
                [f"setattr(self, {key}, {rd.backend.sequence_from(cname)})"]
        for t in carried:
            del self.carried[t]
        return pre + [header] + ["    " + line for line in body]

    def _forward(self, items: list, entry: dict) -> list:
        """One iteration's forward() lines: its members called by their f-string names, the
        carried tensors in the variables they came in."""
        from ._body import Rendered
        from ._forward import forward_lines
        rd = self.rd
        if len(entry) != 1 or any("\x00" in it.expr or it.multi for it in items):
            raise NoRoll
        (t, tensor), = entry.items()
        if self.fvar is None:   # the variable forward() carries, from the first iteration's
            # input: the block's input, or after steps of the block, the .arch variable's name
            self.entry = tensor.node
            self.fvar = identifier(t, set(rd.backend.reserved_locals)) if \
                self.after_steps else rd.r.ext.get(tensor.node)
        var = self.fvar
        if var is None or not var.isidentifier():
            raise NoRoll
        out, known = [], {tensor.node}
        for it in items:
            if not set(it.inputs) <= known:
                raise NoRoll   # it reads a tensor from before the loop other than the input
            known |= set(it.outputs)
            expr = it.expr
            for path, key in self.keys.items():
                expr = expr.replace(f"self.{'.'.join(path)}(", f"getattr(self, {key})(")
            if "self." in expr.replace("getattr(self, ", ""):
                raise NoRoll   # a member of another kind
            out.append(type(it)(**{**vars(it), "expr": expr, "tap": False}))
        exit_node = rd.names[t][1].node
        pseudo = Rendered(rd.r.scope, rd.r.definition, ext={tensor.node: var},
                          outputs=[exit_node])
        lines = forward_lines(rd.plan, pseudo, {}, out)
        body = [f"{target} = {expr}" for target, expr, *_ in lines[:-1] if target != expr]
        if any(len(line) == 3 for line in lines[:-1]):
            raise NoRoll
        if lines[-1][1] != var:
            body.append(f"{var} = {lines[-1][1]}")
        return body

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
            elif isinstance(e, Member) and e.kind == "block" and self.own and \
                    self.container is None and len(e.path) == 1:
                self.keys[e.path] = self._label(e.path)
                out.append(f"setattr(self, {self.keys[e.path]}, {e.ctor})")
            else:
                raise NoRoll
        return out

    def _label_prefix(self, path: tuple) -> str:
        lab = self.member_scope[path].label
        return "".join(p for p in lab.parts if isinstance(p, str)) if isinstance(
            lab, S.Label) else str(lab)

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


def roll_in(r, roll) -> None:
    """A labelled loop written as a loop (backends/_roll.py) in place of the sequences its
    iterations became and the code they ran, where they all became sequences and nothing
    after them reads a name that code assigned."""
    seqs = [e for e in r.init if isinstance(e, Member) and e.kind == "sequential" and
            len(e.path) == 1 and e.path[0] in roll.names]
    if len(seqs) != len(roll.names):
        return
    ids = {id(e) for e in roll.entries} | {id(e) for e in seqs}
    at = [i for i, e in enumerate(r.init) if id(e) in ids]
    if at != list(range(at[0], at[-1] + 1)):
        return
    assigned = {t for e in roll.entries if isinstance(e, Assign) for t in e.targets}
    if any(names_in(str(e)) & assigned for e in r.init[at[-1] + 1:]):
        return
    r.init[at[0]:at[-1] + 1] = [roll.code]
