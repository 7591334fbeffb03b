"""The JAX backend in train mode (split from test_jax_backend.py, so that pytest-xdist can
put the two halves on two workers): batch statistics against torch, archc train's own jitted
SGD step on the SqueezeNext family, and runs of identical blocks scanned."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
from flax import nnx  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from archc.backends import jax_backend as jb  # noqa: E402
from archc.backends import weights as W  # noqa: E402
from archc.compiler import load  # noqa: E402

from test_jax_backend import SQNXT_VARIANTS, _forward_both, _id, _input, _pair  # noqa: E402

pytestmark = pytest.mark.slow   # every test compiles a whole network's train step


@pytest.mark.parametrize("case", SQNXT_VARIANTS[:1] + SQNXT_VARIANTS[3:4] + SQNXT_VARIANTS[6:7],
                         ids=_id)
def test_train_step_updates_batchnorm_statistics_like_torch(case):
    name, params = case
    net = load(name, dropout=0.0, **params) if "dropout" in load(name).params else load(name)
    tm, jm = _pair(net)
    tm.train()
    jm.train()
    yt, yj = _forward_both(tm, jm, _input(net, n=8))
    # Train mode normalises with batch statistics of maps as small as 4x4, which amplifies
    # float32 rounding differences through 20+ blocks; 1e-3 of the output scale.
    np.testing.assert_allclose(yj, yt, rtol=0, atol=1e-3 * np.abs(yt).max())
    back = W.jax_to_torch(net, nnx.to_pure_dict(nnx.state(jm)))
    ref = W.state_dict_numpy(tm)
    stats = [k for k in back if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        # the same amplification reaches the statistics: an element near zero (a mean of
        # values of both signs) differs by float32 cancellation, so the absolute tolerance is
        # 1e-4 of the tensor's own scale (CI saw 1.45e-5 on a mean of 1e-3 in a tensor of 0.8)
        atol = 1e-4 * max(np.abs(ref[k]).max(), 1e-6)
        np.testing.assert_allclose(back[k], ref[k], rtol=1e-3, atol=atol, err_msg=k)


@pytest.mark.parametrize("name", ["sqnxt", "se_sqnxt", "shallow_sqnxt"])
def test_jitted_forward_and_sgd_train_step(name):
    """The SqueezeNext family through archc train's own jitted SGD-Nesterov step
    (training/jax_loop.Trainer), one block per stage to keep compilation short: the loss
    falls on a repeated batch, nearly every parameter moves, the jitted eval step runs."""
    from archc.training.data import ImageData
    from archc.training.jax_loop import Trainer
    from archc.training.recipe import Recipe
    net = load(name, width=0.5, stages=[1, 1, 1, 1])
    trainer = Trainer(net, Recipe(epochs=1, batch_size=8, lr=0.05, augment=False), 1, 8)
    rng = np.random.RandomState(0)
    images = jnp.asarray(rng.randint(0, 256, (8, 32, 32, 3)).astype(np.uint8))
    labels = jnp.arange(8, dtype=jnp.int32) % 10
    order = jnp.arange(8)
    state = jax.device_put(trainer.init_state)
    before = jax.tree.map(np.asarray, state["params"])
    losses = []
    for _ in range(3):
        state, acc = trainer.train_step(state, trainer.zeros(), trainer.rest, images, labels,
                                        order)
        losses.append(float(acc[0]) / 8)
    after = jax.tree.map(np.asarray, state["params"])
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]  # three steps on one batch: the loss goes down
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after))
    # an SE unit behind a dead ReLU can legitimately get zero gradient; nearly all move
    assert sum(changed) >= 0.9 * len(changed), (sum(changed), len(changed))
    x, y = np.asarray(images), np.asarray(labels)
    test = trainer.put_test(ImageData(x, y, x, y, tuple("0123456789"), "synthetic"))
    loss_sum, correct, count = trainer.evaluate(state, test)
    assert count == 8 and np.isfinite(loss_sum) and 0 <= correct <= 8
    # fixed shapes: each step compiled once, however often it ran
    assert trainer.train_step._cache_size() == 1 and trainer.eval_step._cache_size() == 1


def test_scanned_runs_of_identical_blocks_equal_the_unrolled_module():
    """jax_backend.set_scan: a stage's run of identical blocks (here blocks 2-3 of stages 2
    and 3) becomes one lax.scan; outputs, updated batch statistics and gradients equal those
    of the unrolled module, and NNX paths are unchanged; off again restores the loop."""
    net = load("sqnxt", width=0.25, stages=[1, 3, 3, 1])
    model = jb.compile_module(net)
    model.train()
    graphdef, state = nnx.split(model)
    x = jnp.asarray(_input(net, n=4).transpose(0, 2, 3, 1))

    def run(state):
        m = nnx.merge(graphdef, state)
        y = m(x)
        return jnp.sum(y * y), nnx.state(m, nnx.BatchStat)

    def scans(fn, *args):   # a new function each time: jax caches traces by function
        return str(jax.make_jaxpr(lambda *a: fn(*a))(*args)).count("scan[")

    grad = jax.jit(jax.grad(run, has_aux=True))
    g0, s0 = grad(state)
    assert scans(run, state) == 0
    jb.set_scan(model, True)
    assert scans(run, state) == 2
    g1, s1 = jax.jit(jax.grad(run, has_aux=True))(state)
    for a, b in ((g0, g1), (s0, s1)):
        la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
        assert [p for p, _ in la] == [p for p, _ in lb]
        # absolute tolerance from the whole tree's scale: a conv bias before batch norm has a
        # true gradient of 0, and both programs give float32 noise there (1e-5, seen on CI)
        atol = 1e-5 * max(float(np.abs(np.asarray(u)).max()) for _, u in la)
        for (p, u), (_, v) in zip(la, lb):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=atol,
                                       err_msg=str(p))
    jb.set_scan(model, False)
    assert scans(run, state) == 0


def test_drop_path_draws_a_new_mask_every_step():
    """A network whose only random layer is drop_path (stochastic depth) gets a fresh mask
    each step, as one with dropout does: the same batch through the same (barely moved)
    parameters gives a different loss on the next step. With the mask frozen (the step's RNG
    state not reseeded) both losses were equal."""
    import archc
    from archc.training.jax_loop import Trainer
    from archc.training.recipe import Recipe
    net = archc.load_source("network T() {\n    x = input(3, 8, 8)\n"
                            "    y = x -> c: conv(8, kernel=3, padding=1)\n"
                            "    z = add: add(sd: drop_path(y, 0.5), y)\n"
                            "    return z -> global_avgpool -> fc: linear(10)\n}\n")
    trainer = Trainer(net, Recipe(epochs=1, batch_size=16, lr=1e-9, augment=False), 1, 16)
    rng = np.random.RandomState(0)
    images = jnp.asarray(rng.randint(0, 256, (16, 8, 8, 3)).astype(np.uint8))
    labels = jnp.arange(16, dtype=jnp.int32) % 10
    state = jax.device_put(trainer.init_state)
    losses = []
    for _ in range(3):
        state, acc = trainer.train_step(state, trainer.zeros(), trainer.rest, images, labels,
                                        jnp.arange(16))
        losses.append(float(acc[0]))
    assert len({round(v, 4) for v in losses}) == 3, losses
