"""The torch training loop: `archc train --backend torch`, the same recipe as jax_loop.py.

It exists to compare with the JAX loop, so it is made fair rather than naive: the data set
sits on the device as uint8, each batch is gathered, cropped, flipped and normalised there
(the same operations as jax_loop.augment / normalize, with the run's mean and std: norm.py),
the model runs channels_last, and
bf16 uses torch.autocast with fp32 master weights. The learning rate of every step is read
from recipe.lr_table, the optax schedule the JAX loop uses.

Randomness is seeded per epoch (data order, augmentation and dropout from (seed, epoch)), so
resuming at an epoch boundary draws what the uninterrupted run drew. Checkpoints are
safetensors files (weights, momentum buffers, and the run's metadata as JSON), written
atomically; the last two are kept.
"""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

from archc.compiler import ArchError, Network

from archc.backends import torch_backend, weights
from . import first_output, guard
from .data import ImageData
from .norm import CIFAR10, Normalization, training_stats
from .options import option
from .recipe import Recipe, lr_table, steps_per_epoch
from .run_dir import (COMPILE_NOTE, KEEP_CHECKPOINTS, Loop, RunDir, check_checkpoint, check_classes,
                      corrupt_checkpoint, finish, fingerprint, no_checkpoint, run_epochs)

_NAME = re.compile(r"epoch-(\d+)\.safetensors$")


def _seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2 ** 63)


def augment(x, gen):
    """Random crop (4-pixel zero padding) and horizontal flip of a uint8 NHWC batch."""
    import torch
    n, h, w, _ = x.shape
    padded = torch.nn.functional.pad(x, (0, 0, 4, 4, 4, 4))
    off = torch.randint(0, 9, (n, 2), generator=gen, device=x.device)
    rows = (off[:, 0, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (off[:, 1, None] + torch.arange(w, device=x.device))[:, None, :]
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    return padded[torch.arange(n, device=x.device)[:, None, None], rows, cols]


class TorchLoop(Loop):
    """The Loop protocol of run_dir.run_epochs in PyTorch (also timed by bench/train_speed.py).

    channels_last: NHWC memory (the default; on this project's CPU it measured 1.4x faster
    than NCHW for SqueezeNext-23, docs/benchmarks.md; on a GPU tensor-core convolutions want
    it); compile_mode: run the model through torch.compile with this mode ("default",
    "max-autotune", ...); norm: the normalisation's mean and std (train() passes the run's;
    the default, norm.CIFAR10, is the fallback of runs that recorded none)."""

    def __init__(self, net: Network, data: ImageData, recipe: Recipe, spe: int,
                 ckpt_dir: str | None = None, device=None, channels_last: bool = True,
                 compile_mode: str | None = None, norm: Normalization = CIFAR10,
                 init: dict | None = None):
        import torch
        self.torch, self.recipe, self.spe, self.ckpt_dir = torch, recipe, spe, ckpt_dir
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(recipe.seed)  # initialisation
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = torch_backend.compile_module(net)
        if init is not None:   # --init-from: torch-layout weights, checked (api.init_weights)
            try:
                self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                                            init.items()}, strict=True)
            except RuntimeError as err:
                raise ArchError(f"{option('init_from')}: the weights do not fit {net.name}: "
                                + str(err).split(":", 1)[-1].strip()[:300]) from None
        self.model = self.model.to(self.device).to(memory_format=self.memory_format)
        self.forward = self.model
        if compile_mode:
            self.first_step_note = COMPILE_NOTE
            self.forward = torch.compile(self.model) if compile_mode == "default" else \
                torch.compile(self.model, mode=compile_mode)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=recipe.lr,
                                   momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                                   nesterov=recipe.nesterov and recipe.momentum > 0)
        self.lrs = lr_table(recipe, spe)
        self.images = torch.from_numpy(data.train_x).to(self.device)
        self.labels = torch.from_numpy(data.train_y).long().to(self.device)
        self.test_x = torch.from_numpy(data.test_x).to(self.device)
        self.test_y = torch.from_numpy(data.test_y).long().to(self.device)
        mean, std = norm.scaled()
        self.mean = torch.from_numpy(mean).to(self.device)
        self.std = torch.from_numpy(std).to(self.device)
        self.autocast = recipe.precision == "bf16"
        self.step_count = 0

    def _input(self, x_u8):
        """uint8 NHWC -> normalised float NCHW (channels_last memory is the permuted view)."""
        x = ((x_u8.float() - self.mean) / self.std).permute(0, 3, 1, 2)
        return x.contiguous(memory_format=self.memory_format)

    def _logits(self, x):
        torch = self.torch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return first_output(self.forward(x)).float()

    def begin_epoch(self, epoch: int) -> None:
        torch = self.torch
        self.step_count = (epoch - 1) * self.spe
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(_seed(self.recipe.seed, epoch, 1))
        torch.manual_seed(_seed(self.recipe.seed, epoch, 2))  # dropout
        self.order = torch.randperm(len(self.labels), generator=self.gen, device=self.device)
        self.i = 0
        self.acc = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.model.train()

    def step(self) -> None:
        torch, b = self.torch, self.recipe.batch_size
        idx = self.order[self.i * b:(self.i + 1) * b]
        x, y = self.images[idx], self.labels[idx]
        if self.recipe.augment:
            x = augment(x, self.gen)
        for group in self.opt.param_groups:
            group["lr"] = float(self.lrs[self.step_count])
        logits = self._logits(self._input(x))
        losses = torch.nn.functional.cross_entropy(
            logits, y, reduction="none", label_smoothing=self.recipe.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.opt.step()
        with torch.no_grad():
            correct = (logits.argmax(-1) == y).sum()
            self.acc[0] += losses.sum().double()
            self.acc[1] += correct
            self.acc[2] += b
        self.i += 1
        self.step_count += 1

    def train_metrics(self):
        return tuple(float(a) for a in self.acc.tolist())

    def evaluate(self):
        torch = self.torch
        self.model.eval()
        acc = torch.zeros(3, dtype=torch.float64, device=self.device)
        eb = self.recipe.eval_batch_size
        with torch.no_grad():
            for s in range(0, len(self.test_y), eb):
                x, y = self.test_x[s:s + eb], self.test_y[s:s + eb]
                logits = self._logits(self._input(x))
                losses = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                acc += torch.stack([losses.double(), (logits.argmax(-1) == y).sum().double(),
                                    torch.tensor(len(y), dtype=torch.float64,
                                                 device=self.device)])
        self.model.train()
        return tuple(float(a) for a in acc.tolist())

    def lr(self, step: int) -> float:
        return float(self.lrs[step])

    # ---- checkpoints: weights + momentum buffers + metadata in one safetensors file -------
    def _tensors(self) -> dict:
        out = {f"model.{k}": v for k, v in weights.state_dict_numpy(self.model).items()}
        for i, p in enumerate(self.opt.param_groups[0]["params"]):
            buf = self.opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                out[f"momentum.{i}"] = buf.detach().cpu().numpy().copy()
        return out

    def save(self, epoch: int, meta: dict) -> None:
        path = os.path.join(self.ckpt_dir, f"epoch-{epoch:04d}.safetensors")
        tensors = self._tensors()
        meta = {**meta, "checksums": guard.checksums(tensors)}  # verified on resume
        weights.save(path, tensors, metadata={"archc": json.dumps(meta)})
        for old in checkpoints(self.ckpt_dir)[:-KEEP_CHECKPOINTS]:
            os.unlink(old[1])

    def restore(self, fp: dict) -> dict:
        torch = self.torch
        found = checkpoints(self.ckpt_dir)
        if not found:
            raise no_checkpoint(self.ckpt_dir)
        epoch, path = found[-1]
        try:
            from safetensors import safe_open
            with safe_open(path, "np") as f:
                text = (f.metadata() or {}).get("archc")
                if text is None:
                    raise ValueError("it has no archc metadata (run, epoch, checksums): it was "
                                     "not written by archc train")
                meta = json.loads(text)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 - any failure to read is a corrupt checkpoint
            raise corrupt_checkpoint(path, exc) from None
        if not isinstance(meta, dict):
            raise corrupt_checkpoint(path, ValueError("its archc metadata is not an object"))
        check_checkpoint(meta, fp, path, epoch)
        guard.verify(tensors, meta.get("checksums"), path)
        model_sd = {k[len("model."):]: torch.from_numpy(v) for k, v in tensors.items()
                    if k.startswith("model.")}
        try:
            self.model.load_state_dict(model_sd, strict=True)
        except RuntimeError as exc:
            raise corrupt_checkpoint(path, exc) from None
        params = self.opt.param_groups[0]["params"]
        for i, p in enumerate(params):
            buf = tensors.get(f"momentum.{i}")
            if buf is not None:
                if tuple(buf.shape) != tuple(p.shape):
                    raise corrupt_checkpoint(
                        path, ValueError(f"momentum.{i} has shape {buf.shape}"))
                self.opt.state[p]["momentum_buffer"] = torch.from_numpy(buf).to(self.device)
        return meta

    def final_weights(self) -> dict:
        return weights.state_dict_numpy(self.model)


def checkpoints(folder: str) -> list[tuple[int, str]]:
    """(epoch, path) of the complete checkpoints in `folder`, oldest first."""
    found = []
    for path in glob.glob(os.path.join(folder, "epoch-*.safetensors")):
        m = _NAME.search(path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def train(net: Network, data: ImageData, recipe: Recipe, out: str, resume: bool = False,
          progress: bool = True, log=print, device=None, init: dict | None = None) -> dict:
    """Train `net` on `data` with `recipe` in PyTorch; write the run folder `out`."""
    check_classes(net, data)
    fp = fingerprint(net, data, recipe, "torch")
    run = RunDir(out, fp, resume, norm=lambda: training_stats(data))
    spe = steps_per_epoch(recipe, len(data.train_y))
    loop = TorchLoop(net, data, recipe, spe, run.checkpoints, device, norm=run.norm, init=init)
    history, start = [], 0
    if run.resume:
        meta = loop.restore(fp)
        history, start = meta["history"], meta["epoch"]
        log(f"resuming {out} after epoch {start} of {recipe.epochs}")
    elif resume:
        log(f"{out} has no finished epoch yet: starting it from the beginning")
    log(f"training {net.name} on {data.describe()}: {spe} steps of {recipe.batch_size} per "
        f"epoch, {recipe.precision}, torch on {loop.device}")
    log(f"normalising inputs with {run.norm.describe()}")
    history = run_epochs(run, loop, recipe, spe, history, start, progress, log)
    weights.save(run.file("model.safetensors"), loop.final_weights(),
                 metadata=run.model_metadata())
    result = finish(run, net, history, log)
    result["state"] = {k: np.asarray(v) for k, v in loop.final_weights().items()}
    return result
