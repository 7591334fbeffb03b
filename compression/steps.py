"""The pipeline's steps (seed 002, sec. 4.1 and Fig. 7). Each reads what the steps before it
wrote under OUT and writes its own folder; pipeline.py orders them and resumes.

    sensitivity  sensitivity/curves.csv, curves.json, curves.png
    prune        prune/masks.safetensors, prune.json, sensitivity.png (with the bound)
    finetune     finetune/: an `archc train` run folder (masked optimizer)
    quantize     quantize/folded.safetensors (BN folded), steps.json (activation steps),
                 quantize.json (accuracy of the folded and the fake-quantized model)
    qat          qat/: an `archc train` run folder of the folded network, fake-quantized, and
                 quantized.safetensors (integer weights and their steps)
    score        OUT/model.quant, OUT/summary.json
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from archc._files import write_atomic

from archc.training.norm import recorded
from . import masks as M
from . import sensitivity as S
from .calibration import int_range, kl_step_from_histogram
from .fakequant import FakeQuant
from .fold import fold_network, fold_weights
from .job import calibration_images, split_mini
from .plan import make_plan, weighted_layers
from .spec import score, spec_text
from .state import fill, flatten, load_flat, merge, save_flat


class Context:
    """One job: the network, the trained run, the data, the settings and the folder."""

    def __init__(self, net, run_path, run, data, settings, out, progress=True, log=print):
        self.net, self.run_path, self.run, self.data = net, run_path, run, data
        self.settings, self.out, self.progress, self.log = settings, out, progress, log
        self.recipe = run["_recipe"]
        # the trained run's normalisation (the CIFAR-10 fallback where its run.json recorded
        # none), never recomputed from the data split here: its weights expect these
        self.norm = recorded(run, os.path.join(run_path, "run.json"))
        self.mini, self.train = split_mini(data, settings.mini_per_class, self.recipe.seed)
        self._templates: dict = {}

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def read_json(self, *parts) -> dict:
        from archc._checks import read_json
        return read_json(self.path(*parts))

    def write_json(self, obj, *parts) -> None:
        os.makedirs(os.path.dirname(self.path(*parts)), exist_ok=True)
        write_atomic(self.path(*parts), json.dumps(obj, indent=1) + "\n")

    def templates(self, net):
        """(params, stats) pure dicts of the module: shapes and structure only (abstract
        evaluation: nothing is initialised or compiled)."""
        key = id(net)  # the cache holds `net`, so its id is not reused while cached
        if key not in self._templates:
            from flax import nnx

            from archc.backends import jax_backend
            model = nnx.eval_shape(lambda: jax_backend.compile_module(net, seed=0))
            _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
            self._templates[key] = (net, nnx.to_pure_dict(params), nnx.to_pure_dict(stats))
        return self._templates[key][1:]

    def state(self, net, flat) -> dict:
        params, stats = self.templates(net)
        return {"params": fill(net, params, flat), "stats": fill(net, stats, flat)}

    def evaluator(self, net, split, **hooks):
        """evaluate(flat) -> accuracy (%) of `net` on the test split of `split`."""
        from archc.training.jax_loop import Trainer
        trainer = Trainer(net, self.recipe, 1, len(split.test_y), norm=self.norm, **hooks)
        test = trainer.put_test(split)

        def evaluate(flat):
            _, correct, count = trainer.evaluate(self.state(net, flat), test)
            return 100.0 * correct / count
        return evaluate

    def finetune_recipe(self, epochs: int, lr: float, gamma: float):
        """The run's recipe with the seed's finetuning schedule: one step decay half way."""
        half = epochs // 2
        return dataclasses.replace(self.recipe, epochs=epochs, lr=lr, gamma=gamma,
                                   schedule="step", milestones=(half,) if half >= 1 else (),
                                   warmup_epochs=0.0)

    def masks(self) -> dict:
        flat = load_flat(self.net, os.path.join(self.run_path, "model.safetensors"))
        return M.load_masks(self.path("prune", "masks.safetensors"), self.net, flat)


# ---- step 2a: sensitivity analysis ---------------------------------------------------------
def sensitivity(ctx: Context) -> dict:
    s = ctx.settings
    flat = load_flat(ctx.net, os.path.join(ctx.run_path, "model.safetensors"))
    evaluate = ctx.evaluator(ctx.net, ctx.mini)
    dense = evaluate(flat)
    layers = weighted_layers(ctx.net)
    ctx.log(f"sensitivity analysis: {len(layers)} layers x {len(s.fractions)} fractions on "
            f"{len(ctx.mini.test_y)} mini-train images (unpruned: {dense:.2f}%)")
    curve = S.curves(evaluate, flat, layers, s.fractions, log=ctx.log)
    sizes = {n: int(flat[n]["kernel"].size) for n in layers}
    os.makedirs(ctx.path("sensitivity"), exist_ok=True)
    write_atomic(ctx.path("sensitivity", "curves.csv"), S.to_csv(curve, s.fractions, dense))
    write_atomic(ctx.path("sensitivity", "curves.json"),
                 S.to_json(curve, s.fractions, dense, sizes))
    _save_plot(S.plot(curve, s.fractions, dense, None, f"{ctx.net.name}: sensitivity"),
               ctx.path("sensitivity", "curves.png"))
    return {"unpruned_mini_accuracy": dense, "mini_images": len(ctx.mini.test_y)}


def _save_plot(fig, path) -> None:
    write_atomic(path, lambda f: fig.savefig(f, format="png"))


# ---- step 2b: masks ---------------------------------------------------------------------------
def prune(ctx: Context) -> dict:
    s = ctx.settings
    flat = load_flat(ctx.net, os.path.join(ctx.run_path, "model.safetensors"))
    layers = weighted_layers(ctx.net)
    sizes = {n: int(flat[n]["kernel"].size) for n in layers}
    bound = None
    if s.masks:
        masks = M.load_masks(s.masks, ctx.net, flat)
    else:
        data = ctx.read_json("sensitivity", "curves.json")
        curve, fractions, dense = data["accuracy"], data["fractions"], data["unpruned_accuracy"]
        chosen, bound = S.choose(curve, fractions, sizes, dense, max_drop=s.max_drop,
                                 min_accuracy=s.min_accuracy, target=s.target_sparsity)
        masks = {n: M.magnitude_mask(flat[n]["kernel"], f) for n, f in chosen.items() if f > 0}
    pruned = {n: ({**v, "kernel": v["kernel"] * masks[n]} if n in masks else v)
              for n, v in flat.items()}
    test = ctx.evaluator(ctx.net, ctx.data)
    dense_acc, pruned_acc = test(flat), test(pruned)
    per_layer = {n: {"weights": sizes[n], "sparsity": M.sparsity(masks[n]) if n in masks else 0.0}
                 for n in layers}
    total = sum(sizes.values())
    overall = sum(v["sparsity"] * v["weights"] for v in per_layer.values()) / total
    os.makedirs(ctx.path("prune"), exist_ok=True)
    if bound is not None:
        _save_plot(S.plot(curve, fractions, dense, bound, f"{ctx.net.name}: sensitivity and "
                          "the bound"), ctx.path("prune", "sensitivity.png"))
    M.save_masks(ctx.path("prune", "masks.safetensors"), masks)
    result = {"bound": bound, "sparsity": overall, "weights": total, "layers": per_layer,
              "dense_test_accuracy": dense_acc, "pruned_test_accuracy": pruned_acc}
    ctx.write_json(result, "prune", "prune.json")
    ctx.log(f"pruned {overall:.1%} of {total:,} conv/linear weights"
            + (f" (bound {bound:.2f}%)" if bound is not None else "")
            + f": test accuracy {dense_acc:.2f}% -> {pruned_acc:.2f}% before finetuning")
    return {k: v for k, v in result.items() if k != "layers"}


# ---- step 3: finetuning with masks ------------------------------------------------------------
def _train(ctx: Context, name: str, net, recipe, start, masks, **hooks) -> dict:
    """jax_loop.train into OUT/name with the masked optimizer, resuming a killed run."""
    from archc.training import jax_loop
    from archc.training.recipe import steps_per_epoch
    from .state import layer_paths
    folder = ctx.path(name)
    resume = os.path.isfile(os.path.join(folder, "run.json"))
    if resume and not _has_checkpoint(os.path.join(folder, "checkpoints")):
        shutil.rmtree(folder)  # killed before its first epoch ended: nothing to resume
        resume = False
    spe = steps_per_epoch(recipe, len(ctx.train.train_y))
    tx = M.masked(jax_loop.optimizer(recipe, spe),
                  M.mask_tree(start["params"], layer_paths(net), masks))
    return jax_loop.train(net, ctx.train, recipe, folder, resume=resume,
                          progress=ctx.progress, log=ctx.log, tx=tx, start=start, norm=ctx.norm,
                          **hooks)


def _has_checkpoint(folder) -> bool:
    return os.path.isdir(folder) and any(d.isdigit() for d in os.listdir(folder))


def finetune(ctx: Context) -> dict:
    s = ctx.settings
    flat = load_flat(ctx.net, os.path.join(ctx.run_path, "model.safetensors"))
    masks = ctx.masks()
    start = ctx.state(ctx.net, {n: ({**v, "kernel": v["kernel"] * masks[n]} if n in masks else v)
                                for n, v in flat.items()})
    recipe = ctx.finetune_recipe(s.finetune_epochs, s.finetune_lr, s.finetune_gamma)
    ctx.log(f"finetuning with masks: {recipe.epochs} epochs, {lr_text(recipe)}")
    result = _train(ctx, "finetune", ctx.net, recipe, start, masks)
    final = flatten(ctx.net, merge(result["state"]["params"], result["state"]["stats"]))
    check_zeros(final, masks, "finetuning")
    return {"test_accuracy": result["last_test_acc"], "epochs": result["epochs"]}


def check_zeros(flat: dict, masks: dict, what: str) -> None:
    """Every pruned weight is exactly zero (the masked optimizer guarantees it)."""
    for n, m in masks.items():
        moved = int(np.count_nonzero(np.asarray(flat[n]["kernel"])[~m]))
        if moved:
            raise RuntimeError(f"{what} moved {moved} pruned weights of {n}")


# ---- step 4: BN folding, calibration, fake quantization -----------------------------------
def quantize(ctx: Context) -> dict:
    s = ctx.settings
    flat = load_flat(ctx.net, ctx.path("finetune", "model.safetensors"))
    folded = fold_network(ctx.net)
    fflat = fold_weights(ctx.net, flat)
    plan = make_plan(ctx.net)
    images = calibration_images(ctx.train, s.calibration_images, ctx.recipe.seed)
    from .observe import Observer
    state = ctx.state(folded, fflat)
    ctx.log(f"calibrating {len(plan.points)} activations on {len(images)} training images "
            f"({s.method}, {s.act_bits} bits" + (f", tolerance {s.tolerance:g}, {s.bins} bins)"
                                                  if s.method == "kl" else ")"))
    stats = Observer(folded, plan.points, s.bins, ctx.norm, ctx.recipe.seed).statistics(
        state["params"], state["stats"], images)
    points = {}
    for p, sym in plan.points.items():
        hist, top = stats[p]
        lo, hi = int_range(s.act_bits, sym)
        step = (kl_step_from_histogram(hist, top, s.act_bits, sym, s.tolerance)
                if s.method == "kl" else top / hi)
        points[p] = {"step": step, "symmetric": sym, "max": top, "int_min": lo, "int_max": hi}
    fq = FakeQuant(folded, plan, {p: v["step"] for p, v in points.items()}, s.weight_bits,
                   s.act_bits, s.bias_bits)
    float_acc = ctx.evaluator(folded, ctx.data)(fflat)
    fq_acc = ctx.evaluator(folded, ctx.data, tap=fq.tap, transform=fq.transform)(fflat)
    os.makedirs(ctx.path("quantize"), exist_ok=True)
    save_flat(folded, fflat, ctx.path("quantize", "folded.safetensors"))
    ctx.write_json({"points": points, "requant": plan.requant}, "quantize", "steps.json")
    result = {"folded_test_accuracy": float_acc, "fake_quant_test_accuracy": fq_acc,
              "points": len(points)}
    ctx.write_json(result, "quantize", "quantize.json")
    ctx.log(f"BN folded: {float_acc:.2f}%; fake-quantized ({s.weight_bits}-bit weights, "
            f"{s.act_bits}-bit activations): {fq_acc:.2f}% before finetuning")
    return result


def load_quant(ctx: Context):
    """(folded network, its float weights, the plan, FakeQuant) from the quantize step."""
    s = ctx.settings
    folded = fold_network(ctx.net)
    fflat = load_flat(folded, ctx.path("quantize", "folded.safetensors"))
    steps = ctx.read_json("quantize", "steps.json")["points"]
    plan = make_plan(ctx.net)
    fq = FakeQuant(folded, plan, {p: v["step"] for p, v in steps.items()}, s.weight_bits,
                   s.act_bits, s.bias_bits)
    return folded, fflat, plan, fq


def lr_text(recipe) -> str:
    """The finetuning schedule in words: "LR 0.001, x0.1 after epoch 20", or "LR 0.001,
    constant" when no decay falls within the epochs."""
    if not recipe.decay_epochs:
        return f"LR {recipe.lr:g}, constant"
    return (f"LR {recipe.lr:g}, x{recipe.gamma:g} after epoch "
            f"{', '.join(map(str, recipe.decay_epochs))}")


# ---- step 5: quantization-aware finetuning ----------------------------------------------------
def qat(ctx: Context) -> dict:
    s = ctx.settings
    folded, fflat, _, fq = load_quant(ctx)
    masks = ctx.masks()
    recipe = ctx.finetune_recipe(s.qat_epochs, s.qat_lr, s.qat_gamma)
    ctx.log(f"quantization-aware finetuning: {recipe.epochs} epochs, {lr_text(recipe)}; the "
            f"network has its batch norms folded into the layers before them "
            f"({sum(np.size(v) for d in fflat.values() for v in d.values()):,} parameters) and "
            f"its {s.weight_bits}-bit weights and {s.act_bits}-bit activations are simulated in "
            "fp32 (fake quantization)")
    result = _train(ctx, "qat", folded, recipe, ctx.state(folded, fflat), masks,
                    tap=fq.tap, transform=fq.transform)
    final = flatten(folded, merge(result["state"]["params"], result["state"]["stats"]))
    check_zeros(final, masks, "quantization-aware finetuning")
    ints = fq.integer_weights(final)
    from safetensors.numpy import save
    tensors = {f"{n}.{k}": np.ascontiguousarray(v) for n, d in ints.items() for k, v in d.items()}
    write_atomic(ctx.path("qat", "quantized.safetensors"), save(tensors, metadata={
        "layout": "jax: conv kh x kw x in/groups x out, linear in x out",
        "meaning": "weight = weight_int * weight_step (per output channel), "
                   "bias = bias_int * bias_step; activation steps in ../quantize/steps.json"}))
    return {"test_accuracy": result["last_test_acc"], "epochs": result["epochs"]}


# ---- score --------------------------------------------------------------------------------------
def score_step(ctx: Context) -> dict:
    s = ctx.settings
    folded = fold_network(ctx.net)
    final = load_flat(folded, ctx.path("qat", "model.safetensors"))
    masks = ctx.masks()
    plan = make_plan(ctx.net)
    measured = {n: M.measured_sparsity(final[n]["kernel"]) for n in plan.weighted}
    header = (f"{ctx.net.name} compressed by `archc compress` from {ctx.run_path}: the "
              f"MicroNet entry's pipeline (Zeng et al.).\nsparsity: measured zeros of the final "
              f"weights; act_bits="
              f"{s.float_bits}: tensors left in floating point")
    text = spec_text(ctx.net, plan, measured, weight_bits=s.weight_bits, act_bits=s.act_bits,
                     bias_bits=s.bias_bits, acc_bits=s.acc_bits, float_bits=s.float_bits,
                     header=header)
    write_atomic(ctx.path("model.quant"), text)
    prune = ctx.read_json("prune", "step.json")["result"]
    ft = ctx.read_json("finetune", "step.json")["result"]
    qz = ctx.read_json("quantize", "step.json")["result"]
    qa = ctx.read_json("qat", "step.json")["result"]
    weights = sum(int(final[n]["kernel"].size) for n in plan.weighted)
    overall = sum(measured[n] * final[n]["kernel"].size for n in plan.weighted) / weights
    masked = {n: M.sparsity(masks[n]) if n in masks else 0.0 for n in plan.weighted}
    pruned32 = spec_text(ctx.net, plan, masked, weight_bits=32, act_bits=32, bias_bits=32,
                         acc_bits=32, float_bits=32)
    rows = []
    for stage, acc, text_, sp in (
            ("dense float32 (the trained run)", prune["dense_test_accuracy"], "", 0.0),
            ("pruned, before finetuning", prune["pruned_test_accuracy"], pruned32,
             prune["sparsity"]),
            ("pruned + finetuned", ft["test_accuracy"], pruned32, prune["sparsity"]),
            (f"int{s.act_bits} fake-quantized, before QAT", qz["fake_quant_test_accuracy"], text,
             overall),
            (f"int{s.act_bits} after QAT (model.quant)", qa["test_accuracy"], text, overall)):
        t = score(ctx.net, text_, s.rules, s.baseline).totals
        rows.append({"stage": stage, "test_accuracy": acc, "sparsity": sp,
                     "storage_M": t["storage_params32"] / 1e6, "mul_M": t["mul_ops32"] / 1e6,
                     "add_M": t["add_ops32"] / 1e6, "score": t["score"]})
    beyond = {n: measured[n] for n in plan.weighted if measured[n] != masked[n]}
    summary = {"network": ctx.net.name, "rules": s.rules, "baseline": s.baseline,
               "spec": ctx.path("model.quant"), "sparsity": overall, "stages": rows,
               "layer_sparsity": measured,
               "mask_sparsity": masked, "zeros_beyond_masks": beyond}
    ctx.write_json(summary, "summary.json")
    ctx.log(format_summary(summary))
    return {"score": rows[-1]["score"], "test_accuracy": rows[-1]["test_accuracy"]}


def format_summary(s: dict) -> str:
    head = (f"{'stage':<38} {'test acc':>8} {'sparsity':>8} {'storage M':>9} {'mul M':>8} "
            f"{'add M':>8} {'score':>8}")
    from archc.compiler.bitops import BASELINES
    title = (f"{s['network']}: scored with the {s['rules']} rules against the MicroNet "
             f"baseline {BASELINES[s['baseline']][0]} (score = storage and operations relative "
             "to that network's; docs/compression.md)\n"
             "32-bit equivalents; storage counts each batch norm folded into the layer before it")
    lines = [title, head, "-" * len(head)]
    for r in s["stages"]:
        lines.append(f"{r['stage']:<38} {r['test_accuracy']:7.2f}% {r['sparsity']:8.1%} "
                     f"{r['storage_M']:9.5f} {r['mul_M']:8.4f} {r['add_M']:8.4f} "
                     f"{r['score']:8.5f}")
    lines.append(f"spec: {s['spec']}  (archc analyze NETWORK -D ... --bitops {s['rules']} "
                 f"--quant {os.path.basename(s['spec'])})")
    return "\n".join(lines)


RUNNERS = {"sensitivity": sensitivity, "prune": prune, "finetune": finetune,
           "quantize": quantize, "qat": qat, "score": score_step}


def needs(step: str, settings) -> list:
    """The steps whose outputs `step` reads."""
    order = ["sensitivity", "prune", "finetune", "quantize", "qat"]
    if step == "sensitivity":
        return []
    before = order[:order.index(step)] if step in order else order
    if settings.masks:
        before = [b for b in before if b != "sensitivity"]
    return before
