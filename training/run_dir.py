"""A training run's folder and what it shows the user; shared by the JAX and torch loops.

    DIR/run.json        what was trained: network, parameters, data, recipe, backend, and
                        the input normalisation (norm.py: per-channel mean and std)
    DIR/metrics.jsonl   one JSON object per finished epoch (rewritten atomically each epoch)
    DIR/curves.png      loss and accuracy, train and test, by epoch (rewritten each epoch)
    DIR/checkpoints/    the last two epochs' training state (Orbax for JAX, safetensors for
                        torch): `--resume` continues from the newest
    DIR/model.safetensors  final weights in the torch module's layout (loads into both
                        backends); its metadata "normalization" repeats run.json's
    DIR/summary.json    the final summary, also printed

Every file is written to a temporary name and renamed, so a killed run leaves either the old
or the new version, never half of one.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

from archc.compiler import ArchError, Network
from archc.compiler.analysis import analyze

from .data import ImageData
from archc._files import write_atomic
from .norm import Normalization, recorded
from .options import option
from .recipe import Recipe


def fingerprint(net: Network, data: ImageData, recipe: Recipe, backend: str) -> dict:
    """What a checkpoint must agree with to be resumed (JSON-able)."""
    totals = analyze(net).totals
    return {
        "backend": backend,
        "network": net.name,
        "file": os.path.basename(net.file),
        "params": {k: _jsonable(v) for k, v in net.params.items()},
        "param_count": totals["params"],
        "data": {"source": os.path.basename(data.source.rstrip("/")),
                 "train": int(len(data.train_y)), "test": int(len(data.test_y)),
                 "classes": list(data.classes), "train_per_class": data.per_class[0],
                 "test_per_class": data.per_class[1],
                 **({"val_split": data.holdout_n} if data.holdout_n else {})},
        "recipe": recipe.to_dict(),
    }


def check_classes(net: Network, data: ImageData) -> None:
    """The network must end in one logit per class of the data set."""
    n = len(data.classes)
    if tuple(net.output_shape) != (n, 1, 1):
        raise ArchError(f"{net.name} outputs {'x'.join(map(str, net.output_shape))}, but the "
                        f"data set has {n} classes", hint=f"build it with -D classes={n}")


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def mismatch(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprints."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += mismatch(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint has {a!r}, this run has {b!r}")
    return out


def corrupt_checkpoint(where: str, exc: Exception) -> ArchError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArchError(f"checkpoint {where} cannot be read: {first[:300]}",
                     hint="it is damaged or incomplete; delete it to resume from the checkpoint "
                          f"before it, or start a new run with another {option('out')}")


def no_checkpoint(folder: str) -> ArchError:
    return ArchError(f"{option('resume', True)}: no checkpoint in {folder}",
                     hint="the run stopped before its first epoch ended; start it again without "
                          f"{option('resume', True)}, in a new {option('out')}")


def check_checkpoint(meta: dict, fp: dict, where: str, epoch: int) -> None:
    """A checkpoint's metadata must belong to this run (fingerprint) and to `epoch`."""
    diff = mismatch(meta.get("fingerprint", {}), fp)
    if diff:
        raise ArchError(f"checkpoint {where} belongs to another run:\n  " + "\n  ".join(diff),
                        hint="resume with the settings it was made with, or start a new run "
                             f"with another {option('out')}")
    if meta.get("epoch") != epoch:
        raise corrupt_checkpoint(where, ValueError(f"its metadata says epoch {meta.get('epoch')}"))


def saved_run(out: str) -> dict | None:
    """The run.json of the run folder `out` (None if there is none)."""
    path = os.path.join(out, "run.json")
    if not os.path.isfile(path):
        return None
    from archc._checks import run_json
    try:
        return run_json(path)
    except ArchError as err:
        err.hint = f"the run folder is damaged; start a new run with another {option('out')}"
        raise


def has_progress(path: str) -> bool:
    """Whether the run folder holds a finished epoch: metrics or a complete checkpoint
    (temporary files of a killed save do not count)."""
    if os.path.exists(os.path.join(path, "metrics.jsonl")):
        return True
    try:
        entries = os.listdir(os.path.join(path, "checkpoints"))
    except OSError:
        return False
    return any(not e.startswith(".") and "tmp" not in e for e in entries)


def check_folder(path: str, resume: bool) -> tuple[dict | None, bool]:
    """(run.json, fresh) of the run folder `path`, or why a run cannot start there: --resume
    and no run, or a run with progress and no --resume. `fresh`: a run.json but no finished
    epoch (a run killed before its first epoch ended). Cheap (no data, no JAX): archc.train
    calls it first, so these mistakes are reported at once."""
    saved = saved_run(path)
    fresh = saved is not None and not has_progress(path)
    if resume and saved is None:
        raise ArchError(f"{option('resume', True)}: {path} holds no run to resume (no run.json)",
                        hint=f"start the run without {option('resume', True)} first")
    if not resume and saved is not None and not fresh:
        raise ArchError(f"{path} already holds a training run",
                        hint=f"pass {option('resume', True)} to continue it, or choose another "
                             f"{option('out')}")
    return saved, fresh


def settings(run: dict) -> dict:
    """What of a run.json a resumed run must agree with: all but the normalisation."""
    return {k: v for k, v in run.items() if k != "normalization"}


class RunDir:
    """The output folder: guards against overwriting a run, holds metrics and plots.

    A run killed before its first epoch ended has nothing to lose: `--resume` starts it from
    the beginning, and so does a new run in the same folder.

    norm: the input normalisation of a new run (a Normalization, or a function computing it,
    called only when needed), recorded in run.json; `self.norm` is the one to train with."""

    def __init__(self, path: str, fp: dict, resume: bool, primary: bool = True,
                 norm=None):
        self.primary = primary  # False: another process of a multi-host run writes the files
        self.path = os.path.abspath(path)
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self.fp = fp
        self._plotted_at = time.monotonic()   # the first curves after PLOT_EVERY_S or at the end
        saved, fresh = check_folder(self.path, resume)
        self.resume = resume and not fresh  # False: start at epoch 1 (run.json is rewritten)
        if resume:
            diff = mismatch(settings(saved), fp)
            if diff:
                raise ArchError(f"{option('resume', True)}: {path} was trained with other "
                                "settings:\n  " + "\n  ".join(diff),
                                hint="resume with the same network, -D values, data and "
                                     f"options, or choose another {option('out')}")
        try:
            os.makedirs(self.checkpoints, exist_ok=True)
        except OSError as exc:
            raise ArchError(f"cannot create the run folder {path}: {exc.strerror or exc}") \
                from None
        if self.resume:
            # The statistics run.json recorded (the CIFAR-10 fallback where it recorded none:
            # a run from before they were recorded), never recomputed ones: the weights were
            # trained with these. Recomputing could differ (a changed file, another sample),
            # and such a difference is not the user's error, so it is neither checked nor
            # reported: the recorded statistics win.
            self.norm = recorded(saved, os.path.join(path, "run.json"))
        else:
            self.norm = norm() if callable(norm) else norm
            self.write_json("run.json", self.run_json())

    def run_json(self) -> dict:
        """run.json: the fingerprint and, where known, the normalisation."""
        if not isinstance(self.norm, Normalization):
            return self.fp
        return {**self.fp, "normalization": self.norm.to_json()}

    def model_metadata(self) -> dict | None:
        """model.safetensors' metadata: the normalisation its weights expect (JSON)."""
        if not isinstance(self.norm, Normalization):
            return None
        return {"normalization": json.dumps(self.norm.to_json())}

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, obj) -> None:
        if not self.primary:
            return
        text = json.dumps(obj, indent=1) + "\n"
        write_atomic(self.file(name), text)

    def write_metrics(self, history: list[dict], last: bool = True) -> None:
        """metrics.jsonl after every epoch; curves.png after the last epoch and at most every
        PLOT_EVERY_S seconds before it (drawing it takes about a second of CPU, as long as a
        whole CIFAR-10 epoch on a GPU)."""
        if not self.primary:
            return
        text = "".join(json.dumps(h) + "\n" for h in history)
        write_atomic(self.file("metrics.jsonl"), text)
        now = time.monotonic()
        if last or now - self._plotted_at >= PLOT_EVERY_S:
            self.plot(history)
            self._plotted_at = now

    def plot(self, history: list[dict]) -> None:
        """curves.png: loss (left) and accuracy (right), train and test, by epoch."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:  # matplotlib is in the `train` extra; without it, no plot
            return
        epochs = [h["epoch"] for h in history]
        fig = Figure(figsize=(10, 4), dpi=100)
        ax_loss, ax_acc = fig.subplots(1, 2)
        for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy (%)")):
            ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
            ax.plot(epochs, [h[f"test_{key}"] for h in history], "o-", ms=3, label="test")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend()
        best = max(h["test_acc"] for h in history)
        fig.suptitle(f"{self.fp['network']} ({self.fp['backend']}): best test accuracy "
                     f"{best:.2f}%")
        fig.tight_layout()
        write_atomic(self.file("curves.png"), lambda f: fig.savefig(f, format="png"))


def epoch_record(epoch: int, step: int, lr: float, train: tuple, test: tuple,
                 seconds: float, images: int, compile_seconds: float) -> dict:
    """One line of metrics.jsonl. train/test: (loss sum, correct, count)."""
    return {
        "epoch": epoch, "step": step, "lr": lr,
        "train_loss": train[0] / max(train[2], 1), "train_acc": 100.0 * train[1] / max(train[2], 1),
        "test_loss": test[0] / max(test[2], 1), "test_acc": 100.0 * test[1] / max(test[2], 1),
        "epoch_seconds": seconds, "images_per_second": images / seconds if seconds else 0.0,
        "compile_seconds": compile_seconds,
    }


def summary(net: Network, fp: dict, history: list[dict], model_file: str,
            norm: Normalization | None = None) -> dict:
    totals = analyze(net).totals
    steady = [h for h in history if not h["compile_seconds"]] or history
    best = max(history, key=lambda h: h["test_acc"])
    return {
        "network": fp["network"], "backend": fp["backend"],
        "precision": fp["recipe"]["precision"], "epochs": len(history),
        "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
        "last_test_acc": history[-1]["test_acc"],
        "epoch_seconds_median": _median([h["epoch_seconds"] for h in steady]),
        "images_per_second_median": _median([h["images_per_second"] for h in steady]),
        "compile_seconds": sum(h["compile_seconds"] for h in history),
        "params": totals["params"], "macs": totals["macs"],
        "model_bytes_fp32": totals["size_bytes"],
        "model_file": model_file,
        "model_file_bytes": os.path.getsize(model_file) if os.path.exists(model_file) else None,
        **({"normalization": norm.to_json()} if norm is not None else {}),
    }


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def format_summary(s: dict) -> str:
    return "\n".join([
        f"{s['network']}: {s['epochs']} epochs in {s['backend']}, {s['precision']} arithmetic:",
        f"  test accuracy    best {s['best_test_acc']:.2f}% (epoch {s['best_epoch']}), "
        f"last {s['last_test_acc']:.2f}%",
        f"  epoch time       {s['epoch_seconds_median']:.2f} s median "
        f"({s['images_per_second_median']:,.0f} images/s); compile {s['compile_seconds']:.1f} s",
        f"  model            {s['params']:,} params, {s['macs']:,} MACs/image, "
        f"{s['model_bytes_fp32'] / 1e6:.3f} MB fp32; weights in {s['model_file']}",
    ])


def format_epoch(h: dict, epochs: int) -> str:
    return (f"epoch {h['epoch']:>{len(str(epochs))}}/{epochs}  lr {h['lr']:.4g}  "
            f"train loss {h['train_loss']:.4f} acc {h['train_acc']:6.2f}%  "
            f"test loss {h['test_loss']:.4f} acc {h['test_acc']:6.2f}%  "
            f"{h['epoch_seconds']:.1f} s  {h['images_per_second']:,.0f} img/s")


class Progress:
    """A per-epoch progress bar (tqdm, on a terminal only) with loss, accuracy and images/s."""

    def __init__(self, epoch: int, epochs: int, steps: int, batch: int, enabled: bool):
        self.batch, self.t0 = batch, time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step",
                            leave=False, dynamic_ncols=True)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, done: int, loss: float, correct: float, count: float) -> None:
        if self.bar is None:
            return
        rate = done * self.batch / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.n = done
        self.bar.set_postfix_str(f"loss {loss / max(count, 1):.4f} "
                                 f"acc {100 * correct / max(count, 1):.2f}% {rate:,.0f} img/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


COMPILE_NOTE = ("compiling the train step (the first run of a network and recipe takes "
                "longest; later runs reuse the compilation cache) ...")


class Loop:
    """What a backend's training loop provides to `run_epochs` (jax_loop / torch_loop)."""

    # printed before the first step when that step compiles (COMPILE_NOTE), else None
    first_step_note: str | None = None

    def begin_epoch(self, epoch: int) -> None:
        """Draw the epoch's data order and reset the train metric accumulators."""
        raise NotImplementedError

    def step(self) -> None:
        """One optimizer step, dispatched (need not wait for the device)."""
        raise NotImplementedError

    def train_metrics(self) -> tuple[float, float, float]:
        """(loss sum, correct, count) of the epoch so far; waits for the device."""
        raise NotImplementedError

    def evaluate(self) -> tuple[float, float, float]:
        """(loss sum, correct, count) on the test split."""
        raise NotImplementedError

    def lr(self, step: int) -> float:
        raise NotImplementedError

    def save(self, epoch: int, meta: dict) -> None:
        """Checkpoint the training state after `epoch`, atomically."""
        raise NotImplementedError


PROGRESS_EVERY = 25  # steps between progress-bar updates (each one waits for the device)
KEEP_CHECKPOINTS = 2  # the newest checkpoints a run keeps
PLOT_EVERY_S = 30.0  # curves.png at most this often before the last epoch


def finite_loss(loop: Loop, epoch: int, step: int) -> tuple:
    """The loop's train metrics, or an error if its loss sum is no longer finite: training
    stops before the epoch's checkpoint, so the last finished epoch's is kept."""
    metrics = loop.train_metrics()
    if not math.isfinite(metrics[0]):
        raise ArchError(f"training diverged: the training loss is not finite (NaN or infinity) "
                        f"in epoch {epoch}, by step {step}, at learning rate "
                        f"{loop.lr(step - 1):.4g}",
                        hint="train again with a lower learning rate (--lr; archc compress: "
                             "--finetune-lr or --qat-lr); the checkpoint of the last finished "
                             "epoch, if any, is kept")
    return metrics


def run_epochs(run: RunDir, loop: Loop, recipe: Recipe, spe: int, history: list[dict],
               start: int, progress: bool, log) -> list[dict]:
    """Epochs start+1 .. recipe.epochs: train, evaluate, checkpoint, log, plot."""
    if start >= recipe.epochs:
        log(f"nothing to do: {run.path} has finished all {recipe.epochs} epochs")
    compiled = False
    for epoch in range(start + 1, recipe.epochs + 1):
        loop.begin_epoch(epoch)
        if not compiled and loop.first_step_note:
            log(loop.first_step_note)
        bar = Progress(epoch, recipe.epochs, spe, recipe.batch_size, progress)
        t0 = time.perf_counter()
        compile_s = 0.0
        for i in range(spe):
            loop.step()
            if not compiled:  # the first step compiles (or warms up): timed apart
                finite_loss(loop, epoch, (epoch - 1) * spe + i + 1)
                compile_s, compiled = time.perf_counter() - t0, True
                t0 = time.perf_counter()
            if bar.active and (i + 1) % PROGRESS_EVERY == 0:
                bar.update(i + 1, *finite_loss(loop, epoch, (epoch - 1) * spe + i + 1))
        train = finite_loss(loop, epoch, epoch * spe)
        seconds = time.perf_counter() - t0
        bar.close()
        timed = spe - 1 if compile_s else spe
        h = epoch_record(epoch, epoch * spe, loop.lr(epoch * spe - 1), train, loop.evaluate(),
                         seconds, timed * recipe.batch_size, compile_s)
        history.append(h)
        loop.save(epoch, {"epoch": epoch, "fingerprint": run.fp, "history": history})
        run.write_metrics(history, last=epoch == recipe.epochs)
        log(format_epoch(h, recipe.epochs))
    return history


def finish(run: RunDir, net: Network, history: list[dict], log) -> dict:
    """Write and print the summary (after model.safetensors is written)."""
    result = summary(net, run.fp, history, run.file("model.safetensors"), run.norm)
    run.write_json("summary.json", result)
    if run.primary:  # a multi-host run's other processes print their epochs, not this
        log(format_summary(result))
    return result
