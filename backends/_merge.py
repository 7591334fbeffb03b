"""Two classes of one block that differ by one optional member, merged into one.

A block call inside `if c { y = m: f(y) }` gives one class with the member and one without;
the merged class creates the member when c holds (else None), and forward() passes the input
through when it is None (torchvision's `downsample`). backends/_plan.py calls this after
grouping a block's calls into classes and before naming them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._body import HOLE, Guard, Item, Member, Rendered

if TYPE_CHECKING:
    from ._plan import ClassPlan


def _relative_item(r: Rendered, it: Item, swap: dict | None = None) -> tuple:
    def rel(n):
        return r.relative((swap or {}).get(n, n))
    return (tuple(map(rel, it.inputs)), tuple(map(rel, it.outputs)), it.expr, it.hint,
            it.multi)


def merge_optional(plans: list) -> list:
    """Merge two classes of one block that differ by one optional member: a block call
    inside `if c { y = m: f(y) }` that one class has and the other has not. The merged
    class creates the member when c holds (else None) and forward() passes its input
    through when it is None (torchvision's `downsample`)."""
    merged = True
    while merged:
        merged = False
        for a in plans:
            for b in plans:
                if a is not b and _try_merge(a, b):
                    plans.remove(b)
                    merged = True
                    break
            if merged:
                break
    return plans


def _try_merge(a: ClassPlan, b: ClassPlan) -> bool:
    ra, rb = a.instances[0], b.instances[0]
    if (a.params, a.channel_params, a.forward_args, a.hoisted, a.out_tuple) != \
            (b.params, b.channel_params, b.forward_args, b.hoisted, b.out_tuple):
        return False
    if len(ra.ifs) != len(rb.ifs):
        return False
    differ = [i for i, (x, y) in enumerate(zip(ra.ifs, rb.ifs))
              if (x.where, x.taken) != (y.where, y.taken)]
    if len(differ) != 1:
        return False
    ia, ib = ra.ifs[differ[0]], rb.ifs[differ[0]]
    if ia.where != ib.where or ia.taken != -1 or ib.taken != 0 or len(ib.conditions) != 1 \
            or ib.conditions[0] is None or ia.conditions != ib.conditions:
        return False
    cond = ib.conditions[0]
    # the constructor: b's entries are a's with one run of members inserted
    n = len(b.init) - len(a.init)
    if n < 1:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a.init, b.init)) if x != y), len(a.init))
    extra = b.init[i:i + n]
    if b.init[:i] != a.init[:i] or b.init[i + n:] != a.init[i:] or \
            any(not isinstance(e, Member) or len(e.path) != 1 for e in extra) or \
            any(HOLE.search(e.ctor) for e in extra):
        return False
    # forward(): b's items are a's with one call of the first extra member inserted, whose
    # output stands where a used its input
    if len(b.items) != len(a.items) + 1:
        return False
    j = next((k for k, it in enumerate(b.items) if it.expr.startswith(
        f"self.{extra[0].path[0]}(")), None)
    if j is None or len(extra) != 1:
        return False
    x = b.items[j]
    if len(x.inputs) != 1 or len(x.outputs) != 1 or x.multi:
        return False
    swap = {x.outputs[0]: x.inputs[0]}
    rest = b.items[:j] + b.items[j + 1:]
    if [_relative_item(ra, it) for it in a.items] != \
            [_relative_item(rb, it, swap) for it in rest]:
        return False
    if [ra.relative(o) for o in ra.outputs] != [rb.relative(swap.get(o, o)) for o in rb.outputs]:
        return False
    path = extra[0].path
    a.init = a.init[:i] + [Guard(cond, tuple(extra), path)] + a.init[i:]
    a.items = b.items[:j] + [Item(list(x.inputs), list(x.outputs), x.expr, x.name, x.tap,
                                  x.hint, x.label, x.multi, x.scope,
                                  optional=".".join(path))] + b.items[j + 1:]
    a.instances = [rb] + [r for r in b.instances[1:]] + a.instances
    a.fill = b.fill
    return True

