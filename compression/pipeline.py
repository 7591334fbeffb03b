"""The compression pipeline's driver: check everything, then run the steps in order, skipping
those already done and resuming the one that was stopped.

A step is done when OUT/<step>/step.json exists (written last, atomically); it records the
settings the step used. Options not given are taken from the finished steps, then from the
last command's settings (OUT/compress.json), so repeating a command, or `run` alone, goes on
where it stopped; options given must agree with the finished steps (otherwise the
differences are listed and nothing runs). The score is recomputed every time (it is cheap
and only reads), so scoring options may change freely.
"""
from __future__ import annotations

import os

from archc import _checks as checks
from archc.compiler import ArchError, Network

from . import job, steps
from .settings import STEP_FIELDS, Settings

LOCKED = ("sensitivity", "prune", "finetune", "quantize", "qat")
ORDER = LOCKED + ("score",)


def recorded(out: str) -> dict:
    """{step: settings} of the finished steps in OUT."""
    found = {}
    for step in LOCKED:
        path = os.path.join(out, step, "step.json")
        if os.path.lexists(path):
            try:
                found[step] = _checked(checks.field(checks.read_json(path), "settings", dict,
                                                    path), path)
            except ArchError as err:
                err.hint = f"delete {os.path.dirname(path)} to redo that step"
                raise
    return found


def _checked(settings: dict, path: str) -> dict:
    """Settings read from `path` (normalised), valid on their own, or an error naming it."""
    settings = _norm(settings)
    unknown = set(settings) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ArchError(f"{path}: unknown compression settings: {', '.join(sorted(unknown))}")
    try:
        Settings(**settings)
    except ArchError as err:
        raise ArchError(f"{path}: {err.message}", hint=err.hint) from None
    return settings


def _norm(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def resolve(out: str, given: dict) -> Settings:
    """Settings: defaults, the last command's, the finished steps', then the options given."""
    done = recorded(out)
    merged: dict = _checked(_read_marker(out).get("settings", {}),
                            os.path.join(out, "compress.json"))
    for rec in done.values():
        merged.update(rec)
    given = _norm({k: v for k, v in given.items() if v is not None})
    if given.get("masks"):
        given["masks"] = os.path.abspath(given["masks"])
    merged.update(given)
    diff = [f"{step}.{k}: done with {rec[k]!r}, this run has {merged.get(k)!r}"
            for step, rec in done.items() for k in rec if merged.get(k) != rec[k]]
    if diff:
        raise ArchError(f"{out}: finished steps used other settings:\n  " + "\n  ".join(diff),
                        hint="repeat them (or leave them out), or choose another --out")
    unknown = set(merged) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ArchError(f"unknown compression settings: {', '.join(sorted(unknown))}")
    return Settings(**merged)


def prepare(net: Network, run_path: str, data_path: str, out: str, given: dict, *,
            train_per_class=None, test_per_class=None, cache=True, progress=True,
            log=print) -> steps.Context:
    """Check the run, network, data, folder and settings; write nothing."""
    from archc._files import check_output_folder
    from archc.training.data import load_images
    check_output_folder(out, "--out")
    settings = resolve(out, given)
    run = job.read_run(run_path)
    job.check_network(net, run, run_path)
    images = load_images(data_path, cache=cache, log=log, progress=progress).subset(
        train_per_class, test_per_class, seed=run["_recipe"].seed)
    job.check_data(images, run, run_path)
    ident = job.identity(net, run_path, run, images)
    marker = os.path.join(out, "compress.json")
    if os.path.lexists(marker):
        saved = _read_marker(out)
        diff = _diff({k: saved.get(k) for k in ident}, ident)
        if diff:
            raise ArchError(f"{out} compresses another run:\n  " + "\n  ".join(diff),
                            hint="give the network, --from and --data it was made with, or "
                                 "choose another --out")
    elif os.path.isdir(out) and os.listdir(out):
        raise ArchError(f"{out} is not empty and holds no compression (no compress.json)",
                        hint="choose a new or empty --out")
    ctx = steps.Context(net, run_path, run, images, settings, out, progress, log)
    job.calibration_images(ctx.train, settings.calibration_images, ctx.recipe.seed)
    if settings.masks:
        from .masks import load_masks
        from .state import load_flat
        load_masks(settings.masks, net, load_flat(net, os.path.join(run_path,
                                                                    "model.safetensors")))
    ctx.identity = ident
    return ctx


def _read_marker(out: str) -> dict:
    path = os.path.join(out, "compress.json")
    if not os.path.lexists(path):
        return {}
    marker = checks.read_json(path)
    checks.field(marker, "settings", dict, path, required=False)
    return marker


def _diff(saved: dict, current: dict) -> list:
    from archc.training.run_dir import mismatch
    return mismatch(saved, current)


def is_done(ctx: steps.Context, step: str) -> bool:
    return step != "score" and os.path.isfile(ctx.path(step, "step.json"))


def plan_steps(ctx: steps.Context, which: str) -> list:
    """The steps to run for `which` ("all" or one step), or an error naming what is missing."""
    if which == "all":
        return [s for s in ORDER if not (s == "sensitivity" and ctx.settings.masks)]
    if which not in ORDER:
        raise ArchError(f"unknown step '{which}'", hint="steps: " + ", ".join(ORDER))
    missing = [s for s in steps.needs(which, ctx.settings) if not is_done(ctx, s)]
    if missing:
        raise ArchError(f"{ctx.out}: step '{which}' needs '{missing[0]}' first",
                        hint=f"run `archc compress {missing[0]} ...`, or `archc compress run "
                             "...` for every step in order")
    return [which]


def execute(ctx: steps.Context, which: str = "all") -> dict:
    todo = plan_steps(ctx, which)
    os.makedirs(ctx.out, exist_ok=True)
    settings = ctx.settings.to_dict()
    ctx.write_json({**ctx.identity, "settings": settings}, "compress.json")
    result = {}
    for step in todo:
        if is_done(ctx, step):
            ctx.log(f"[{step}] done already ({ctx.path(step)})")
            continue
        ctx.log(f"[{step}]")
        result = steps.RUNNERS[step](ctx)
        if step in LOCKED:
            ctx.write_json({"step": step, "settings": {k: settings[k] for k in STEP_FIELDS[step]},
                            "result": result}, step, "step.json")
    return result


def compress(net: Network, run_path: str, data_path: str, out: str, step: str = "all", *,
             train_per_class=None, test_per_class=None, cache=True, progress=True, log=print,
             **given) -> dict:
    ctx = prepare(net, run_path, data_path, out, given, train_per_class=train_per_class,
                  test_per_class=test_per_class, cache=cache, progress=progress, log=log)
    return execute(ctx, step)
