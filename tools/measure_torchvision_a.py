"""Measure torchvision's parameter counts for the library-A networks (issue 3, part A).

Run once in a scratch environment that has torchvision (it is not a dependency of archc):

    python -m venv /tmp/tvenv --system-site-packages
    /tmp/tvenv/bin/pip install --no-deps "torchvision<=0.29.1"
    /tmp/tvenv/bin/python tools/measure_torchvision_a.py > tests/data/torchvision_params_a.json

Each count is sum(p.numel() for p in m.parameters()) of the model built with default
arguments (weights=None, 1000 classes). tests/test_library_a.py compares archc's analysis
with these numbers; it does not need torchvision.
"""
from __future__ import annotations

import datetime
import json
import platform

import torch

# torchvision 0.29.1's compiled extension (detection ops such as nms) does not load against
# the torch 2.13.0+cpu build installed here, and torchvision/__init__ then fails while
# registering fake kernels for those ops. The classification models are pure Python
# (torch.nn only), so the registration is stubbed out; parameter counts do not touch it.
_register_fake = torch.library.register_fake
torch.library.register_fake = lambda *a, **k: (lambda f: f)
try:
    import torchvision
    from torchvision import models
finally:
    torch.library.register_fake = _register_fake

MODELS = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
          "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
          "resnext50_32x4d", "resnext101_32x8d", "squeezenet1_0", "squeezenet1_1"]


def main() -> None:
    params, buffers = {}, {}
    for name in MODELS:
        m = getattr(models, name)(weights=None)
        params[name] = sum(p.numel() for p in m.parameters())
        # running_mean / running_var only (num_batches_tracked is a counter, not a statistic)
        buffers[name] = sum(b.numel() for n, b in m.named_buffers()
                            if not n.endswith("num_batches_tracked"))
    out = {
        "how": "sum(p.numel() for p in torchvision.models.<name>(weights=None).parameters()); "
               "buffers: running_mean + running_var elements (num_batches_tracked excluded). "
               "Measured with tools/measure_torchvision_a.py.",
        "note": "torchvision's compiled extension did not load against this torch build; the "
                "script stubs torch.library.register_fake while importing torchvision (the "
                "classification models are pure torch.nn, so the counts do not depend on it).",
        "torchvision": torchvision.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "params": params,
        "buffers": buffers,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
