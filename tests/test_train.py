"""`archc train`: the recipe, on-device augmentation, a real (short) training run on the
CIFAR-10 pack, exact resume after a kill, and clear errors.

The pack lives at ../shared/data/cifar10 beside the checkout (as in CI); the tests that need
it skip without it."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import archc
from archc.training.recipe import Recipe, lr_table, schedule
from archc.compiler import ArchError

from _xla import default_xla_env  # tests/

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

PACK = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                     "cifar10", "cifar10-jpeg.tar.xz"))
needs_pack = pytest.mark.skipif(not os.path.exists(PACK), reason="no CIFAR-10 pack at ../shared")
# A SqueezeNext-family network small enough for a CPU: SqueezeNext blocks, 1 per stage, half
# width (18,048 parameters, 1.17 M MACs per image: 363 images/s on the 2-core CI machine,
# where half width trained at 229).
SMALL = ["sqnxt", "-D", "stages=[1,1,1,1]", "-D", "width=0.25"]


@pytest.fixture(scope="module")
def env():
    """Subprocess environment: the session's own XLA compilation cache (conftest.py)."""
    return dict(os.environ)


def archc_main(args, capsys):
    """`archc` in this process (for runs that need no process of their own: no JAX import,
    no data set load to pay again): its exit code, stdout and stderr."""
    from archc._cli import main
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def archc_cli(args, env, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True,
                          text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"archc {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


# ---- the recipe ------------------------------------------------------------------------------
def test_paper_step_schedule():
    """Seed 000 sec. III / seed 001 sec. III: four decays, after epochs 60, 120, 150, 180."""
    r = Recipe()
    assert (r.epochs, r.lr, r.momentum, r.nesterov) == (200, 0.1, 0.9, True)
    assert r.decay_epochs == (60, 120, 150, 180)
    table = lr_table(r, steps_per_epoch=10)
    assert len(table) == 2000
    for epoch, lr in ((1, 0.1), (60, 0.1), (61, 0.02), (121, 0.004), (151, 8e-4), (200, 1.6e-4)):
        np.testing.assert_allclose(table[(epoch - 1) * 10: epoch * 10], lr, rtol=1e-6)
    # other epoch counts scale the milestones; explicit ones are taken as they are
    assert Recipe(epochs=20).decay_epochs == (6, 12, 15, 18)
    assert Recipe(epochs=20, milestones=(5, 10)).decay_epochs == (5, 10)


def test_other_schedules():
    spe = 4
    cos = lr_table(Recipe(epochs=10, schedule="cosine"), spe)
    assert cos[0] == pytest.approx(0.1) and cos[-1] < 1e-3 and np.all(np.diff(cos) <= 1e-12)
    warm = lr_table(Recipe(epochs=10, schedule="cosine", warmup_epochs=2), spe)
    assert warm[0] == 0 and warm[8] == pytest.approx(0.1) and np.all(np.diff(warm[:8]) > 0)
    one = lr_table(Recipe(epochs=10, schedule="onecycle"), spe)
    assert one.argmax() == pytest.approx(12, abs=1) and one.max() == pytest.approx(0.1, rel=1e-3)
    const = lr_table(Recipe(epochs=3, schedule="constant", lr=0.05), spe)
    np.testing.assert_allclose(const, 0.05)
    stepw = lr_table(Recipe(epochs=10, warmup_epochs=1, milestones=(5,)), spe)
    assert stepw[0] == 0 and stepw[4] == pytest.approx(0.1) and stepw[20] == pytest.approx(0.02)
    fn = schedule(Recipe(epochs=10), spe)  # milestones 3, 6, 8, 9 (60/120/150/180 of 200)
    assert [round(float(fn(s)), 6) for s in (11, 12, 23, 24)] == [0.1, 0.02, 0.02, 0.004]


def _optax_schedule(recipe, spe):
    """The optax schedules archc's pure schedule() reproduces (the test oracle)."""
    import optax
    total = recipe.epochs * spe
    warm = int(round(recipe.warmup_epochs * spe))
    lr = recipe.lr
    if recipe.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(total, lr, pct_start=warm / total if warm else 0.3)
    if recipe.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warm, total, end_value=0.0) if warm \
            else optax.cosine_decay_schedule(lr, total)
    if recipe.schedule == "linear":
        main = optax.linear_schedule(lr, 0.0, total - warm)
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm]) \
            if warm else main
    if recipe.schedule == "step":
        main = optax.piecewise_constant_schedule(
            lr, {e * spe - warm: recipe.gamma for e in recipe.decay_epochs})
    else:
        main = optax.constant_schedule(lr)
    if not warm:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])


@pytest.mark.parametrize("kw", [
    {}, {"epochs": 10}, {"epochs": 10, "warmup_epochs": 1, "milestones": (5,)},
    {"epochs": 10, "schedule": "cosine"}, {"epochs": 7, "schedule": "cosine", "warmup_epochs": 2},
    {"epochs": 10, "schedule": "onecycle"}, {"epochs": 9, "schedule": "onecycle",
                                             "warmup_epochs": 2.5},
    {"epochs": 3, "schedule": "constant", "warmup_epochs": 1, "lr": 0.05},
    {"epochs": 10, "schedule": "linear"}, {"epochs": 9, "schedule": "linear",
                                           "warmup_epochs": 1.5, "lr": 0.4},
])
def test_schedule_equals_optax(kw):
    """The pure schedule (numpy and jax.numpy) is optax's, step for step."""
    import jax.numpy as jnp
    r, spe = Recipe(**kw), 7
    steps = np.arange(r.epochs * spe + 3)
    want = np.asarray(jax.vmap(_optax_schedule(r, spe))(jnp.asarray(steps)), np.float64)
    np.testing.assert_allclose(lr_table(r, spe), want[:-3], rtol=2e-6, atol=2e-8)  # optax computes in float32
    traced = np.asarray(jax.jit(jax.vmap(schedule(r, spe, xp=jnp)))(jnp.asarray(steps)))
    np.testing.assert_allclose(traced, want, rtol=2e-6, atol=2e-8)  # optax computes in float32


def test_recipes():
    """--recipe paper is the default Recipe exactly, and its run.json keys are those of runs
    made before the fast recipe's fields existed (they stay resumable); fast sets its values,
    which options override; the torch loop refuses what it does not implement."""
    from archc.training.recipe import RECIPES, preset, require_backend
    assert preset("paper") == Recipe() and RECIPES["paper"] == {}
    assert set(Recipe().to_dict()) == {
        "epochs", "batch_size", "lr", "schedule", "milestones", "gamma", "warmup_epochs",
        "momentum", "nesterov", "weight_decay", "label_smoothing", "augment", "precision",
        "seed", "eval_batch_size"}
    fast = preset("fast", epochs=10)
    assert (fast.epochs, fast.batch_size, fast.schedule, fast.label_smoothing, fast.precision,
            fast.test_flip, fast.weight_decay_all) == (10, 512, "linear", 0.2, "bf16", True,
                                                       False)
    assert fast.to_dict()["test_flip"] is True
    table = lr_table(fast, 10)
    assert table[0] == 0 and table.argmax() == 20 and table[-1] == pytest.approx(fast.lr / 80)
    with pytest.raises(ArchError, match="unknown recipe 'slow'"):
        preset("slow")
    require_backend(fast, "jax")
    require_backend(Recipe(), "torch")
    with pytest.raises(ArchError, match="does not implement test_flip, weight_decay_all"):
        require_backend(fast, "torch")


def test_weight_decay_on_kernels_only():
    """recipe.weight_decay_all off: with zero gradients only conv and linear kernels shrink."""
    from archc.training.jax_loop import optimizer
    import optax
    params = {"conv": {"kernel": np.ones(3, np.float32), "bias": np.ones(3, np.float32)},
              "bn": {"scale": np.ones(3, np.float32), "bias": np.ones(3, np.float32)}}
    for every, moved in ((True, {"kernel", "bias", "scale"}), (False, {"kernel"})):
        tx = optimizer(Recipe(epochs=1, schedule="constant", weight_decay_all=every), 1)
        zeros = jax.tree.map(np.zeros_like, params)
        new = optax.apply_updates(params, tx.update(zeros, tx.init(params), params)[0])
        changed = {k for layer in new for k, v in new[layer].items() if np.any(v != 1)}
        assert changed == moved, (every, changed)


@pytest.mark.parametrize("kw, message", [
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"schedule": "exp"}, "unknown schedule 'exp'"),
    ({"precision": "fp16"}, "unknown precision 'fp16'"),
    ({"milestones": (5, 3)}, "must increase strictly"),
    ({"epochs": 10, "milestones": (10,)}, "inside 1..9"),
    ({"label_smoothing": 1.0}, "--label-smoothing"),
])
def test_bad_recipe(kw, message):
    with pytest.raises(ArchError, match=message):
        Recipe(**kw)


def test_sgd_matches_torch():
    """optax chain (add_decayed_weights, Nesterov SGD) == torch.optim.SGD, step for step."""
    from archc.training.jax_loop import optimizer
    import optax
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5).astype(np.float32)
    grads = rng.standard_normal((6, 5)).astype(np.float32)
    r = Recipe(epochs=2, milestones=(1,))
    tx = optimizer(r, 3)
    p = {"w": jax.numpy.asarray(w0)}
    s = tx.init(p)
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    lrs = lr_table(r, 3)
    for i, g in enumerate(grads):
        u, s = tx.update({"w": jax.numpy.asarray(g)}, s, p)
        p = optax.apply_updates(p, u)
        opt.param_groups[0]["lr"] = float(lrs[i])
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        np.testing.assert_allclose(np.asarray(p["w"]), tw.detach().numpy(), rtol=1e-6, atol=1e-7)


# ---- augmentation on the device ----------------------------------------------------------------
def _is_crop_or_flip(out, img):
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    h, w = img.shape[:2]
    for dy in range(9):
        for dx in range(9):
            win = padded[dy:dy + h, dx:dx + w]
            if np.array_equal(out, win) or np.array_equal(out, win[:, ::-1]):
                return True
    return False


def test_augment_jax_and_torch():
    from archc.training import jax_loop as train_jax, torch_loop as train_torch
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (16, 8, 8, 3), dtype=np.uint8)  # no zeros: padding is visible
    a = np.asarray(train_jax.augment(jax.numpy.asarray(x), jax.random.key(1)))
    gen = torch.Generator().manual_seed(1)
    b = train_torch.augment(torch.from_numpy(x), gen).numpy()
    for out in (a, b):
        assert out.shape == x.shape and out.dtype == np.uint8
        assert all(_is_crop_or_flip(o, i) for o, i in zip(out, x))
        assert sum(np.array_equal(o, i) for o, i in zip(out, x)) < 8  # it does move things
    assert any(np.array_equal(o, i[:, ::-1]) for o, i in zip(a, x)) or \
        any(not np.array_equal(o, i) for o, i in zip(a, x))


# ---- a real run, and exact resume ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, env):
    """300 steps (5 epochs x 60 of 50 images) on 3,000 training images, 300 per class,
    tested on 1,000 held-out test images: the CLI end to end, compiled with XLA's default
    settings (the other tests compile quickly rather than well: conftest.py)."""
    if not os.path.exists(PACK):
        pytest.skip("no CIFAR-10 pack at ../shared")
    out = tmp_path_factory.mktemp("run") / "sqnxt"
    proc = archc_cli(["train", *SMALL, "--data", PACK, "--train-per-class", "300",
                      "--test-per-class", "100", "--epochs", "5", "--batch-size", "50",
                      "--out", str(out)], default_xla_env(env))
    return out, proc


@pytest.mark.slow   # the module's 300-step training run
@needs_pack
def test_training_learns(trained):
    out, proc = trained
    summary = json.loads((out / "summary.json").read_text())
    # chance is 10%; 1,000 test images put 25% about 15 standard deviations above it
    assert summary["last_test_acc"] > 25.0, proc.stdout
    assert summary["params"] == archc.analyze("sqnxt", stages=[1, 1, 1, 1],
                                              width=0.25).totals["params"]
    assert "test accuracy    best" in proc.stdout


@pytest.mark.slow   # the module's 300-step training run
@needs_pack
def test_run_folder(trained):
    out, _ = trained
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in lines] == [1, 2, 3, 4, 5]
    assert [h["step"] for h in lines] == [60, 120, 180, 240, 300]
    for h in lines:
        assert 0 <= h["train_acc"] <= 100 and math.isfinite(h["train_loss"])
        assert h["images_per_second"] > 0
    assert lines[0]["compile_seconds"] > 0 and lines[1]["compile_seconds"] == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"]["milestones"] == [2, 3, 4] and run["data"]["train"] == 3000
    assert sorted(os.listdir(out / "checkpoints")) == ["4", "5"]  # the last two


@pytest.mark.slow   # the module's 300-step training run
@needs_pack
def test_exported_weights_give_the_same_accuracy_in_torch(trained):
    """model.safetensors (torch layout) in the generated torch module scores on the test
    subset what the JAX run reported: the two backends agree on the trained network."""
    from archc.backends import torch_backend, weights
    from archc.training.data import load_images
    out, _ = trained
    norm = json.loads((out / "run.json").read_text())["normalization"]  # the run's statistics
    net = archc.load("sqnxt", stages=[1, 1, 1, 1], width=0.25)
    model = torch_backend.compile_module(net)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in
                           weights.load(out / "model.safetensors").items()}, strict=True)
    model.eval()
    data = load_images(PACK).subset(300, 100, seed=0)
    x = torch.from_numpy(data.test_x).float()
    x = ((x - torch.tensor(norm["mean"]) * 255) / (torch.tensor(norm["std"]) * 255))
    with torch.no_grad():
        pred = model(x.permute(0, 3, 1, 2).contiguous()).argmax(-1).numpy()
    acc = 100.0 * np.mean(pred == data.test_y)
    reported = json.loads((out / "summary.json").read_text())["last_test_acc"]
    assert abs(acc - reported) <= 0.2  # at most 2 of 1,000 borderline images differ


def _kill_after_first_epoch(args, env, out):
    """Start a run, SIGKILL it once epoch 1's checkpoint is complete, return the epochs it
    had finished."""
    with subprocess.Popen([sys.executable, "-m", "archc", *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        deadline = time.time() + 300
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= 1:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == -signal.SIGKILL, output
    return len(metrics.read_text().splitlines())


def _same_run(a, b):
    from archc.backends import weights
    wa, wb = weights.load(a / "model.safetensors"), weights.load(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    keys = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc")
    ma = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [{k: h[k] for k in keys} for h in ma] == [{k: h[k] for k in keys} for h in mb]


@pytest.mark.slow   # training runs, killed and resumed in new processes
@needs_pack
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_killed_run_resumes_exactly(tmp_path, env, backend, capsys):
    """Kill a run after its first epoch, resume it in a new process: final weights and every
    metric equal those of an uninterrupted run, bit for bit (dropout on, augmentation on).
    The uninterrupted run and the damaged-checkpoint check run in this process."""
    common = ["train", *SMALL, "-D", "dropout=0.3", "--data", PACK, "--train-per-class", "20",
              "--test-per-class", "5", "--epochs", "3", "--batch-size", "40",
              "--backend", backend]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    rc, out, err = archc_main([*common, "--out", str(whole), "--no-progress"], capsys)
    assert rc == 0, out + err
    done = _kill_after_first_epoch([*common, "--out", str(broken)], env, broken)
    assert 1 <= done < 3
    proc = archc_cli([*common, "--out", str(broken), "--resume"], env)
    assert f"resuming {broken} after epoch" in proc.stdout
    _same_run(whole, broken)

    # a damaged checkpoint is a clear error, not a traceback and not a silent restart
    if backend == "jax":  # cut every file of the newest checkpoint's state in half
        for dirpath, _, files in os.walk(whole / "checkpoints" / "3" / "state"):
            for f in files:
                p = os.path.join(dirpath, f)
                with open(p, "r+b") as fh:
                    fh.truncate(max(os.path.getsize(p) // 2, 1))
    else:
        ck = whole / "checkpoints" / "epoch-0003.safetensors"
        ck.write_bytes(ck.read_bytes()[:1000])
    rc, out, err = archc_main([*common, "--out", str(whole), "--resume"], capsys)
    assert rc == 2, out + err
    assert "cannot be read" in err and "damaged or incomplete" in err
    assert "Traceback" not in err and "internal error" not in err


# ---- errors ---------------------------------------------------------------------------------
@pytest.mark.slow   # the module's 300-step training run
@needs_pack
def test_resume_errors(trained, tmp_path, capsys):
    out, _ = trained
    base = ["train", *SMALL, "--data", PACK, "--train-per-class", "300", "--test-per-class",
            "100", "--epochs", "5", "--batch-size", "50", "--out", str(out)]
    rc, _, err = archc_main(base, capsys)
    assert rc == 2 and "already holds a training run" in err
    assert "--resume" in err and "Traceback" not in err
    rc, _, err = archc_main([*base, "--resume", "--lr", "0.05"], capsys)
    assert rc == 2 and "was trained with other settings" in err
    assert "recipe.lr: checkpoint has 0.1, this run has 0.05" in err
    rc, stdout, err = archc_main([*base, "--resume"], capsys)  # a finished run: the summary
    assert rc == 0, err
    assert "has finished all 5 epochs" in stdout and "test accuracy    best" in stdout
    rc, _, err = archc_main([*base[:-1], str(tmp_path / "none"), "--resume"], capsys)
    assert rc == 2 and "holds no run to resume" in err
    rc, _, err = archc_main(["train", "sqnxt", "-D", "classes=7", "--data", PACK, "--out",
                             str(tmp_path / "c7")], capsys)
    assert rc == 2 and "outputs 7x1x1, but the data set has 10 classes" in err
    assert not (tmp_path / "c7").exists()


def test_progress_bar(monkeypatch, capsys):
    """On a terminal: a per-epoch bar with loss, accuracy and images/s; elsewhere: none."""
    from archc.training.run_dir import Progress
    assert not Progress(1, 3, 10, 32, enabled=True).active  # pytest's stderr is no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not Progress(1, 3, 10, 32, enabled=False).active
    bar = Progress(2, 3, 10, 32, enabled=True)
    bar.update(5, loss=11.5, correct=40, count=160)
    bar.close()
    err = capsys.readouterr().err
    assert "epoch 2/3" in err and "loss 0.0719" in err and "acc 25.00%" in err
    assert "img/s" in err


def test_missing_training_dependencies_are_a_clear_error(monkeypatch, capsys):
    import importlib.util

    from archc._cli import main
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tqdm", "torch") else real(name, *a))
    assert main(["train", "sqnxt", "--data", "x", "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert "needs packages that are not installed: tqdm, torch" in err
    assert "pip install 'archc[train-torch]'" in err


@pytest.mark.slow   # a training run in a new process
def test_torch_training_needs_no_jax(tmp_path):
    """`archc train --backend torch` runs with jax, flax, optax and orbax unimportable."""
    script = (
        "import sys\n"
        "for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'orbax.checkpoint'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np\n"
        "import archc\n"
        "from archc.training.data import ImageData\n"
        "from archc.training import torch_loop\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)\n"
        "y = np.arange(40) % 10\n"
        "data = ImageData(x, y, x[:20], y[:20], tuple('0123456789'), 'synthetic')\n"
        "net = archc.load('sqnxt', stages=[1, 1, 1, 1], width=0.25)\n"
        "r = archc.Recipe(epochs=1, batch_size=20)\n"
        "s = torch_loop.train(net, data, r, sys.argv[1], progress=False, log=lambda *a: None)\n"
        "assert 'jax' not in sys.modules or sys.modules['jax'] is None\n"
        "print('ok', s['epochs'])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok 1")


def test_curves_are_drawn_at_the_end_and_at_most_every_interval(tmp_path, monkeypatch):
    """metrics.jsonl after every epoch; curves.png only after the last epoch or once
    PLOT_EVERY_S has passed since the last drawing."""
    from archc.training import run_dir as R
    run = R.RunDir(str(tmp_path / "run"), {"network": "N", "backend": "jax"}, False)
    h = [{"epoch": 1, "train_loss": 2.0, "test_loss": 2.1, "train_acc": 10.0, "test_acc": 11.0}]
    run.write_metrics(h, last=False)
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "curves.png").exists()
    clock = time.monotonic() + R.PLOT_EVERY_S + 1
    monkeypatch.setattr(R.time, "monotonic", lambda: clock)
    run.write_metrics(h, last=False)
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "run" / "curves.png").unlink()
    run.write_metrics(h * 2, last=False)     # just drawn: not again
    assert not (tmp_path / "run" / "curves.png").exists()
    run.write_metrics(h * 2, last=True)      # the last epoch: always
    assert (tmp_path / "run" / "curves.png").exists()
