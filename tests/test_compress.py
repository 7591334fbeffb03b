"""Seed 002's compression pipeline (compression, `archc compress`): where activations are
quantized, BN folding, fake quantization against an integer simulation, the masked optimizer,
and one short run of the whole pipeline on tiny synthetic data and a tiny network: pruned
weights stay exactly zero, the spec's sparsity equals the masks, the score equals the bit-op
analysis of the spec, resume, and clear errors (exit 2, nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from archc.compiler.quant import load_quant
from archc.compression import masks as M
from archc.compression.fakequant import FakeQuant
from archc.compression.fold import fold_network, fold_weights, folded_bns
from archc.compression.plan import make_plan
from archc.compression.state import fill, flatten, layer_paths, load_flat

import archc
from archc._cli import main

jax = pytest.importorskip("jax")   # the compress modules import it lazily
pytest.importorskip("flax")
pytest.importorskip("optax")

from _tiny_net import TINY
from _tiny_net import write_images as _write_images


def _module(net, tap=None):
    """(graphdef, params, stats, rest) of the module in eval mode; params and stats are shape
    templates only (abstract evaluation: the tests set every value themselves)."""
    from archc.backends import jax_backend
    from flax import nnx
    model = nnx.eval_shape(lambda: jax_backend.compile_module(net, tap=tap))
    model.eval()
    g, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    rest = nnx.to_pure_dict(rest)
    assert not jax.tree.leaves(rest)           # no dropout: nothing else to set
    return g, nnx.to_pure_dict(params), nnx.to_pure_dict(stats), rest


# ---- where activations are quantized (sec. 3.5) -----------------------------------------------
def test_plan_follows_the_seeds_rules():
    net = archc.load("se_sqnxt", stages=[1, 1, 1, 1], width=0.5)
    plan = make_plan(net)
    b = "stage1.block1"
    assert plan.points["input"] is True                       # symmetric: the input
    assert plan.points["act1"] is False                       # after conv -> bn -> relu: unsigned
    assert plan.points[f"{b}.conv1.act"] is False
    # SE: no activation of the module quantized; its input is
    assert plan.points[f"{b}.conv5.act"] is False
    assert not any(n.startswith(f"{b}.se.") for n in plan.points)
    assert {f"{b}.se.{n}" for n in ("pool", "fc1", "relu", "fc2", "gate")} == \
        {n for n in plan.gates if n.startswith(b)}
    # residual: the branch's last unit and the shortcut feed the sum only; the sum is quantized
    assert f"{b}.se.scale" not in plan.points and f"{b}.shortcut.act" not in plan.points
    assert plan.points[f"{b}.act"] is False
    # the final pool rounds onto the last point's grid; the logits stay float
    assert plan.points["act2"] is False and plan.grid["dropout"] == "act2"
    assert plan.requant["pool"] == "act2" and "fc" not in plan.points
    assert not plan.scored["fc"] and plan.scored["flatten"]


def test_folded_network_keeps_names_and_the_original():
    net = archc.load_source(TINY)
    folded = fold_network(net)
    assert folded_bns(net) == {"b1": "c1", "b2": "c2", "b3": "c3"}
    assert folded.layers() == net.layers()
    assert folded.node("b2")["op"] == "identity" and folded.node("c2")["attrs"]["bias"]
    assert net.node("b2")["op"] == "bn" and not net.node("c2")["attrs"]["bias"]


def test_folding_keeps_the_outputs():
    from flax import nnx
    net = archc.load_source(TINY)
    rng = np.random.default_rng(0)
    g, params, stats, rest = _module(net)
    flat = {layer: {k: rng.normal(size=v.shape) * 0.3 for k, v in d.items()}
            for layer, d in flatten(net, params).items()}
    for layer, v in flatten(net, stats).items():
        flat[layer] = {**flat.get(layer, {}), "mean": rng.normal(size=v["mean"].shape),
                       "var": rng.uniform(0.5, 2.0, size=v["var"].shape)}
        flat[layer]["scale"] = rng.uniform(0.5, 1.5, size=v["mean"].shape)
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    run = jax.jit(lambda g, p, s, r, x: nnx.merge(g, p, s, r)(x), static_argnums=0)
    want = run(g, fill(net, params, flat), fill(net, stats, flat), rest, x)
    folded = fold_network(net)
    gf, pf, sf, rf = _module(folded)
    ff = fold_weights(net, flat)
    got = run(gf, fill(folded, pf, ff), fill(folded, sf, ff), rf, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


# ---- fake quantization = integer arithmetic -------------------------------------------------
SIM = """network Sim(classes: int = 3) {
    x = input(3, 4, 4)
    x = x -> c1: conv(4, kernel=3, padding=1) -> b1: bn -> r1: relu
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(classes)
}
"""


def _ints_with_max(rng, shape, top, axis_last=True):
    """Random integers in [-top, top] with |max| = top in every output channel (last axis)."""
    q = rng.integers(-top, top + 1, size=shape)
    flat = q.reshape(-1, shape[-1])
    flat[rng.integers(0, flat.shape[0], size=shape[-1]), np.arange(shape[-1])] = top
    return flat.reshape(shape)


def test_fake_quant_equals_an_integer_simulation():
    """With power-of-two steps every float32 product and sum is exact, so the fake-quantized
    forward pass must give exactly the integers of a plain integer implementation (4 x 4
    maps: the average pool divides by 16, exactly too)."""
    import jax
    from flax import nnx
    rng = np.random.default_rng(1)
    net = archc.load_source(SIM)
    folded = fold_network(net)
    plan = make_plan(net)
    assert set(plan.points) == {"input", "r1"} and plan.requant == {"pool": "r1"}
    s_in, s_r1, s_w, s_b = 2.0 ** -4, 2.0 ** -5, 2.0 ** -7, 2.0 ** -12
    w1 = _ints_with_max(rng, (3, 3, 3, 4), 127)
    b1 = rng.integers(-2000, 2001, size=4)
    b1[0] = 32767
    w2 = _ints_with_max(rng, (4, 3), 127)
    b2 = rng.integers(-30000, 30001, size=3)
    b2[1] = -32767                      # max |b| = 32767: the 16-bit step is exactly s_b
    flat = {"c1": {"kernel": w1 * s_w, "bias": b1 * s_b},
            "fc": {"kernel": w2 * s_w, "bias": b2 * s_b}}
    xi = rng.integers(-128, 128, size=(5, 4, 4, 3))
    fq = FakeQuant(folded, plan, {"input": s_in, "r1": s_r1}, 8, 8, 16)
    seen = {}

    def tap(name, value):
        value = fq.tap(name, value)
        seen[name] = value
        return value
    g, params, stats, rest = _module(folded, tap)
    params = fill(folded, params, flat)

    @jax.jit
    def forward(params, x):
        p, xq = fq.transform(params, x)
        out = nnx.merge(g, p, stats, rest)(xq)
        return out, dict(seen)
    logits, taps = forward(params, (xi * s_in).astype(np.float32))

    # the integer implementation: int64 accumulators, one requantization per point
    pad = np.pad(xi, ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc = np.zeros((5, 4, 4, 4), np.int64)
    for dh in range(3):
        for dw in range(3):
            acc += np.einsum("nhwc,co->nhwo", pad[:, dh:dh + 4, dw:dw + 4], w1[dh, dw])
    y = acc * (s_in * s_w) + b1 * s_b
    r1 = np.clip(np.round(np.maximum(y, 0) / s_r1), 0, 255)
    np.testing.assert_array_equal(np.asarray(taps["r1"]) / s_r1, r1)
    pooled = np.round(r1.mean(axis=(1, 2)))              # back onto r1's grid
    # the pool feeds only the linear layer: N x C (the JAX backend's rank-2 value)
    assert np.asarray(taps["pool"]).shape == pooled.shape
    np.testing.assert_array_equal(np.asarray(taps["pool"]) / s_r1, pooled)
    want = (pooled.astype(np.int64) @ w2) * (s_r1 * s_w) + b2 * s_b
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-6)
    assert (r1 == 255).any() and (r1 == 0).any()         # both ends of the range were hit


# ---- choosing the sparsity (sec. 2) --------------------------------------------------------
def test_unified_bound_and_target_sparsity():
    from archc.compression import sensitivity as S
    fractions = [0.1, 0.2, 0.3, 0.4]
    curve = {"a": [90, 89, 80, 88],          # a dip at 0.3 stops it at 0.2 (not 0.4)
             "b": [85, 84, 83, 82],
             "c": [70, 60, 50, 40]}          # below the bound at once: not pruned
    sizes = {"a": 100, "b": 300, "c": 600}
    chosen, bound = S.choose(curve, fractions, sizes, 90.0, max_drop=8)
    assert bound == 82 and chosen == {"a": 0.2, "b": 0.4, "c": 0.0}
    chosen, bound = S.choose(curve, fractions, sizes, 90.0, min_accuracy=84)
    assert chosen == {"a": 0.2, "b": 0.2, "c": 0.0}
    chosen, bound = S.choose(curve, fractions, sizes, 90.0, target=0.15)
    assert bound == 80 and chosen == {"a": 0.4, "b": 0.4, "c": 0.0}   # 82 gives 0.14 only
    assert S.overall(chosen, sizes) == 0.16
    with pytest.raises(archc.ArchError, match="out of reach"):
        S.choose(curve, fractions, sizes, 90.0, target=0.5)
    w = np.arange(1, 101, dtype=np.float32).reshape(10, 10) * np.where(np.arange(100) % 2, 1, -1
                                                                        ).reshape(10, 10)
    m = M.magnitude_mask(w, 0.35)
    assert M.sparsity(m) == 0.35 and np.abs(w[~m]).max() < np.abs(w[m]).min()


# ---- the masked optimizer -----------------------------------------------------------------
def test_masked_optimizer_never_moves_pruned_weights():
    import optax
    from archc.training.jax_loop import optimizer
    from archc.training.recipe import Recipe
    rng = np.random.default_rng(2)
    params = {"a": {"kernel": rng.normal(size=(3, 3, 4, 5)).astype(np.float32),
                    "bias": rng.normal(size=5).astype(np.float32)},
              "b": {"kernel": rng.normal(size=(5, 2)).astype(np.float32)}}
    mask = rng.random((3, 3, 4, 5)) > 0.5
    params["a"]["kernel"] = params["a"]["kernel"] * mask
    start = params["a"]["kernel"].copy()
    recipe = Recipe(epochs=4, lr=0.1, weight_decay=5e-3, momentum=0.9, milestones=(2,))
    tree = M.mask_tree(params, {"a": ("a",), "b": ("b",)}, {"a": mask})
    for tx, keeps in ((M.masked(optimizer(recipe, 5), tree), True),
                      (optimizer(recipe, 5), False)):     # the control: without the mask
        p, state = params, tx.init(params)
        update = jax.jit(tx.update)   # one compile instead of ~20 eager dispatches per step
        for _ in range(20):
            grads = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32), p)
            updates, state = update(grads, state, p)
            p = optax.apply_updates(p, updates)
            if keeps:
                assert np.all(np.asarray(p["a"]["kernel"])[~mask] == 0)
                traces = [np.asarray(t) for t in jax.tree.leaves(state)
                          if np.shape(t) == mask.shape]
                assert traces and all(np.all(t[~mask] == 0) for t in traces)
        moved = np.asarray(p["a"]["kernel"]) != start
        assert moved[mask].all()
        assert moved[~mask].any() != keeps


# ---- the whole pipeline, once, on tiny data ----------------------------------------------------
SMALL = ["--mini-per-class", "6", "--fractions", "0.3,0.6", "--finetune-epochs", "2",
         "--qat-epochs", "1", "--calibration-images", "24", "--bins", "1024", "--no-progress"]
OPTIONS = [*SMALL, "--max-drop", "50"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    _write_images(str(root / "data"), np.random.default_rng(3))
    arch = root / "tiny.arch"
    arch.write_text(TINY)
    common = [str(arch), "--data", str(root / "data")]
    assert main(["train", *common, "--epochs", "2", "--batch-size", "16", "--out",
                 str(root / "run"), "--no-progress"]) == 0
    args = [*common, "--from", str(root / "run")]
    assert main(["compress", "run", *args, "--out", str(root / "out"), *OPTIONS]) == 0
    return {"root": root, "args": args, "out": root / "out", "arch": str(arch),
            "net": archc.load(str(arch))}


def _masks(job):
    net = job["net"]
    flat = load_flat(net, str(job["root"] / "run" / "model.safetensors"))
    return M.load_masks(str(job["out"] / "prune" / "masks.safetensors"), net, flat)


@pytest.mark.slow   # the module's compression pipeline (training)
def test_pipeline_writes_every_step(job):
    out = job["out"]
    for f in ("compress.json", "sensitivity/curves.csv", "sensitivity/curves.png",
              "prune/masks.safetensors", "prune/sensitivity.png", "finetune/model.safetensors",
              "quantize/steps.json", "quantize/folded.safetensors", "qat/model.safetensors",
              "qat/quantized.safetensors", "model.quant", "summary.json"):
        assert (out / f).is_file(), f
    rows = (out / "sensitivity" / "curves.csv").read_text().splitlines()
    assert rows[0] == "layer,0.30,0.60" and len(rows) == 2 + 6   # six conv/linear layers
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["stages"]) == 5 and summary["sparsity"] > 0.2


@pytest.mark.slow   # the module's compression pipeline (training)
def test_pruned_weights_are_exactly_zero_after_finetuning(job):
    masks = _masks(job)
    assert masks and all((~m).any() for m in masks.values())
    net, out = job["net"], job["out"]
    finetuned = load_flat(net, str(out / "finetune" / "model.safetensors"))
    folded = fold_network(net)
    qat = load_flat(folded, str(out / "qat" / "model.safetensors"))
    from safetensors.numpy import load_file
    ints = load_file(str(out / "qat" / "quantized.safetensors"))
    for n, m in masks.items():
        for kernel in (finetuned[n]["kernel"], qat[n]["kernel"], ints[f"{n}.weight_int"]):
            assert np.all(kernel[~m] == 0), n
            assert np.count_nonzero(kernel[m]) > 0.9 * m.sum()   # the kept ones did train


@pytest.mark.slow   # the module's compression pipeline (training)
def test_spec_sparsity_equals_the_masks(job):
    masks = _masks(job)
    spec = load_quant(str(job["out"] / "model.quant"))
    net = job["net"]
    prec = spec.resolve([net.input] + net.layers())
    for n in make_plan(net).weighted:
        assert prec[n].sparsity == (M.sparsity(masks[n]) if n in masks else 0.0), n
        assert prec[n].weight_bits == 8
    assert prec["input"].act_bits == 8 and prec["se.fc1"].act_bits == 32


@pytest.mark.slow   # the module's compression pipeline (training)
def test_score_equals_the_bitop_analysis_of_the_spec(job, capsys):
    capsys.readouterr()
    assert main(["analyze", job["arch"], "--bitops", "table1", "--quant",
                 str(job["out"] / "model.quant"), "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    last = json.loads((job["out"] / "summary.json").read_text())["stages"][-1]
    assert last["score"] == totals["score"]
    assert last["storage_M"] == totals["storage_params32"] / 1e6


@pytest.mark.slow   # the module's compression pipeline (training)
def test_exported_integers_are_the_fake_quantized_weights(job):
    from safetensors.numpy import load_file
    net, out = job["net"], job["out"]
    folded = fold_network(net)
    qat = load_flat(folded, str(out / "qat" / "model.safetensors"))
    ints = load_file(str(out / "qat" / "quantized.safetensors"))
    for n in make_plan(net).weighted:
        k = qat[n]["kernel"]
        s = ints[f"{n}.weight_step"]
        np.testing.assert_array_equal(s, np.abs(k).max(axis=tuple(range(k.ndim - 1))) / 127)
        safe = np.where(s > 0, s, 1)                  # a fully pruned channel: step 0, ints 0
        np.testing.assert_array_equal(ints[f"{n}.weight_int"], np.round(k / safe))


@pytest.mark.slow   # the module's compression pipeline (training)
def test_rerun_resumes_and_checks_settings(job, capsys):
    out, args = job["out"], job["args"]
    before = (out / "finetune" / "step.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["compress", "run", *args, "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.count("done already") == 5 and "[score]" in text
    assert (out / "finetune" / "step.json").stat().st_mtime_ns == before
    assert main(["compress", "finetune", *args, "--out", str(out), "--finetune-epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "finetune.finetune_epochs: done with 2, this run has 3" in err


@pytest.mark.slow   # the module's compression pipeline (training)
@pytest.mark.parametrize("extra,message", [
    (["--act-bits", "12"], "needs precision <= 10"),
    (["--method", "max", "--act-bits", "1"], "out of range"),
    (["--max-drop", "1", "--target-sparsity", "0.4"], "choose one way to prune"),
    (["--mini-per-class", "48"], "has only 48 images"),
])
def test_bad_settings_write_nothing(job, tmp_path, capsys, extra, message):
    out = tmp_path / "new"
    assert main(["compress", "run", *job["args"], "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow   # the module's compression pipeline (training)
def test_unfinished_run_and_missing_steps(job, tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    (half / "run.json").write_text((job["root"] / "run" / "run.json").read_text())
    args = [job["args"][0], *job["args"][1:3], "--from", str(half), "--out", str(tmp_path / "o")]
    assert main(["compress", "run", *args]) == 2
    assert "is not a finished training run (no summary.json, model.safetensors)" in \
        capsys.readouterr().err
    assert main(["compress", "quantize", *job["args"], "--out", str(tmp_path / "o"),
                 *OPTIONS]) == 2
    assert "step 'quantize' needs 'sensitivity' first" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow   # the module's compression pipeline (training)
def test_masks_that_do_not_fit(job, tmp_path, capsys):
    masks = _masks(job)
    bad = {**masks, "c1": np.ones((3, 3, 3, 9), bool), "nope": np.ones(3, bool)}
    M.save_masks(str(tmp_path / "bad.safetensors"), bad)
    out = tmp_path / "o"
    assert main(["compress", "run", *job["args"], "--out", str(out), *SMALL, "--masks",
                 str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "the masks do not fit Tiny" in err and "'c1' has shape (3, 3, 3, 9)" in err
    assert "'nope' is not a conv or linear layer" in err
    assert not out.exists()


def test_layer_paths_cover_every_weighted_layer():
    net = archc.load("se_sqnxt", stages=[1, 1, 1, 1], width=0.5)
    paths = layer_paths(net)
    assert all(n in paths for n in make_plan(net).weighted)


@pytest.mark.slow   # the module's compression pipeline (training)
def test_python_api_scores_the_same(job):
    from archc.compress import compress
    root, out = job["root"], job["out"]
    lines = []
    result = compress(job["net"], str(root / "run"), str(root / "data"), str(out), "score",
                      log=lines.append)
    summary = json.loads((out / "summary.json").read_text())
    assert result["score"] == summary["stages"][-1]["score"]
    assert any("int8 after QAT" in line for line in lines)
