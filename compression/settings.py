"""Every setting of the compression pipeline, its default and where the default comes from,
checked before anything is written (seed 002 = ../shared/seeds/002_*.txt)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from archc._checks import count
from archc.compiler import ArchError
from archc.training.recipe import MAX_EPOCHS

from .calibration import METHODS, SOURCE_BINS, check_precision
from .sensitivity import DEFAULT_FRACTIONS

DEFAULT_MAX_DROP = 1.0
MAX_FRACTIONS = 200          # --fractions: each is one evaluation per prunable layer
MAX_BINS = 8 * SOURCE_BINS   # --bins: 16384 at most (the KL search grows with bins squared)
RULES = ("table1", "official")
BASELINES = ("imagenet", "cifar100")


@dataclass(frozen=True)
class Settings:
    # sensitivity analysis (sec. 2): mini-train split and prune fractions 10 % .. 90 % by 5 %
    mini_per_class: int = 100               # archc's choice (the seed gives no size)
    fractions: tuple = DEFAULT_FRACTIONS
    # pruning: one of these (default: max_drop = DEFAULT_MAX_DROP points), or a mask file
    max_drop: float | None = None           # bound = unpruned mini-train accuracy - max_drop
    min_accuracy: float | None = None       # the bound itself (%)
    target_sparsity: float | None = None    # the highest bound reaching this overall sparsity
    masks: str | None = None                # masks from a file instead of the analysis
    # finetuning with masks (sec. 4.1): 40 epochs, LR 1e-3, x0.1 at epoch 20 (half way)
    finetune_epochs: int = 40
    finetune_lr: float = 1e-3
    finetune_gamma: float = 0.1
    # quantization (sec. 3, 4.1): 1000 calibration images, 8 bits, tolerance 1.3, 2048 bins
    calibration_images: int = 1000
    method: str = "kl"
    tolerance: float = 1.3
    bins: int = SOURCE_BINS
    weight_bits: int = 8
    act_bits: int = 8
    bias_bits: int = 16                     # the seed's Table 1 bias precision
    # quantization-aware finetuning (sec. 4.1): 20 epochs, LR 5e-4, x0.2 at epoch 10
    qat_epochs: int = 20
    qat_lr: float = 5e-4
    qat_gamma: float = 0.2
    # scoring (sec. 5): what the spec says about what the fake-quantized model does not fix
    acc_bits: int = 32                      # the simulation accumulates in float32
    float_bits: int = 32                    # unquantized tensors are float32
    rules: str = "table1"
    baseline: str = "imagenet"

    def __post_init__(self):
        given = [k for k in ("max_drop", "min_accuracy", "target_sparsity", "masks")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ArchError("choose one way to prune: " + " / ".join(
                "--" + k.replace("_", "-") for k in given) + " are given together")
        if not given:
            object.__setattr__(self, "max_drop", DEFAULT_MAX_DROP)
        f = self.fractions
        _check(isinstance(f, (tuple, list)) and len(f) <= MAX_FRACTIONS
               and all(_num(x) for x in f), f"--fractions must be a list of at most "
               f"{MAX_FRACTIONS} numbers, got {str(f)[:60]}")
        object.__setattr__(self, "fractions", tuple(float(x) for x in f))
        f = self.fractions
        _check(len(f) >= 1 and all(0 < x < 1 for x in f) and list(f) == sorted(set(f)),
               "--fractions must increase strictly and lie between 0 and 1",
               "e.g. --fractions 0.1:0.9:0.05 (Zeng et al.'s) or 0.2,0.4,0.6")
        _check(_int(self.mini_per_class) and self.mini_per_class >= 1,
               "--mini-per-class must be at least 1")
        if self.max_drop is not None:
            _check(_num(self.max_drop) and self.max_drop >= 0, "--max-drop must be >= 0 points")
        if self.min_accuracy is not None:
            _check(_num(self.min_accuracy) and 0 <= self.min_accuracy <= 100,
                   "--min-accuracy must be a percentage between 0 and 100")
        if self.target_sparsity is not None:
            _check(_num(self.target_sparsity) and 0 < self.target_sparsity < 1,
                   "--target-sparsity must be between 0 and 1 (e.g. 0.4)")
        for name in ("finetune", "qat"):
            _check(_int(getattr(self, f"{name}_epochs"))
                   and 1 <= getattr(self, f"{name}_epochs") <= MAX_EPOCHS,
                   f"--{name}-epochs must be from 1 to {MAX_EPOCHS}")
            _check(_num(getattr(self, f"{name}_lr")) and getattr(self, f"{name}_lr") > 0,
                   f"--{name}-lr must be positive")
            _check(_num(getattr(self, f"{name}_gamma")) and 0 < getattr(self, f"{name}_gamma") <= 1,
                   f"--{name}-gamma must be in (0, 1]")
        _check(_int(self.calibration_images) and self.calibration_images >= 1,
               "--calibration-images must be at least 1")
        _check(self.method in METHODS, f"unknown calibration method '{self.method}'",
               "methods: kl (Zeng et al.'s), max")
        _check(_num(self.tolerance) and self.tolerance >= 1, "--tolerance must be >= 1",
               "Zeng et al. use 1.3; 1 takes the minimal divergence")
        check_precision(self.act_bits, self.method, "--act-bits")
        check_precision(self.weight_bits, "max", "--weight-bits")
        check_precision(self.bias_bits, "max", "--bias-bits")
        if self.method == "kl":
            need = 2 ** self.act_bits  # an unsigned point has 2^bits target bins
            _check(_int(self.bins) and self.bins > need,
                   f"--bins {self.bins} is too few for {self.act_bits}-bit KL calibration",
                   f"use more than {need} (Zeng et al. use {SOURCE_BINS})")
            _check(self.bins <= MAX_BINS, f"--bins {self.bins} is more than {MAX_BINS}",
                   f"use {need + 1} to {MAX_BINS} (Zeng et al. use {SOURCE_BINS})")
        for key in ("acc_bits", "float_bits"):
            v = getattr(self, key)
            _check(_int(v) and 1 <= v <= 64, f"--{key.replace('_', '-')} must be 1 to 64 bits")
        _check(self.rules in RULES, f"unknown bit-op rules '{self.rules}'",
               "rules: table1, official")
        _check(self.baseline in BASELINES, f"unknown baseline '{self.baseline}'",
               "baselines: imagenet, cifar100")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fractions"] = list(self.fractions)
        return d


# the settings each step depends on (a finished step must be resumed with the same ones)
STEP_FIELDS = {
    "sensitivity": ("mini_per_class", "fractions"),
    "prune": ("max_drop", "min_accuracy", "target_sparsity", "masks"),
    "finetune": ("finetune_epochs", "finetune_lr", "finetune_gamma"),
    "quantize": ("calibration_images", "method", "tolerance", "bins", "weight_bits", "act_bits",
                 "bias_bits"),
    "qat": ("qat_epochs", "qat_lr", "qat_gamma"),
    "score": ("acc_bits", "float_bits", "rules", "baseline"),
}


def parse_fractions(text: str) -> tuple:
    """'0.1:0.9:0.05' (start:stop:step, stop included) or '0.2,0.4,0.6': finite numbers, at
    most MAX_FRACTIONS of them (counted before any is made)."""
    hint = "e.g. 0.1:0.9:0.05 (Zeng et al.'s) or 0.2,0.4,0.6"
    try:
        if ":" in text:
            a, b, s = (float(v) for v in text.split(":"))
            if s <= 0 or not all(math.isfinite(v) for v in (a, b, s)):
                raise ValueError
            n = count(math.floor((b - a) / s + 1e-9) + 1, MAX_FRACTIONS, f"--fractions '{text}'",
                      hint)
            return tuple(round(a + s * i, 10) for i in range(max(n, 0)))
        values = text.split(",")
        count(len(values), MAX_FRACTIONS, f"--fractions '{text[:40]}'", hint)
        out = tuple(float(v) for v in values if v.strip())
        if not all(math.isfinite(v) for v in out):
            raise ValueError
        return out
    except (ValueError, OverflowError):
        raise ArchError(f"--fractions '{text[:60]}' is not start:stop:step or a comma-separated "
                        "list of finite numbers",
                        hint="e.g. 0.1:0.9:0.05 (Zeng et al.'s) or 0.2,0.4,0.6") from None


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(ok: bool, message: str, hint: str | None = None) -> None:
    if not ok:
        raise ArchError(message, hint=hint)
