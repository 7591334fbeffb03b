"""Measure torchvision's parameter counts for the part-B networks of the library (issue 3).

torchvision is NOT a dependency of archc. This script was run once, in a scratch install:

    pip install --no-deps --target /tmp/tv_b "torchvision==0.28.0"   # the build for torch 2.13
    PYTHONPATH=/tmp/tv_b python tools/measure_torchvision_b.py > tests/data/torchvision_params_b.json

It counts `sum(p.numel() for p in m.parameters())` (trainable parameters; BN running stats
are buffers and are not counted) for each model built with weights=None. googlenet and
inception_v3 are measured both without and with their auxiliary classifiers: torchvision's
builders keep the class default aux_logits=True when no weights are given.
"""
from __future__ import annotations

import datetime
import json
import platform
import warnings

import torch
import torch.library

# The local index's torchvision 0.28.0 wheel (the build for torch 2.13) is a CUDA build whose
# C extension cannot load beside the CPU torch installed here; torchvision's import then fails
# registering fake kernels for its detection ops (nms, roi_align, ...). None of those ops is used
# by the classification models measured here (plain nn.Modules), so the registration is skipped
# while importing.
_register_fake = torch.library.register_fake
torch.library.register_fake = lambda *a, **k: (lambda f: f)
try:
    import torchvision
    from torchvision import models
finally:
    torch.library.register_fake = _register_fake

warnings.simplefilter("ignore")  # init warnings of googlenet/inception_v3 with weights=None

MODELS = {
    "googlenet": lambda: models.googlenet(weights=None, aux_logits=False, init_weights=False),
    "googlenet_aux": lambda: models.googlenet(weights=None, aux_logits=True, init_weights=False),
    "inception_v3": lambda: models.inception_v3(weights=None, aux_logits=False, init_weights=False),
    "inception_v3_aux": lambda: models.inception_v3(weights=None, aux_logits=True, init_weights=False),
    "mobilenet_v2": lambda: models.mobilenet_v2(weights=None),
    "mobilenet_v2_w0.5": lambda: models.mobilenet_v2(weights=None, width_mult=0.5),
    "mobilenet_v2_w1.4": lambda: models.mobilenet_v2(weights=None, width_mult=1.4),
    "mobilenet_v3_large": lambda: models.mobilenet_v3_large(weights=None),
    "mobilenet_v3_small": lambda: models.mobilenet_v3_small(weights=None),
}


def main() -> None:
    out = {
        "how": "sum(p.numel() for p in m.parameters()) of torchvision.models.<builder>(weights=None, ...)"
               "; measured by tools/measure_torchvision_b.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "note": "torchvision 0.28.0 wheel from the local index imported with its fake-kernel "
                "registration skipped (its CUDA C extension cannot load beside torch 2.13 CPU); "
                "model construction is pure Python and unaffected",
        "date": datetime.date.today().isoformat(),
        "builders": {
            "googlenet": "googlenet(weights=None, aux_logits=False, init_weights=False)",
            "googlenet_aux": "googlenet(weights=None, aux_logits=True, init_weights=False)",
            "inception_v3": "inception_v3(weights=None, aux_logits=False, init_weights=False)",
            "inception_v3_aux": "inception_v3(weights=None, aux_logits=True, init_weights=False)",
            "mobilenet_v2": "mobilenet_v2(weights=None)",
            "mobilenet_v2_w0.5": "mobilenet_v2(weights=None, width_mult=0.5)",
            "mobilenet_v2_w1.4": "mobilenet_v2(weights=None, width_mult=1.4)",
            "mobilenet_v3_large": "mobilenet_v3_large(weights=None)",
            "mobilenet_v3_small": "mobilenet_v3_small(weights=None)",
        },
        "params": {},
        "state_dict_keys": {},
    }
    for name, make in MODELS.items():
        m = make()
        out["params"][name] = sum(p.numel() for p in m.parameters())
        out["state_dict_keys"][name] = len(m.state_dict())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
