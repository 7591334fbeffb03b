"""Classes of one block that differ by optional steps, merged into one.

A block call inside `if c { y = step(y) }` gives one class with the step and one without. A
class that has every step another class of the block has absorbs it, each step the other
lacks made optional under its `if`'s condition (translated and checked, backends/_render.py):

- a member (a layer with state, a child block's class), with the constructor code only it
  needs: created when c holds, else None; forward() passes its input through when it is None
  (torchvision's `downsample`);
- an activation the class takes as an argument (`activation(y, act)` under `if act !=
  "none"`): `self.act = ACTIVATIONS[act]` when c holds, else None;
- a stateless step (the residual `add`): `self.use_add = c`, a boolean forward() tests
  (torchvision's `use_res_connect`); no state.

A branch may hold several steps (stochastic depth, then the add): forward() runs them under
one `if`. The merge is kept only where the absorbing class, with the other's branches taken
or not, is exactly the other class: the same constructor entries (member arguments may
differ only by names the absent branch's condition makes equal, _implied) and the same
forward() steps, the input a missing branch passes on standing where the other class uses
its output. Classes whose loop is written as loops (backends/_roll_block.py) merge where
the loops are the same code but for the channel counts they start from, which the merged
class chooses by the absent step's condition (`x_channels = out if down else in_channels`:
ConvNeXt's stage, its downsampling optional). backends/_plan.py calls this after grouping a
block's calls into classes and before naming them.
"""
from __future__ import annotations

import ast
import copy
import itertools
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from . import _pyexpr as P
from ._body import HOLE, Assign, Code, Guard, Member, Store, attributes, passes_on
from ._names import identifier
from .lower_ctx import atomic

if TYPE_CHECKING:
    from ._plan import ClassPlan


def merge_optional(plans: list, reserved: set) -> list:
    """Merge the classes of one block where one has every step of another (see the module
    docstring); `reserved`: attribute names the backend's modules have."""
    merged = True
    while merged:
        merged = False
        for a in plans:
            for b in plans:
                if a is not b and _absorb(a, b, reserved):
                    plans.remove(b)
                    merged = True
                    break
            if merged:
                break
    return plans


def _absorb(a: ClassPlan, b: ClassPlan, reserved: set) -> bool:
    """Make `a` build `b`'s calls too, when it has every step `b` has."""
    ra, rb = a.instances[0], b.instances[0]
    if ra.forward_code != rb.forward_code:
        return False   # loops written as loops (backends/_roll_block.py) must be the same
    if (a.params, a.channel_params, a.forward_args, a.hoisted, a.out_tuple) != \
            (b.params, b.channel_params, b.forward_args, b.hoisted, b.out_tuple):
        return False
    out_channels = _out_channels(a, b)
    if out_channels is None:
        return False
    if [x.where for x in ra.ifs] != [y.where for y in rb.ifs]:
        return False
    state, new = {}, []      # state: b's branch per `if` ("V": optional in b)
    for i, (x, y) in enumerate(zip(ra.ifs, rb.ifs)):
        state[i] = "V" if i in b.guarded else y.taken
        if i in a.guarded:
            continue
        ta = {r.ifs[i].taken for r in a.instances}
        tb = {r.ifs[i].taken for r in b.instances}
        if i not in b.guarded and tb <= ta:
            continue
        if ta != {0} or len(x.conditions) != 1 or x.conditions[0] is None or \
                y.conditions[:1] != x.conditions:
            return False
        new.append(i)
    # each optional step's condition: translated, and checked to hold as it did, in every call
    for i in a.guarded | set(new):
        cond = ra.ifs[i].conditions[0]
        if any(r.ifs[i].conditions[:1] != (cond,) for r in a.instances + b.instances):
            return False
    made = _guard(a, new, reserved)
    if made is None:
        return False
    init, items = made
    if ra.forward_code is not None:   # the loop's code, from where the steps leave it
        init = _loop_code(init, b.init, [x for x in new if state[x] == -1])
        if init is None:
            return False
    # the input the steps pass on when absent: the one b's calls use where a uses their output
    fixed = {i: next((o.through for o in b.items if o.index == i), 0)
             for i in new if state[i] == "V"}
    items = [replace(it, through=fixed[it.index]) if it.optional and it.index in fixed else it
             for it in items]
    drop = [i for i in new if state[i] == -1]
    want = _shape(b, b.init, b.items, {}, {})
    for choice in itertools.product(*(range(len(passes_on(_steps(items, i)))) for i in drop)):
        through = dict(zip(drop, choice))
        got = _shape(a, init, items, state, through)
        same = _implied(init, state)
        if got[1:] == want[1:] and _same_entries(got[0], want[0], b.instances, same):
            a.init = init
            a.items = [replace(it, through=through[it.index]) if it.optional and
                       it.index in through else it for it in items]
            a.guarded |= set(new)
            a.out_channels = out_channels
            a.instances = a.instances + b.instances
            a.needs = a.needs | b.needs
            return True
    return False


def _out_channels(a: ClassPlan, b: ClassPlan) -> list | None:
    """The merged class's claims on its outputs' channel counts: where a's and b's differ
    (the residual add has its input's, the projection `out`), the one that holds in every
    call of both."""
    out = []
    for k, claims in enumerate(zip(a.out_channels, b.out_channels)):
        holds = [c for c in dict.fromkeys(claims) if c is not None and all(
            r.out_channel_values[k] == (c.value if c.const else r.pyvalues.get(c.value))
            for r in a.instances + b.instances)]
        if claims[0] != claims[1] and not holds:
            return None
        out.append(claims[0] if claims[0] == claims[1] else holds[0])
    return out


def _guard(a: ClassPlan, new: list, reserved: set):
    """`a`'s constructor entries and forward() items with the branches `new` (Rendered.ifs
    indices) made optional; None where a branch is not one step."""
    init, items = list(a.init), list(a.items)
    attrs = set(reserved) | attributes(init, a.hoisted)
    r0 = a.instances[0]
    for i in new:
        # its steps: a run of forward() items whose values nothing after them reads but
        # the last one's
        steps = [it for it in items if i in it.tag]
        at = [items.index(it) for it in steps]
        if not steps or at != list(range(at[0], at[0] + len(steps))) or \
                any(it.optional or it.multi or len(it.outputs) != 1 for it in steps):
            return None
        inner = {it.outputs[0] for it in steps[:-1]}
        if inner & set(r0.outputs) or any(n in inner for it in items if it not in steps
                                          for n in it.inputs):
            return None
        if any(isinstance(e, Guard) and any(i in m.tag for m in e.members) for e in init):
            return None
        seg = [e for e in init if not isinstance(e, Guard) and i in getattr(e, "tag", ())]
        if any(isinstance(e, Member) and len(e.path) != 1 for e in seg):
            return None
        exprs = [HOLE.sub(lambda m: a.fill[int(m.group(1))], it.expr) for it in steps]
        called = [n for n in (e.path[0] if isinstance(e, Member) else e.name
                              for e in seg if isinstance(e, (Member, Store)))
                  if any(f"self.{n}(" in x for x in exprs)]
        cond = a.instances[0].ifs[i].conditions[0]
        if called:     # the member or function the step calls: None when c fails
            guard = Guard(cond, tuple(seg), (called[0],), i)
            pos = init.index(seg[0])
            init = [e for e in init[:pos] if e not in seg] + [guard] + \
                [e for e in init[pos:] if e not in seg]
        elif seg:
            return None
        else:          # stateless steps: a boolean
            name = identifier(f"use_{steps[-1].label}", attrs)
            guard = Guard(cond, (), (name,), i, flag=True)
            init.append(guard)
        attrs.add(guard.path[0])
        for k in at:
            items[k] = replace(items[k], optional=guard.path[0], flag=guard.flag, index=i)
    return init, items


def _loop_code(init: list, other: list, absent: list) -> list | None:
    """The absorbing class's entries, its loop (backends/_roll_block.py) starting from the
    channel count the other class's loop starts from where the steps the other lacks are
    absent: `x_channels = out if down else in_channels`. None where the loops differ
    otherwise, or more than one step the other lacks decides it."""
    ours = [k for k, e in enumerate(init) if isinstance(e, Code)]
    theirs = [e for e in other if isinstance(e, Code)]
    if len(ours) != 1 or len(theirs) != 1:
        return None
    a, b = init[ours[0]].lines, theirs[0].lines
    if a == b:
        return init
    guards = [e for e in init if isinstance(e, Guard) and e.index in absent]
    if len(a) != len(b) or len(guards) != 1:
        return None
    cond, lines, head = guards[0].cond, [], True
    for x, y in zip(a, b):
        head = head and not x.startswith((" ", "for ", "if "))
        tx, ty = x.partition(" = "), y.partition(" = ")
        if x == y:
            lines.append(x)
        elif head and tx[0] == ty[0] and tx[1] and ty[1] and tx[0].isidentifier():
            # the counts the loop carries, before it: set where the steps leave them
            parts = [t if atomic(t) else f"({t})" for t in (tx[2], cond, ty[2])]
            lines.append(f"{tx[0]} = {parts[0]} if {parts[1]} else {parts[2]}")
        else:
            return None
    return init[:ours[0]] + [Code(tuple(lines))] + init[ours[0] + 1:]


def _steps(items: list, i: int) -> list:
    """The optional steps of `if` i."""
    return [it for it in items if it.optional and it.index == i]


def _implied(init: list, state: dict) -> dict:
    """Names equal wherever the calls' branches are `state`: an absent step's `if a != b`
    (or a present one's `if a == b`) means a == b. Name -> one name of its class."""
    rep: dict = {}

    def find(n):
        while rep.get(n, n) != n:
            n = rep[n]
        return n
    for e in init:
        if isinstance(e, Guard) and state.get(e.index, "V") in (0, -1):
            m = re.fullmatch(r"(\w+) ([!=])= (\w+)", e.cond)
            if m and (m.group(2) == "!") == (state[e.index] == -1):
                rep[find(m.group(1))] = find(m.group(3))
    return {n: find(n) for n in rep}


def _same_entries(got: list, want: list, calls: list, same: dict) -> bool:
    """The constructor entries `got` (the absorbing class's, for these calls) do what `want`
    (the calls' own class's) does: equal, or members whose arguments differ only by names
    that are equal in these calls' branches (`same`, _implied) -- the depthwise conv's
    `expanded` where the class without the expansion (`if expanded != in_channels`) wrote
    `in_channels` -- and, evaluated with every call's values, have equal values."""
    if len(got) != len(want):
        return False
    for x, y in zip(got, want):
        if x == y:
            continue
        if x[0] == y[0] == "guard" and x[1:5] == y[1:5]:
            if _same_entries(list(x[5]), list(y[5]), calls, same):
                continue
        if not (x[0] == y[0] == "member" and x[1] == y[1] and x[3] == y[3] and
                _same_call(x[2], y[2], calls, same)):
            return False
    return True


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict):
        self.names = names

    def visit_Name(self, node):
        return ast.Name(self.names.get(node.id, node.id), node.ctx)


def _same_call(a: str, b: str, calls: list, same: dict) -> bool:
    try:
        ca, cb = ast.parse(a, mode="eval").body, ast.parse(b, mode="eval").body
    except SyntaxError:
        return False
    if not (isinstance(ca, ast.Call) and isinstance(cb, ast.Call)) or \
            ast.dump(ca.func) != ast.dump(cb.func) or len(ca.args) != len(cb.args) or \
            [k.arg for k in ca.keywords] != [k.arg for k in cb.keywords]:
        return False
    for x, y in zip(ca.args + [k.value for k in ca.keywords],
                    cb.args + [k.value for k in cb.keywords]):
        if ast.dump(x) == ast.dump(y):
            continue
        if ast.dump(_Rename(same).visit(copy.deepcopy(x))) != \
                ast.dump(_Rename(same).visit(copy.deepcopy(y))):
            return False
        try:
            if not all(P.same_value(P.python_value(ast.unparse(x), r.pyvalues),
                                    P.python_value(ast.unparse(y), r.pyvalues))
                       for r in calls):
                return False
        except (ValueError, TypeError):
            return False
    return True


def _text(e):
    if isinstance(e, Code):   # a loop, compared by _loop_code
        return ("code",)
    if isinstance(e, Assign):
        return ("assign", e.targets, e.text)
    if isinstance(e, Store):
        return ("store", e.name, e.text)
    return ("member", e.path, e.ctor, e.kind)


def _shape(cp: ClassPlan, init: list, items: list, state: dict, through: dict) -> tuple:
    """What class `cp` (with these entries and items) builds and computes for calls whose
    branches are `state` (`if` index -> branch taken, -1: none; "V", or absent: optional):
    comparable between classes of one block."""
    r = cp.instances[0]
    outputs = r.outputs
    if r.forward_code is not None:   # the steps before the loop, to where it starts
        items, outputs = items[:r.loop_at], [r.loop_entry]
    texts = []
    for e in init:
        if not isinstance(e, Guard):
            texts.append(_text(e))
            continue
        s = state.get(e.index, "V")
        if s == 0:
            texts += [_text(m) for m in e.members]
        elif s != -1:
            texts.append(("guard", e.index, e.cond, e.path, e.flag,
                          tuple(_text(m) for m in e.members)))
    swap, steps = {}, []
    for it in items:
        if it.optional:
            s = state.get(it.index, "V")
            if s == -1:
                run = _steps(items, it.index)
                if it is run[-1]:
                    swap[it.outputs[0]] = passes_on(run)[through.get(it.index, it.through)]
                continue
            if s == 0:
                it = replace(it, optional=None, flag=False, through=0, index=-1)
        steps.append(it)

    def rel(n):
        while n in swap:
            n = swap[n]
        return r.relative(n)
    out = [(tuple(map(rel, it.inputs)), tuple(map(rel, it.outputs)),
            HOLE.sub(lambda m: cp.fill[int(m.group(1))], it.expr), it.hint, it.multi,
            it.optional, it.flag, it.through if it.optional else 0) for it in steps]
    return tuple(texts), tuple(out), tuple(map(rel, outputs))
