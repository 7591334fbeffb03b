"""The JAX loop over a streamed data set (stream.py): the Loop protocol of run_dir.run_epochs
with batches from Grain instead of a device-resident array. The jitted steps are the
in-memory loop's (Trainer.train_on / eval_on), the epoch order is Trainer.order, so both
paths train the same way; in a multi-host run each process reads only its rows of every
global batch and jax.make_array_from_process_local_data assembles the global batch."""
from __future__ import annotations

import numpy as np

from . import stream
from .run_dir import COMPILE_NOTE, Loop


class StreamLoop(Loop):
    first_step_note = COMPILE_NOTE

    def __init__(self, trainer, ckpt, state: dict, data: stream.FolderSet, size: int,
                 workers: int = 0):
        import jax
        self.trainer, self.ckpt, self.data, self.size = trainer, ckpt, data, size
        self.place, self.workers = trainer.place, workers
        self.state = self.place.put(state)
        self.n = len(data.train_y)
        self.procs, self.proc = jax.process_count(), jax.process_index()
        self.local = trainer.recipe.batch_size // self.procs  # this process's rows of a batch

    def _global(self, local: np.ndarray):
        import jax
        if self.place.count == 1:
            return jax.device_put(local)
        return jax.make_array_from_process_local_data(self.place.sharded, local)

    def begin_epoch(self, epoch: int) -> None:
        t, d = self.trainer, self.data
        order = self.place.host(t.order(epoch, self.n))
        rows = order[:t.spe * t.recipe.batch_size].reshape(t.spe, t.recipe.batch_size)
        mine = rows[:, self.proc * self.local:(self.proc + 1) * self.local].reshape(-1)
        self.batches = stream.batches(mine, d.train_paths, d.train_y, d.mode, self.size,
                                      self.local, train=True, seed=t.recipe.seed, epoch=epoch,
                                      workers=self.workers)
        self.acc = t.zeros()

    def step(self) -> None:
        b = next(self.batches)
        self.state, self.acc = self.trainer.train_on(self.state, self.acc, self.trainer.rest,
                                                     self._global(b["x"]), self._global(b["y"]))

    def train_metrics(self):
        return tuple(float(a) for a in self.acc)

    def evaluate(self):
        """Every process reads each (whole) eval batch; the step shards it over the devices.
        The last batch is padded and masked, so shapes never change."""
        t, d = self.trainer, self.data
        self.batches.close()  # the epoch's batches are all taken: stop its workers
        eb, n = t.eval_batch, len(d.test_y)
        acc = t.zeros()
        it = stream.batches(np.arange(n), d.test_paths, d.test_y, d.mode, self.size, eb,
                            train=False, workers=self.workers)
        for b in it:
            k = len(b["y"])
            x = np.concatenate([b["x"], np.zeros((eb - k, *b["x"].shape[1:]), np.uint8)])
            y = np.concatenate([b["y"], np.zeros(eb - k, np.int32)])
            m = np.arange(eb) < k
            acc = t.eval_on(self.state, acc, t.rest, *self.place.put((x, y, m)))
        it.close()
        return tuple(float(a) for a in acc)

    def lr(self, step: int) -> float:
        return float(self.trainer.lrs[step])

    def save(self, epoch: int, meta: dict) -> None:
        self.ckpt.save(epoch, self.place.host(self.state), meta)
