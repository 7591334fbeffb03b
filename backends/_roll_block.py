"""A block class's loop written as loops in `__init__` and in `forward()`.

Where a block's loop is the rest of its data flow -- the whole of it (DenseNet's dense
block), or everything after fixed steps (ConvNeXt's stage: a downsampling norm and conv,
then `for b in range(depth) { x = "block{b}": convnext_block(x, ls_init) }`) -- and the
block returns what the loop carries, the class builds its members in a loop
(`setattr(self, f"block{b}", ConvnextBlock(x_channels, ...))`, the carried channel count a
variable) and calls them in one (`for b in range(self.depth): x = getattr(self,
f"block{b}")(x)`), its steps before the loop written as ever. The loop's count becomes an
argument, so calls with other counts share the class; members keep the IR's names. The
loop is rendered by backends/_roll.py's Roller (every iteration the same checked code);
anything else leaves it unrolled.
"""
from __future__ import annotations

from dataclasses import replace

from ._body import Code
from ._forward import forward_lines
from ._names import identifier
from ._roll import NoRoll, _attempt


def roll_block(rd, st, events: list) -> None:
    """A loop of a block class (`for i in range(layers) { y = "denselayer{i + 1}":
    layer(x, ...); x = concat(x, y) }`): walked unrolled as ever, and, where it can be,
    also written as loops in __init__ and forward() (kept in `rd.r.rolled`; `rolled_in`
    decides once the block is walked)."""
    r = rd.r
    if rd.plan.tap:
        rd.events(events)
        return
    before = rd.snapshot()
    start, steps = len(r.init), len(r.items)
    made = list(r.items[-1].outputs) if steps else []   # by the last step before the loop
    rd.events(events)
    after = rd.snapshot()
    if len(r.items) == steps:
        return
    done = (len(r.init), len(r.items), r.items[-1].outputs[-1])
    with _attempt(rd, before, after, own=True) as (roller, holes):
        roller.after_steps = steps > 0
        lines = roller.loop(st, events, labelled=False)
        if len(r.holes) != holes or roller.forward is None:
            raise NoRoll
        if steps and made != [roller.entry]:
            raise NoRoll   # the loop starts from what the steps before it made
        loop_var, seq, body = roller.forward
        bound = seq[len("range("):-1]
        if "," in bound:
            raise NoRoll
        # an attribute of the class, not one the framework's modules have nor a member
        # (the loop's members are named by their label templates, the steps' by their labels)
        members = {e.path[0] for e in r.init[:start] if hasattr(e, "path")}
        count = identifier(bound if bound.isidentifier() else "steps",
                           set(rd.backend.reserved_attrs) | members)
        if any(count == roller._label_prefix(p) for p in roller.keys):
            raise NoRoll
        r.rolled = (start, steps, roller.entry, done, lines + [f"self.{count} = {bound}"],
                    [f"for {loop_var} in range(self.{count}):"] + ["    " + b for b in body],
                    roller.fvar)


def rolled_in(rd) -> None:
    """The block's loop written as loops, where it is the rest of the block's data flow:
    nothing after it, and the block returns what it carries."""
    r = rd.r
    start, steps, entry, (n_init, n_items, last), init, forward, var = r.rolled
    if (len(r.init), len(r.items)) != (n_init, n_items) or r.outputs != [last] or \
            r.out_tuple:
        return
    r.init = r.init[:start] + [Code(tuple(init))]
    r.forward_code = forward + [var]
    r.loop_at, r.loop_entry = steps, entry
    r.out_channels = [None]   # the loop's count is an argument: the caller's literal


def rolled_forward(plan, cp) -> list:
    """forward()'s statements of a class whose loop was written as a loop: the steps before
    it (backends/_forward.py, with the class's holes filled), the variable the loop carries
    assigned their result, then the loop."""
    r0 = cp.instances[0]
    loop = [("\x02", line) for line in r0.forward_code[:-1]] + [(None, r0.forward_code[-1])]
    if not r0.loop_at:
        return loop
    var = r0.forward_code[-1]
    steps = forward_lines(plan, replace(r0, outputs=[r0.loop_entry], out_tuple=False,
                                        out_names=[]), cp.fill, cp.items[:r0.loop_at])
    ret = steps.pop()[1]
    return steps + ([(var, ret)] if ret != var else []) + loop
