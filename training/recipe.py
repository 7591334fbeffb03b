"""The training recipe: one description shared by the JAX and the torch loops.

Defaults are the seeds' CIFAR-10 recipe (seed 000 section III, seed 001 section III): SGD
with Nesterov momentum 0.9 and weight decay, learning rate 0.1 decayed in four steps, after
epochs 60, 120, 150 and 180 of 200, and the network's own dropout. The seeds do not print the
decay factor, the weight decay or the batch size; archc uses 0.2, 5e-4 and 128, the values of
the public SqueezeNext CIFAR-10 code the seeds build on (documented in docs/training.md).

The learning rate is one function of the optimizer step (`schedule()`), the one source of
truth: the JAX loop traces it with jax.numpy inside the jitted step, the torch loop reads
`lr_table()`, the same function evaluated with numpy at every step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from archc.compiler import ArchError

from .options import option

SCHEDULES = ("step", "cosine", "onecycle", "linear", "constant")
PRECISIONS = ("fp32", "bf16")
PAPER_MILESTONES = (60, 120, 150, 180)
PAPER_EPOCHS = 200
MAX_EPOCHS = 100_000
# CIFAR-10 normalisation: the JPEG pack's training-split statistics (its README); they are
# within 0.0002 (mean) of the values usually quoted for the original batches.
CIFAR10_MEAN = (0.49125038, 0.48209027, 0.44652094)
CIFAR10_STD = (0.24523161, 0.24278155, 0.26062877)


@dataclass(frozen=True)
class Recipe:
    epochs: int = PAPER_EPOCHS
    batch_size: int = 128
    lr: float = 0.1
    schedule: str = "step"
    milestones: tuple[int, ...] | None = None  # None: the paper's, scaled to `epochs`
    gamma: float = 0.2
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True
    precision: str = "fp32"
    seed: int = 0
    eval_batch_size: int = 500
    # added with the fast recipe (issue 17); written to run.json only when not the default,
    # so runs made before them stay resumable
    test_flip: bool = False          # evaluate on the image and its mirror, logits averaged
    weight_decay_all: bool = True    # False: decay conv and linear kernels only

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v, flag = getattr(self, f.name), option(f.name)
            kind = type(f.default)   # the field's type (a recipe from run.json may hold any)
            if f.name == "milestones":
                _check(v is None or (isinstance(v, (tuple, list)) and all(
                    isinstance(m, int) and not isinstance(m, bool) for m in v)),
                    f"{flag} must be a list of epochs, not {str(v)[:60]}")
            elif kind is float:
                _check(isinstance(v, (int, float)) and not isinstance(v, bool),
                       f"{flag} must be a number, not {str(v)[:60]}")
            else:
                _check(isinstance(v, kind) and (kind is bool or not isinstance(v, bool)),
                       f"{flag} must be {_KINDS.get(kind, kind.__name__)}, not {str(v)[:60]}")
            _check(not isinstance(v, float) or math.isfinite(v),
                   f"{option(f.name)} must be a finite number, not {v}")
        _check(0 <= self.seed < 2**31,
               f"{option('seed')} must be from 0 to {2**31 - 1}, not {self.seed}")
        _check(self.epochs <= MAX_EPOCHS, f"{option('epochs')} must be at most {MAX_EPOCHS}")
        _check(self.epochs >= 1, f"{option('epochs')} must be at least 1, not {self.epochs}")
        _check(self.batch_size >= 1,
               f"{option('batch_size')} must be at least 1, not {self.batch_size}")
        _check(self.eval_batch_size >= 1, f"{option('eval_batch_size')} must be at least 1")
        _check(self.lr > 0, f"{option('lr')} must be positive, not {self.lr}")
        _check(self.schedule in SCHEDULES, f"unknown schedule '{self.schedule}'",
               "schedules: " + ", ".join(SCHEDULES))
        _check(self.precision in PRECISIONS, f"unknown precision '{self.precision}'",
               "precisions: fp32, bf16")
        _check(0 <= self.label_smoothing < 1, f"{option('label_smoothing')} must be in [0, 1)")
        _check(0 <= self.warmup_epochs <= self.epochs,
               f"{option('warmup_epochs')} must be in [0, epochs]")
        _check(self.weight_decay >= 0 and 0 <= self.momentum < 1,
               f"{option('weight_decay')} must be >= 0 and {option('momentum')} in [0, 1)")
        _check(0 < self.gamma <= 1, f"{option('gamma')} must be in (0, 1]")
        if self.milestones is not None:
            ms = tuple(self.milestones)
            _check(all(0 < m < self.epochs for m in ms) and list(ms) == sorted(set(ms)),
                   f"{option('milestones', ms)} must increase strictly and lie "
                   f"inside 1..{self.epochs - 1}")

    @property
    def decay_epochs(self) -> tuple[int, ...]:
        """Epochs after which the step schedule multiplies the rate by `gamma`."""
        if self.milestones is not None:
            return tuple(self.milestones)
        scaled = (round(m * self.epochs / PAPER_EPOCHS) for m in PAPER_MILESTONES)
        return tuple(sorted({m for m in scaled if 0 < m < self.epochs}))

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """A recipe from its fields (to_dict's, run.json's, or a user's dict); unknown keys
        are an error naming them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        _check(not unknown, f"unknown recipe field(s): {', '.join(map(str, unknown))}",
               "fields: " + ", ".join(sorted(fields)))
        d = dict(d)
        if d.get("milestones") is not None:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.decay_epochs)
        for key in LATER_FIELDS:
            if d[key] == Recipe.__dataclass_fields__[key].default:
                del d[key]
        return d


LATER_FIELDS = ("test_flip", "weight_decay_all")

# Named starting points for `--recipe`; options given with them override their values.
#   paper  the seeds' recipe (the defaults above, exact)
#   fast   time to accuracy on CIFAR-10 on one GPU, from what the fastest public CIFAR-10
#          trainers do (docs/training.md): a large batch with the learning rate scaled to it,
#          a short linear warm-up and a linear decay to zero, Nesterov momentum, label
#          smoothing 0.2, weight decay on kernels only, bf16 compute, test-time flip.
RECIPES = {
    "paper": {},
    "fast": {"epochs": 40, "batch_size": 512, "lr": 0.4, "schedule": "linear",
             "warmup_epochs": 2.0, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
             "weight_decay_all": False, "label_smoothing": 0.2, "precision": "bf16",
             "test_flip": True, "eval_batch_size": 1000},
}


def require_backend(recipe: Recipe, backend: str) -> None:
    """The torch loop evaluates without test-time flip and decays every parameter: a recipe
    that asks otherwise is an error there, never silently changed."""
    if backend != "torch":
        return
    asks = [f for f in LATER_FIELDS if getattr(recipe, f) != Recipe.__dataclass_fields__[f].default]
    _check(not asks, f"the torch training loop does not implement {', '.join(asks)} (the fast "
           "recipe's)", "train with --backend jax, or choose --recipe paper")


def preset(name: str, **fields) -> Recipe:
    """The recipe `name` of RECIPES with `fields` overriding its values."""
    _check(name in RECIPES, f"unknown recipe '{name}'", "recipes: " + ", ".join(RECIPES))
    return Recipe(**{**RECIPES[name], **fields})


_KINDS = {int: "a whole number", str: "a string", bool: "true or false"}


def _check(ok: bool, message: str, hint: str | None = None):
    if not ok:
        raise ArchError(message, hint=hint)


def steps_per_epoch(recipe: Recipe, n_train: int) -> int:
    """Whole batches only (shapes stay fixed, nothing recompiles): the last partial batch of
    each epoch's random order is dropped, so each image is skipped in some epochs only."""
    steps = n_train // recipe.batch_size
    _check(steps >= 1, f"{option('batch_size', recipe.batch_size)} is larger than the "
           f"{n_train} training images", f"choose a smaller {option('batch_size')}")
    return steps


def schedule(recipe: Recipe, steps_per_epoch: int, xp=None):
    """The learning rate as a function of the optimizer step (0-based).

    Pure arithmetic on `xp` (numpy by default; pass jax.numpy to trace it inside a jitted
    step), so the torch loop needs neither jax nor optax. The formulas are optax's
    (piecewise_constant, linear warm-up joined to the main schedule, cosine_decay,
    warmup_cosine_decay, cosine_onecycle with div_factor 25 and final_div_factor 1e4, and
    for "linear" a linear_schedule from the peak to 0 after the warm-up);
    tests/test_train.py checks them against optax step by step.
    """
    if xp is None:
        import numpy as xp
    total = recipe.epochs * steps_per_epoch
    warm = int(round(recipe.warmup_epochs * steps_per_epoch))
    lr, kind = recipe.lr, recipe.schedule
    bounds = [e * steps_per_epoch for e in recipe.decay_epochs]

    def cosine(t, span, peak, end=0.0):  # from peak to end over `span` steps, then flat
        frac = xp.clip(t / max(span, 1), 0.0, 1.0)
        return end + (peak - end) * 0.5 * (1.0 + xp.cos(xp.pi * frac))

    def fn(step):
        t = xp.asarray(step) * 1.0
        if kind == "onecycle":  # warm-up share: --warmup-epochs, else optax's 30%
            up = int((warm / total if warm else 0.3) * total)
            low, final = lr / 25.0, lr / 25.0 / 1e4
            rising = low + (lr - low) * 0.5 * (1.0 - xp.cos(xp.pi * xp.clip(t / max(up, 1),
                                                                            0.0, 1.0)))
            return xp.where(t < up, rising, cosine(t - up, total - up, lr, final))
        if kind == "cosine":
            main = cosine(t - warm, total - warm, lr)
        elif kind == "linear":   # from the peak to 0 at the end of the run
            main = lr * (1.0 - xp.clip((t - warm) / max(total - warm, 1), 0.0, 1.0))
        elif kind == "step":
            main = lr * xp.ones_like(t)
            for b in bounds:
                main = xp.where(t >= b, main * recipe.gamma, main)
        else:
            main = lr * xp.ones_like(t)
        if not warm:
            return main
        return xp.where(t < warm, lr * t / warm, main)
    return fn


def lr_table(recipe: Recipe, steps_per_epoch: int):
    """The schedule evaluated at every step of the run (numpy float64), for the torch loop."""
    import numpy as np
    return np.asarray(schedule(recipe, steps_per_epoch)(np.arange(recipe.epochs * steps_per_epoch)),
                      dtype=np.float64)
