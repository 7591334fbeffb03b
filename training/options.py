"""The options of a training run (TrainOptions), and how an error names one of them.

An option has one name, its Python keyword (a TrainOptions or Recipe field; argparse's dest
for the same flag). An error names it the way its caller wrote it: `--devices 5` when the
`archc train` command gave it, `devices=5` when Python did (archc.train()). training/api.py's
train() sets the spelling for the run it starts; outside a run (a Recipe built by hand, a
data set loaded directly) errors name the command's flags, as the command is the common
caller. Needs nothing but the standard library: the modules of every loop import it.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

SPELLINGS = ("flag", "keyword")
_SPELLING: ContextVar[str] = ContextVar("archc_option_spelling", default="flag")
_NO_VALUE = object()


@dataclass(frozen=True)
class TrainOptions:
    """How to run a training, apart from the network, the data set and the recipe.

    The data set's subset (train_per_class, test_per_class, val_split) and the recipe, when
    None on a resumed run, are the run's own (run.json)."""
    backend: str = "jax"                 # "jax" or "torch"
    out: str | None = None               # the run folder; None: runs/<name>-<backend>
    resume: bool = False                 # continue the run in `out` from its last checkpoint
    init_from: str | None = None         # start from these weights (safetensors, torch layout)
    # the data set
    train_per_class: int | None = None   # a class-balanced random subset of N images a class
    test_per_class: int | None = None
    val_split: int | None = None         # validate on N held-out training images
    coarse_labels: bool = False          # CIFAR-100's 20 coarse classes
    cache: bool = True                   # the decoded data set's .npy cache
    # reporting
    progress: bool = True
    log: Callable[[str], object] = field(default=print, repr=False)
    # the JAX backend only: devices, hosts, streaming
    devices: int | None = None           # data parallel on N devices of each process
    coordinator: str | None = None       # multi-host: jax.distributed's "host:port"
    num_processes: int | None = None
    process_id: int | None = None
    stream: str = "auto"                 # "auto", "on" or "off": read an image folder with Grain
    loader_workers: int | None = None    # streamed data: decoding processes


class Placeholder(str):
    """A value shown as written in both spellings (`--coordinator HOST:PORT`,
    `coordinator=HOST:PORT`), not as a Python literal."""

    def __repr__(self) -> str:
        return str(self)


def option(name: str, value=_NO_VALUE) -> str:
    """The option `name` (its Python keyword), with `value` if given, as the caller wrote it:
    `--batch-size 6` / `--batch-size`, or `batch_size=6` / `batch_size=`; a switch given as
    True is `--resume` or `resume=True`, a tuple `--milestones 60,120` or
    `milestones=(60, 120)`."""
    if spelling() == "keyword":
        return f"{name}=" if value is _NO_VALUE else f"{name}={value!r}"
    flag = "--" + name.replace("_", "-")
    if value is _NO_VALUE or value is True:
        return flag
    if isinstance(value, (tuple, list)):  # a list is comma-separated on the command line
        value = ",".join(map(str, value))
    return f"{flag} {value}"


def spelling() -> str:
    """How errors name options here and now: "flag" or "keyword"."""
    return _SPELLING.get()


@contextmanager
def spelled(spelling: str):
    """Errors raised inside name options as `spelling` ("flag" or "keyword") says."""
    if spelling not in SPELLINGS:
        raise ValueError(f"spelling must be one of {SPELLINGS}, not {spelling!r}")
    token = _SPELLING.set(spelling)
    try:
        yield
    finally:
        _SPELLING.reset(token)
