"""The JAX training loop: `archc train` with --backend jax (the default).

Design (what makes it fast, and what makes --resume exact):
  - The whole data set sits on the device as uint8. Each epoch's order is a permutation drawn
    on the device; the jitted train step gathers its batch with a dynamic slice of that
    permutation, crops (4-pixel zero padding) and flips it, and normalises it, so the loop
    does no per-batch host work and no host-to-device copies. The normalisation's mean and
    std (norm.py: the training split's, recorded in run.json) are constants of the steps.
  - One jitted train step over plain pytrees (the NNX module is split once into a graph
    definition and pure-dict states; `nnx.merge` runs only while tracing), with the state
    donated; one jitted eval step. Shapes are fixed (the last partial batch of an epoch is
    dropped, the test set is padded and masked), so nothing recompiles after the first call.
  - bf16: parameters are cast to bf16 inside the step, the fp32 master weights, optimizer
    state and batch-norm statistics stay fp32, the loss is computed in fp32.
  - Randomness is a pure function of (seed, step): the epoch's permutation from
    fold_in(seed, epoch), augmentation and dropout keys from fold_in(seed, step). A run that
    resumes from a checkpoint therefore draws exactly what the uninterrupted run drew.
  - Checkpoints: Orbax, after every epoch, written to a temporary folder and renamed when
    complete; the last two are kept.
"""
from __future__ import annotations

import os

import numpy as np
from archc.compiler import Network, ops

from archc.backends import jax_backend, weights
from . import first_output, guard
from .guard import use_compilation_cache
from .data import ImageData
from .distributed import Placement
from .norm import CIFAR10, Normalization, training_stats
from .recipe import (
    Recipe,
    lr_table,
    schedule,
    steps_per_epoch,
)
from .run_dir import (
    COMPILE_NOTE,
    KEEP_CHECKPOINTS,
    Loop,
    RunDir,
    check_checkpoint,
    check_classes,
    corrupt_checkpoint,
    fingerprint,
    finish,
    no_checkpoint,
    run_epochs,
)


def optimizer(recipe: Recipe, spe: int):
    """SGD, Nesterov momentum, weight decay added to the gradient as torch.optim.SGD does
    (to every parameter, or with recipe.weight_decay_all off to conv and linear kernels)."""
    import jax.numpy as jnp
    import optax
    return optax.chain(
        optax.add_decayed_weights(recipe.weight_decay,
                                  mask=None if recipe.weight_decay_all else kernels_only),
        optax.sgd(schedule(recipe, spe, xp=jnp), momentum=recipe.momentum or None,
                  nesterov=recipe.nesterov and recipe.momentum > 0))


def kernels_only(params):
    """True for conv and linear kernels (pure-dict leaves named 'kernel'), else False."""
    import jax
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def augment(x, key):
    """Random crop (4-pixel zero padding) and horizontal flip of a uint8 NHWC batch."""
    import jax
    import jax.numpy as jnp
    n, h, w, c = x.shape
    k_crop, k_flip = jax.random.split(key)
    padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = jax.random.randint(k_crop, (n, 2), 0, 9)
    crop = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(
        padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (n,))
    return jnp.where(flip[:, None, None, None], crop[:, :, ::-1, :], crop)


def normalize(x, dtype, norm: Normalization):
    """uint8 NHWC -> (x - 255 mean) / (255 std) per channel, in `dtype` (computed in fp32).
    Inside a jitted function mean and std are constants of the program."""
    import jax.numpy as jnp
    mean, std = norm.scaled()
    inv_std = np.float32(1.0) / std
    return ((x.astype(jnp.float32) - mean) * inv_std).astype(dtype)


class Trainer:
    """Compiled train and eval steps for one network and recipe, over pure-dict states.

      scan       apply runs of identical blocks with one lax.scan (backends/_jax_scan.py)

    Hooks for finetuning (compression), all optional:
      tx         the optax transformation to use instead of `optimizer(recipe, spe)`
      start      {"params", "stats"} pure dicts to start from instead of the initialisation
      init       torch-layout {key: array} weights to start from (--init-from)
      tap        build the module in tap mode with this fn(layer_name, value) -> value
      transform  fn(params, x) -> (params, x), applied to the parameters and the normalised
                 input before every forward pass (train and eval)
    Input:
      norm            the normalisation's mean and std (norm.py; train() passes the run's).
                      The default, norm.CIFAR10, is the fallback of runs that recorded none
    Scale-out (training/distributed.py, stream.py):
      place           the device mesh (default: one device)
      device_augment  False where the host already augmented (streamed ImageNet images)
    """

    def __init__(self, net: Network, recipe: Recipe, spe: int, n_test: int, *, scan=False,
                 tx=None, start: dict | None = None, init: dict | None = None, tap=None,
                 transform=None,
                 place: Placement | None = None, device_augment: bool = True,
                 norm: Normalization = CIFAR10):
        import jax
        import jax.numpy as jnp
        import optax
        from flax import nnx

        self.recipe, self.spe, self.norm = recipe, spe, norm
        self.place = place = place or Placement(1)  # the devices (distributed.py)
        self.eval_batch = max(1, min(recipe.eval_batch_size, n_test))
        # dropout and drop_path draw a new mask each step (the registry's "dropout" category)
        self.has_dropout = any(ops.get(net.node(n)["op"]).category == "dropout"
                               for n in net.layers())
        # the generated init_weights draws initial values on the host: building the module
        # is cheap even where `start` replaces them
        model = jax_backend.compile_module(net, seed=recipe.seed, tap=tap)
        if scan:   # runs of identical blocks as one lax.scan (backends/_jax_scan.py)
            jax_backend.set_scan(model, True)
        if init is not None:   # shapes checked against the module as they load
            weights.load_into_jax(model, net, init)
        model.train()
        self.g_train, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        model.eval()
        self.g_eval = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
        self.rest = nnx.to_pure_dict(rest)
        self.tx = optimizer(recipe, spe) if tx is None else tx
        params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
        if start is not None:
            params, stats = start["params"], start["stats"]
        # jitted: eager jnp calls would each compile a tiny XLA program (0.2-0.4 s apiece here)
        state = {"params": params, "stats": stats, "opt": jax.jit(self.tx.init)(params),
                 "step": np.zeros((), np.int32)}
        # kept on the host: the train step donates (deletes) the device buffers it is given
        self.init_state = jax.tree.map(np.asarray, state)
        self.lrs = lr_table(recipe, spe)
        # the closures below see plain values, not self: what the jitted steps depend on
        dtype = jnp.bfloat16 if recipe.precision == "bf16" else jnp.float32
        g_train, g_eval, tx, has_dropout = self.g_train, self.g_eval, self.tx, self.has_dropout
        bsz, smoothing = recipe.batch_size, recipe.label_smoothing
        do_augment = recipe.augment and device_augment  # False: the host augmented (stream.py)
        k_order, base = jax.random.split(jax.random.key(recipe.seed))
        transform = transform or (lambda params, x: (params, x))

        def cast(tree):
            return jax.tree.map(lambda a: a.astype(dtype) if a.dtype == jnp.float32 else a, tree)

        def loss_and_logits(logits, y, smoothing=0.0):
            """Per-image cross-entropy in fp32 (label smoothing for training only)."""
            logits = logits.astype(jnp.float32)
            target = jax.nn.one_hot(y, logits.shape[-1])
            if smoothing:
                target = optax.smooth_labels(target, smoothing)
            return optax.softmax_cross_entropy(logits, target), logits

        def train_step(state, acc, rest, images, labels, order):
            idx = jax.lax.dynamic_slice(order, ((state["step"] % spe) * bsz,), (bsz,))
            return train_on(state, acc, rest, images[idx], labels[idx])

        def train_on(state, acc, rest, x, y):
            """One step on a batch (the streaming loop's entry point, stream_loop.py)."""
            step = state["step"]
            x, y = place.batch(x), place.batch(y)
            k_aug, k_drop = jax.random.split(jax.random.fold_in(base, step))
            if do_augment:
                x = augment(x, k_aug)
            x = normalize(x, dtype, norm)

            def loss_fn(params, stats, rest):
                params, xt = transform(params, x)
                model = nnx.merge(g_train, cast(params), stats, rest)
                if has_dropout:
                    nnx.reseed(model, dropout=k_drop)
                losses, logits = loss_and_logits(first_output(model(xt)), y, smoothing)
                new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
                return losses.mean(), (losses, logits, new_stats)

            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
            (_, (losses, logits, new_stats)), grads = grad_fn(state["params"], state["stats"],
                                                               rest)
            updates, opt = tx.update(grads, state["opt"], state["params"])
            new = {"params": optax.apply_updates(state["params"], updates), "stats": new_stats,
                   "opt": opt, "step": step + 1}
            correct = jnp.sum(jnp.argmax(logits, -1) == y)
            acc = (acc[0] + jnp.sum(losses), acc[1] + correct, acc[2] + bsz)
            return new, acc

        eb, test_flip = self.eval_batch, recipe.test_flip

        def eval_step(state, acc, rest, images, labels, mask, i):
            return eval_on(state, acc, rest, jax.lax.dynamic_slice_in_dim(images, i * eb, eb),
                           jax.lax.dynamic_slice_in_dim(labels, i * eb, eb),
                           jax.lax.dynamic_slice_in_dim(mask, i * eb, eb))

        def eval_on(state, acc, rest, x, y, m):
            x, y, m = place.batch(x), place.batch(y), place.batch(m)
            params, x = transform(state["params"], normalize(x, dtype, norm))
            model = nnx.merge(g_eval, cast(params), state["stats"], rest)
            if test_flip:   # the image and its mirror in one batch, logits averaged
                both = first_output(model(jnp.concatenate([x, x[:, :, ::-1]])))
                both = both.astype(jnp.float32)
                logits = 0.5 * (both[:eb] + both[eb:])
            else:
                logits = first_output(model(x))
            losses, logits = loss_and_logits(logits, y)
            correct = jnp.sum((jnp.argmax(logits, -1) == y) & m)
            return (acc[0] + jnp.sum(losses * m), acc[1] + correct, acc[2] + jnp.sum(m))

        rep = place.outputs()  # on several devices every output is replicated
        self.train_step = jax.jit(train_step, donate_argnums=(0, 1), **rep)
        self.eval_step = jax.jit(eval_step, donate_argnums=(1,), **rep)
        self.train_on = jax.jit(train_on, donate_argnums=(0, 1), **rep)
        self.eval_on = jax.jit(eval_on, donate_argnums=(1,), **rep)
        self.order = jax.jit(lambda epoch, n: jax.random.permutation(
            jax.random.fold_in(k_order, epoch), n), static_argnums=1, **rep)

    def zeros(self):
        return self.place.put((np.zeros((), np.float32), np.zeros((), np.int32),
                               np.zeros((), np.int32)))

    def put_test(self, data: ImageData):
        """The test split on the device, padded to whole eval batches, with a validity mask."""
        n, b = len(data.test_y), self.eval_batch
        batches = -(-n // b)
        pad = batches * b - n
        x = np.concatenate([data.test_x, np.zeros((pad, *data.test_x.shape[1:]), np.uint8)])
        y = np.concatenate([data.test_y, np.zeros(pad, np.int32)])
        mask = np.arange(batches * b) < n
        return (*self.place.put((x, y, mask)), batches)

    def evaluate(self, state, test) -> tuple:
        x, y, mask, batches = test
        acc = self.zeros()
        for i in range(batches):
            acc = self.eval_step(state, acc, self.rest, x, y, mask, i)
        return tuple(float(a) for a in acc)


def _flat(tree) -> dict:
    """{"params/conv_1/kernel": host array, ...} of a state pytree."""
    import jax
    return {jax.tree_util.keystr(path, simple=True, separator="/"): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


class Checkpoints:
    """Orbax checkpoints of the training state, one per finished epoch, each with the
    SHA-256 of every array in its metadata (verified on resume). A save that fails for want
    of space (or permission) is one ArchError; its partial folder is removed."""

    def __init__(self, directory: str):
        import orbax.checkpoint as ocp
        self.ocp = ocp
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=KEEP_CHECKPOINTS, create=True, enable_async_checkpointing=False,
                cleanup_tmp_directories=True))

    def save(self, epoch: int, state: dict, meta: dict) -> None:
        import jax
        ocp = self.ocp
        host = jax.tree.map(np.asarray, state)  # what is written is what is hashed
        meta = {**meta, "checksums": guard.checksums(_flat(host))}
        try:
            with guard.quiet_orbax():
                self.manager.save(epoch, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)))
                self.manager.wait_until_finished()
        except Exception as exc:
            reason = guard.storage_reason(exc)
            if reason is None:
                raise
            self._remove_partial(epoch)
            raise guard.storage_error(os.path.join(self.directory, str(epoch)), reason) \
                from None

    def _remove_partial(self, epoch: int) -> None:
        import shutil
        for name in os.listdir(self.directory):
            if name.startswith(f"{epoch}.") and "tmp" in name:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, template: dict, fp: dict) -> tuple[dict, dict]:
        import jax
        ocp = self.ocp
        epoch = self.latest()
        if epoch is None:
            raise no_checkpoint(self.directory)
        where = os.path.join(self.directory, str(epoch))
        try:
            with guard.quiet_orbax():
                meta = self.manager.restore(epoch, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore()))["meta"]
        except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt checkpoint
            raise corrupt_checkpoint(where, exc) from None
        check_checkpoint(meta, fp, where, epoch)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            with guard.quiet_orbax():
                state = self.manager.restore(epoch, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as exc:  # noqa: BLE001
            raise corrupt_checkpoint(where, exc) from None
        guard.verify(_flat(state), meta.get("checksums"), where)
        return state, meta

    def close(self) -> None:
        try:
            with guard.quiet_orbax():
                self.manager.close()
        except Exception as exc:
            if guard.storage_reason(exc) is None:
                raise


class JaxLoop(Loop):
    """The Loop protocol of run_dir.run_epochs over a Trainer and device-resident data."""
    first_step_note = COMPILE_NOTE

    def __init__(self, trainer: Trainer, ckpt: Checkpoints, state: dict, data: ImageData):
        self.trainer, self.ckpt, self.n = trainer, ckpt, len(data.train_y)
        put = trainer.place.put
        self.state = put(state)
        self.images, self.labels = put((data.train_x, data.train_y))
        self.test = trainer.put_test(data)

    def begin_epoch(self, epoch: int) -> None:
        self.order = self.trainer.order(epoch, self.n)
        self.acc = self.trainer.zeros()

    def step(self) -> None:
        self.state, self.acc = self.trainer.train_step(self.state, self.acc, self.trainer.rest,
                                                       self.images, self.labels, self.order)

    def train_metrics(self):
        return tuple(float(a) for a in self.acc)

    def evaluate(self):
        return self.trainer.evaluate(self.state, self.test)

    def lr(self, step: int) -> float:
        return float(self.trainer.lrs[step])

    def save(self, epoch: int, meta: dict) -> None:
        self.ckpt.save(epoch, self.trainer.place.host(self.state), meta)


def train(net: Network, data: ImageData, recipe: Recipe, out: str, resume: bool = False,
          progress: bool = True, log=print, devices: int | None = None,
          loader_workers: int = 0, norm: Normalization | None = None, **hooks) -> dict:
    """Train `net` on `data` with `recipe`; write the run folder `out` (see run_dir.py).
    devices: how many of each process's devices to use, data parallel (default: all).
    data: an ImageData (in device memory) or a stream.FolderSet (streamed by Grain, with
    `loader_workers` decoding processes).

    norm: the input normalisation of a new run (compression's finetuning passes the trained
    run's); by default that of `data`'s training split (norm.training_stats). Either is
    recorded in run.json; a resumed run uses what its run.json recorded.

    hooks: Trainer's finetuning hooks (tx, start, tap, transform)."""
    from .stream import FolderSet
    from .stream_loop import StreamLoop
    import jax
    from flax import nnx

    check_classes(net, data)
    place = Placement(devices)
    place.check_batch(recipe.batch_size)
    use_compilation_cache(log)
    fp = fingerprint(net, data, recipe, "jax")
    streamed = isinstance(data, FolderSet)
    run = RunDir(out, fp, resume, primary=jax.process_index() == 0,
                 norm=norm or (lambda: stats_of(data, net.input_shape[-1], log)))
    spe = steps_per_epoch(recipe, len(data.train_y))
    trainer = Trainer(net, recipe, spe, len(data.test_y), place=place,
                      device_augment=not (streamed and data.mode == "imagenet"),
                      norm=run.norm, **hooks)
    ckpt = Checkpoints(run.checkpoints)
    try:
        state, history, start = trainer.init_state, [], 0
        if run.resume:
            state, meta = ckpt.restore(state, fp)
            history, start = meta["history"], meta["epoch"]
            log(f"resuming {out} after epoch {start} of {recipe.epochs}")
        elif resume:
            log(f"{out} has no finished epoch yet: starting it from the beginning")
        loop = (StreamLoop(trainer, ckpt, state, data, net.input_shape[-1], loader_workers)
                if streamed else JaxLoop(trainer, ckpt, state, data))
        log(f"training {net.name} on {data.describe()}: {spe} steps of {recipe.batch_size} "
            f"per epoch, {recipe.precision}, {place.count} {jax.devices()[0].platform} "
            f"device{'s' if place.count > 1 else ''}")
        log(f"normalising inputs with {run.norm.describe()}")
        history = run_epochs(run, loop, recipe, spe, history, start, progress, log)
        state = place.host(loop.state)
        final = nnx.merge(trainer.g_eval, state["params"], state["stats"], trainer.rest)
        if run.primary:
            weights.save(run.file("model.safetensors"),
                         weights.jax_to_torch(net, nnx.to_pure_dict(nnx.state(final))),
                         metadata=run.model_metadata())
        result = finish(run, net, history, log)
        result["state"] = jax.tree.map(np.asarray, {k: state[k] for k in ("params", "stats")})
        return result
    finally:
        ckpt.close()


def stats_of(data, size: int, log=print) -> Normalization:
    """The training split's normalisation (norm.training_stats), saying what a streamed data
    set's sample costs before decoding it."""
    from .norm import SAMPLE_IMAGES
    from .stream import FolderSet
    if isinstance(data, FolderSet):
        log(f"normalisation: decoding {min(len(data.train_y), SAMPLE_IMAGES):,} of "
            f"{len(data.train_y):,} training images for their mean and std")
    return training_stats(data, size)
